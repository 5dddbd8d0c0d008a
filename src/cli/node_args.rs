/*!
The flags of the commands that operate the nodes from the hypervisor: `install` and `nodes`
(see `cli::operate`).
*/

use clap::Args;

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
