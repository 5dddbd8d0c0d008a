/*!
A domain's serial console read through libvirt's console stream (`virDomainOpenConsole`), for a
hypervisor whose console log file is not ours to read. The stream has a connection of its own,
opened for it and closed with it: libvirt's streams were seen to hang when they shared a
connection with other calls (see [`crate::host::hypervisor::Hypervisor::write_volume`]). A
thread reads it into a buffer that [`ConsoleTap::text`] shows; the stream carries only what the
console prints from the moment it is opened on.
*/

use crate::host::hypervisor::Hypervisor;
use anyhow::Context as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use virt::stream::Stream;

/// The most of a console kept: the newest bytes win.
const KEEP: usize = 4 << 20;

/// What a domain's console has printed since the tap was opened.
pub struct ConsoleTap {
    seen: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
}

impl ConsoleTap {
    /// Open the console of domain `name` at `uri`. It fails if the domain does not run, or
    /// another client (a `virsh console`) holds the console.
    pub fn open(uri: &str, name: &str) -> anyhow::Result<ConsoleTap> {
        let own = Hypervisor::connect(uri)?;
        let dom = own
            .find_domain(name)?
            .with_context(|| format!("domain {name} went away"))?;
        let stream = Stream::new(own.connection(), 0).context("opening a stream")?;
        dom.open_console(None, &stream, 0)
            .with_context(|| format!("opening the console of {name}"))?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (buffer, stopped) = (Arc::clone(&seen), Arc::clone(&stop));
        // Detached: a blocking read ends when the console prints again or the domain stops; a
        // stopped tap only stops keeping what it reads.
        std::thread::spawn(move || {
            let _connection = own;
            let mut chunk = vec![0u8; 64 << 10];
            while !stopped.load(Ordering::Relaxed) {
                match stream.recv(&mut chunk) {
                    Ok(n) if n > 0 => {
                        let mut seen = buffer.lock().unwrap_or_else(PoisonError::into_inner);
                        seen.extend_from_slice(&chunk[..n.unsigned_abs()]);
                        let excess = seen.len().saturating_sub(KEEP);
                        seen.drain(..excess);
                    }
                    _ => break,
                }
            }
        });
        Ok(ConsoleTap { seen, stop })
    }

    /// What the console printed so far (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&seen).into_owned()
    }
}

impl Drop for ConsoleTap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
