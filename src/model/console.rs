/*!
What a guest prints on its serial console that mkheadnode watches for. The set-up's own lines
are defined beside the guest files that print them ([`crate::render::seed`]).
*/

/// What a booting Linux kernel prints first on its console.
pub const BOOT_SIGN: &str = "Linux version";
