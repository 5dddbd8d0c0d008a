/*!
The flags of the commands that operate the nodes from the hypervisor: `nodes` (see
`cli::operate`).
*/

use clap::Args;

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
