/*!
Ctrl-C, SIGTERM and SIGHUP during a run that changes the host: the first such signal only
raises a flag, which the operations look at between their named steps (a create then rolls
back as a failed one does, a bulk run starts no further VLAN, `--wait` stops waiting); a second
one ends the process at once (exit 128 + the signal's number). Whatever is left then, like
after a kill -9 or a power loss, the next run finds through its state records.
*/

use anyhow::Context;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::flag;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Set by the first signal; arms the immediate exit on the second.
static SEEN: AtomicBool = AtomicBool::new(false);
/// Which signal was seen first (its number), 0 for none.
static WHICH: AtomicUsize = AtomicUsize::new(0);

/// The signals that ask a run to stop.
const SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// Catch [`SIGNALS`] for the rest of the process's life.
pub fn install() -> anyhow::Result<()> {
    for signal in SIGNALS {
        // The order matters: the exit is checked before this signal raises the flag, so only
        // a second signal exits.
        flag::register_conditional_shutdown(signal, 128 + signal, &SEEN)
            .context("installing a signal handler")?;
        let number = usize::try_from(signal).context("a signal number")?;
        flag::register_usize(signal, &WHICH, number).context("installing a signal handler")?;
        flag::register(signal, &SEEN).context("installing a signal handler")?;
    }
    Ok(())
}

/// The name of the signal that asked this run to stop, if one did.
pub fn requested() -> Option<&'static str> {
    let which = WHICH.load(Ordering::SeqCst);
    SEEN.load(Ordering::SeqCst).then(|| name(which))
}

fn name(signal: usize) -> &'static str {
    match i32::try_from(signal) {
        Ok(SIGINT) => "SIGINT (Ctrl-C)",
        Ok(SIGTERM) => "SIGTERM",
        Ok(SIGHUP) => "SIGHUP",
        _ => "a signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_named() {
        assert_eq!(name(2), "SIGINT (Ctrl-C)");
        assert_eq!(name(15), "SIGTERM");
        assert_eq!(name(0), "a signal");
    }
}
