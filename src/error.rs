/*!
The error categories that decide mkheadnode's exit status.

Everything below `main` returns `anyhow::Result`; where the category matters, the root of the
chain is a [`Failure`] (or a libvirt error), and [`kind_of`] finds it.
*/

use std::fmt;
use virt::error::Error as VirtError;

/// What went wrong, as far as the exit status is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bad command-line input or configuration (exit 2).
    Usage,
    /// A headnode, network, image or file that was asked for does not exist (exit 3).
    NotFound,
    /// libvirt refused or failed an operation (exit 4).
    Libvirt,
    /// `--wait` ran out of time (exit 5).
    Timeout,
    /// A domain with our name exists but is not ours: we refuse to touch it (exit 6).
    Refused,
    /// Anything else, such as a failed write on the host (exit 1).
    Other,
}

impl Kind {
    /// The process exit status for this kind of failure.
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Other => 1,
            Kind::Usage => 2,
            Kind::NotFound => 3,
            Kind::Libvirt => 4,
            Kind::Timeout => 5,
            Kind::Refused => 6,
        }
    }
}

/// An error with a category, meant to be the root of an `anyhow` chain.
#[derive(Debug)]
pub struct Failure {
    /// The category, which decides the exit status.
    pub kind: Kind,
    /// What happened and what to do about it.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Build an `anyhow::Error` of the given kind.
pub fn failure(kind: Kind, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure {
        kind,
        message: message.into(),
    })
}

/// The category of an error chain: the first [`Failure`] in it, else `Libvirt` if a libvirt
/// error is in it, else `Other`.
pub fn kind_of(err: &anyhow::Error) -> Kind {
    for cause in err.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.kind;
        }
    }
    if err.chain().any(|c| c.is::<VirtError>()) {
        return Kind::Libvirt;
    }
    Kind::Other
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn kind_survives_added_context() {
        let err = Err::<(), _>(failure(Kind::NotFound, "no such headnode"))
            .context("tearing down VLAN 7")
            .unwrap_err();
        assert_eq!(kind_of(&err), Kind::NotFound);
        assert_eq!(kind_of(&err).exit_code(), 3);
    }

    #[test]
    fn plain_errors_are_other() {
        let err = anyhow::anyhow!("disk full");
        assert_eq!(kind_of(&err), Kind::Other);
        assert_eq!(Kind::Other.exit_code(), 1);
    }
}
