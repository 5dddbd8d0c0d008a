/*!
What the operator sees: one line per step on standard error, prefixed with the VLAN, at the
verbosity they asked for. Machine-readable output (XML, tables, JSON) goes to standard output.
*/

use crate::model::vlan::Vlan;

/// How much to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// Errors and the final summary only.
    Quiet,
    /// Each change made, and notes.
    Normal,
    /// Also each check that found nothing to do.
    Verbose,
}

/// Prints progress lines.
#[derive(Debug, Clone, Copy)]
pub struct Reporter {
    /// The chosen verbosity.
    pub verbosity: Verbosity,
}

impl Reporter {
    /// A step that changed (or would change) something.
    pub fn step(&self, vlan: Option<Vlan>, msg: impl AsRef<str>) {
        if self.verbosity >= Verbosity::Normal {
            eprintln!("{}{}", prefix(vlan), msg.as_ref());
        }
    }

    /// A detail shown with `-v`.
    pub fn detail(&self, vlan: Option<Vlan>, msg: impl AsRef<str>) {
        if self.verbosity >= Verbosity::Verbose {
            eprintln!("{}{}", prefix(vlan), msg.as_ref());
        }
    }

    /// An error, always shown.
    pub fn error(&self, vlan: Option<Vlan>, err: &anyhow::Error) {
        eprintln!("{}error: {err:#}", prefix(vlan));
    }

    /// A summary line, always shown.
    pub fn summary(&self, msg: impl AsRef<str>) {
        eprintln!("{}", msg.as_ref());
    }
}

fn prefix(vlan: Option<Vlan>) -> String {
    vlan.map(|v| format!("VLAN {v}: ")).unwrap_or_default()
}
