/*!
The flags of the commands that operate the nodes from the hypervisor: `profile`, `install` and
`nodes` (see `cli::operate`), and of `selftest` (see `cli::selftest`).
*/

use crate::model::selftest::{DEFAULT_VLAN, OVMF_DIR};
use crate::ops::selftest::{DEFAULT_LOGS_DIR, DEFAULT_WORK_DIR};
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// `profile add|list|remove`.
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Validate an install profile, copy it into each VLAN's config dir (replacing one of its
    /// name atomically) and publish it in each running headnode.
    Add {
        /// VLANs, e.g. `42`, `100-110`, `7,9,12`.
        vlans: String,
        /// The profile's name: letters, digits, `.`, `_`, `-`.
        name: String,
        /// The profile: `pxelinux.cfg` and/or `grub.cfg`, the kernels and initrds they load,
        /// answer files.
        dir: PathBuf,
    },
    /// List the profiles in config dirs (default: of every VLAN that has one or a headnode).
    List {
        /// VLANs, e.g. `42`, `100-110`, `7,9,12`.
        vlans: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a profile from each VLAN's config dir and unpublish it.
    Remove {
        /// VLANs, e.g. `42`, `100-110`, `7,9,12`.
        vlans: String,
        /// The profile's name.
        name: String,
    },
}

/// `install VLAN --profile NAME (--all | MAC...)`.
#[derive(Debug, Clone, Args)]
pub struct InstallArgs {
    /// The VLAN.
    pub vlan: String,
    /// The install profile (published in the headnode: `mkheadnode profile add`).
    #[arg(long, short = 'p', value_name = "NAME")]
    pub profile: String,
    /// Every machine of the headnode's machines.txt.
    #[arg(long, conflicts_with = "macs", required_unless_present = "macs")]
    pub all: bool,
    /// These machines (each must be in machines.txt).
    #[arg(value_name = "MAC")]
    pub macs: Vec<String>,
    /// Only arm the machines; leave their power alone.
    #[arg(long)]
    pub no_power: bool,
    /// Give up on a machine after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    pub timeout: u64,
}

/// `nodes VLAN [--json] [--power] [--events [MAC]]`.
#[derive(Debug, Clone, Args)]
pub struct NodesArgs {
    /// The VLAN.
    pub vlan: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also ask each machine's BMC for its power state.
    #[arg(long)]
    pub power: bool,
    /// Print the timeline (DHCP, TFTP, HTTP, /boot-default/ calls), of one machine if given.
    #[arg(long, value_name = "MAC", num_args = 0..=1, default_missing_value = "")]
    pub events: Option<String>,
}

/// `selftest [--vlan N] [--keep] [--json]`, `selftest --last`.
#[derive(Debug, Clone, Args)]
pub struct SelftestArgs {
    /// The VLAN of the throwaway headnode: one that has no headnode here (the lab's networks
    /// are isolated and its own, whatever the VLAN).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_VLAN)]
    pub vlan: u16,
    /// Leave what the run made in place, to look at (the next run of the VLAN removes it).
    #[arg(long)]
    pub keep: bool,
    /// Print the result as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Show the last run's result (exit status 0 if it passed, 1 if it failed, 3 if none ran).
    #[arg(long, conflicts_with = "keep")]
    pub last: bool,
    /// The test installer [default: `installer/` beside the base image, where
    /// build-installer.sh puts it].
    #[arg(long, value_name = "DIR")]
    pub installer: Option<PathBuf>,
    /// Where a failed run's serial logs are copied.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_LOGS_DIR)]
    pub logs: PathBuf,
    /// Where OVMF's 4 MiB firmware files are (OVMF_CODE_4M.fd, OVMF_CODE_4M.secboot.fd,
    /// OVMF_VARS_4M.fd, OVMF_VARS_4M.ms.fd).
    #[arg(long, value_name = "DIR", default_value = OVMF_DIR)]
    pub ovmf_dir: PathBuf,
    /// Where the lab lives while the run lasts.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_WORK_DIR)]
    pub work_dir: PathBuf,
    /// Give the headnode this many seconds to be ready (and the nodes as many to install).
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    pub timeout: u64,
}
