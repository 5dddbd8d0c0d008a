/*!
The operations an operator runs: create, rebuild, teardown, list and status ([`session`],
[`create`], [`teardown`], [`status`]), the host [`check`], and the [`wait`] for headnodes to be
ready; [`report`] is what the operator sees meanwhile.

Each operation works on one VLAN under that VLAN's lock; the bulk forms run up to `--jobs`
VLANs at once, each independently, and sum up. A failed create undoes what it made ([`undo`];
volumes, domain) and never touches the config dir's contents; so does one stopped by a signal
after a named step ([`checkpoint`]). What a run killed outright left, its state records name,
and the next create or teardown removes it ([`leftovers`]). A domain named like ours but
without our metadata is never touched, nor one whose metadata is not its VLAN's
([`ownership`]).
*/

pub mod base_image;
pub mod check;
pub mod checkpoint;
pub mod create;
pub mod guest;
pub mod images;
pub mod install;
pub mod leftovers;
pub mod nodes;
pub mod ownership;
pub mod profile;
pub mod profile_remote;
pub mod report;
pub mod selftest;
pub mod session;
pub mod status;
pub mod teardown;
pub mod undo;
pub mod wait;
