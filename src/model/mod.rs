/*!
The pure model: from what the operator writes (VLANs, the configuration, machines files) to the
plan of each headnode. Nothing here touches the host, so all of it is testable without one.
*/

pub mod addresses;
pub mod agent;
pub mod bmc_conf;
pub mod config;
pub mod console;
pub mod fleet;
pub mod footprint;
pub mod image;
pub mod intent;
pub mod mac;
pub mod machines;
pub mod nodes;
pub mod plan;
pub mod profile;
pub mod profile_layout;
pub mod selftest;
pub mod text;
pub mod uri;
pub mod vlan;
