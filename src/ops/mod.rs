/*!
The operations an operator runs: create, teardown, rebuild, list and status.

Each works on one VLAN at a time under that VLAN's lock; the bulk forms run the VLANs one
after another, independently, and sum up. A failed create undoes what it made (volumes,
domain) and never touches the config dir's contents. A domain named like ours but without our
metadata is never touched.
*/

pub mod check;
pub mod create;
pub mod report;
pub mod session;
pub mod status;
pub mod teardown;
pub mod wait;
