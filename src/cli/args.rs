/*!
The command line: clap definitions, and turning flags into settings layered over the config
file.
*/

use crate::cli::node_args::{InstallArgs, NodesArgs, ProfileCommand, SelftestArgs};
use crate::host::hypervisor::DEFAULT_URI;
use crate::host::kvm_probe::PROBE_ARG;
use crate::model::config::{Attachment, Config, VirtTypeChoice};
use clap::{Args, Parser, Subcommand};
use clap_complete::Shell;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Give every VLAN its own PXE headnode VM on libvirt.
///
/// `mkheadnode 42` creates and starts the headnode of VLAN 42. VLAN lists such as `100-110`
/// or `7,9,12` work everywhere a VLAN does; each VLAN is handled on its own.
#[derive(Debug, Parser)]
#[command(name = "mkheadnode", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do (default: create the VLANs given).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// VLANs to create, e.g. `42`, `100-110`, `7,9,12`.
    #[arg(value_name = "VLANS")]
    pub vlans: Option<String>,

    /// Options of create.
    #[command(flatten)]
    pub create: CreateArgs,

    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
}

const EXIT_CODES: &str =
    "Exit status: 0 success, 1 other failure, 2 usage or configuration error, \
3 not found, 4 libvirt failure, 5 --wait timed out, 6 refused (a domain that is not ours).";

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and start headnodes (the default command).
    Create {
        /// VLANs, e.g. `42`, `100-110`, `7,9,12`.
        vlans: String,
        /// Options of create.
        #[command(flatten)]
        create: CreateArgs,
    },
    /// Stop and remove headnodes and their disks; keeps the config dir unless --purge.
    Teardown {
        /// VLANs, e.g. `42`, `100-110`, `7,9,12`.
        vlans: String,
        /// Also delete /var/lib/headnode-config/<vlan>.
        #[arg(long)]
        purge: bool,
    },
    /// Tear down (keeping the config dir) and create again, with the same MACs.
    Rebuild {
        /// VLANs, e.g. `42`, `100-110`, `7,9,12`.
        vlans: String,
        /// Options of create.
        #[command(flatten)]
        create: CreateArgs,
    },
    /// List every headnode made by mkheadnode.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one headnode.
    Status {
        /// The VLAN.
        vlan: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check the host: libvirt, AppArmor, config dir, base image, networks, kvm.
    Check {
        /// Also check the VLAN networks of these VLANs.
        vlans: Option<String>,
    },
    /// Internal: run the KVM probe (used by virt-type auto).
    #[command(name = PROBE_ARG, hide = true)]
    KvmProbe,
    /// Print the completion script of a shell.
    ///
    /// The Debian package installs those of bash, zsh and fish. Elsewhere, e.g.
    /// `mkheadnode completions bash > /etc/bash_completion.d/mkheadnode`.
    Completions {
        /// The shell.
        shell: Shell,
    },
    /// Internal: write the man pages (mkheadnode.1, mkheadnode-<command>.1) into DIR.
    #[command(name = MAN_ARG, hide = true)]
    Man {
        /// Where to write them (made if absent).
        dir: PathBuf,
    },
    /// Base images on hypervisors: push one (upload, verify, record), list them.
    Image {
        /// What to do with base images.
        #[command(subcommand)]
        action: ImageCommand,
    },
    /// Install profiles in config dirs: add (validate, copy, publish), list, remove.
    Profile {
        /// What to do with profiles.
        #[command(subcommand)]
        action: ProfileCommand,
    },
    /// Arm machines for an install profile and power-cycle them, through the headnode.
    Install(InstallArgs),
    /// The machines of a VLAN as its headnode sees them: boot target, lease, fetches, power.
    Nodes(NodesArgs),
    /// Prove the whole stack on this hypervisor: an isolated lab, a throwaway headnode, BIOS,
    /// UEFI and Secure Boot nodes installed from it; everything removed after.
    ///
    /// Prints a timing table with a verdict per step and exits non-zero on any failure;
    /// a failed run's serial logs are kept (--logs). The result is kept for `--last`.
    Selftest(SelftestArgs),
}

/// `image push|list`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Upload a base image into the hypervisor's pool `<pool>-images` through libvirt, read it
    /// back to verify it, and record its name and SHA-256. An interrupted push resumes where
    /// it stopped when run again. Goes to `--connect URI`, `--host NAME`, or every host of the
    /// fleet.
    Push {
        /// The image on this machine [default: the configured base_image].
        file: Option<PathBuf>,
    },
    /// The pushed images of each hypervisor: name, SHA-256, size, complete or not, and
    /// whether each is this machine's base_image.
    List {
        /// Read each image back and compare it with its record (exit 1 if one differs).
        #[arg(long)]
        verify: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// The hidden subcommand that writes the man pages (`make deb` runs it).
pub const MAN_ARG: &str = "__man";

/// Options of create and rebuild.
#[derive(Debug, Clone, Default, Args)]
pub struct CreateArgs {
    /// Install this file (validated: `<mac> <ipv4>` per line) as machines.txt.
    #[arg(long, value_name = "FILE")]
    pub machines: Option<PathBuf>,
    /// Install this file (validated: `[default]` or `[<bmc ipv4>]` sections of known keys) as
    /// bmc.conf, readable by qemu's group only.
    #[arg(long, value_name = "FILE")]
    pub bmc_conf: Option<PathBuf>,
    /// Define the headnodes but do not start them.
    #[arg(long)]
    pub no_start: bool,
    /// Wait until each headnode's cloud-init has finished.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this many seconds (exit status 5) [default: 900].
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Push the base image first to a hypervisor that lacks it (as `mkheadnode image push`
    /// does), instead of failing; config key push_image.
    #[arg(long)]
    pub push_image: bool,
}

impl CreateArgs {
    /// How long `--wait` waits when `--timeout` is not given.
    pub const DEFAULT_TIMEOUT: u64 = 900;

    /// These options with those given before the subcommand filled in, so that
    /// `mkheadnode --wait rebuild 42` and `mkheadnode rebuild 42 --wait` mean the same.
    pub fn merged(&self, before: &CreateArgs) -> CreateArgs {
        CreateArgs {
            machines: self.machines.clone().or_else(|| before.machines.clone()),
            bmc_conf: self.bmc_conf.clone().or_else(|| before.bmc_conf.clone()),
            no_start: self.no_start || before.no_start,
            wait: self.wait || before.wait,
            timeout: self.timeout.or(before.timeout),
            push_image: self.push_image || before.push_image,
        }
    }
}

/// Options every command takes; each config key is also a flag here.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// libvirt URI [default: qemu:///system, or the configured [[hosts]]].
    #[arg(long, short = 'c', global = true, env = "LIBVIRT_DEFAULT_URI")]
    pub connect: Option<String>,
    /// Only this host of the configured fleet (may be repeated).
    #[arg(long, global = true, value_name = "NAME", conflicts_with = "connect")]
    pub host: Vec<String>,
    /// Config file (default /etc/mkheadnode/config.toml, if it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the domain XML and seed files; change nothing.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// How many VLANs to work on at once in bulk runs.
    #[arg(long, short = 'j', global = true, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Say more (may be repeated).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Say only errors and the summary (may be repeated).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
    /// Base cloud image (qcow2 or raw).
    #[arg(long, global = true, value_name = "PATH")]
    pub base_image: Option<PathBuf>,
    /// Storage pool for overlays and seeds.
    #[arg(long, global = true, value_name = "NAME")]
    pub pool: Option<String>,
    /// Directory of that pool.
    #[arg(long, global = true, value_name = "DIR")]
    pub pool_dir: Option<PathBuf>,
    /// Directory of the pool of pushed base images (`<pool>-images`) on the hypervisor.
    #[arg(long, global = true, value_name = "DIR")]
    pub image_dir: Option<PathBuf>,
    /// Overlay disk size in GiB.
    #[arg(long, global = true, value_name = "GIB")]
    pub disk_gib: Option<u64>,
    /// Parent of the per-VLAN config dirs.
    #[arg(long, global = true, value_name = "DIR")]
    pub config_root: Option<PathBuf>,
    /// libvirt's AppArmor abstraction file.
    #[arg(long, global = true, value_name = "FILE")]
    pub apparmor_abstraction: Option<PathBuf>,
    /// Directory for per-VLAN lock files.
    #[arg(long, global = true, value_name = "DIR")]
    pub lock_dir: Option<PathBuf>,
    /// Directory for the records that let a run clean up after an interrupted one.
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Directory for serial console logs.
    #[arg(long, global = true, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Memory per headnode in MiB.
    #[arg(long, global = true, value_name = "MIB")]
    pub memory: Option<u64>,
    /// Virtual CPUs per headnode.
    #[arg(long, global = true)]
    pub vcpus: Option<u32>,
    /// TCG translation cache per headnode in MiB, when it runs under TCG (qemu).
    #[arg(long, global = true, value_name = "MIB")]
    pub tcg_tb_cache: Option<u64>,
    /// kvm, qemu (TCG) or auto.
    #[arg(long, global = true, value_enum)]
    pub virt_type: Option<VirtTypeChoice>,
    /// VLAN side: libvirt network name pattern (`{vlan}` is replaced).
    #[arg(long, global = true, value_name = "PATTERN", group = "vlan_att")]
    pub vlan_network: Option<String>,
    /// VLAN side: Linux bridge name pattern (`{vlan}` is replaced).
    #[arg(long, global = true, value_name = "PATTERN", group = "vlan_att")]
    pub vlan_bridge: Option<String>,
    /// VLAN side: Open vSwitch bridge; the NIC gets the VLAN tag.
    #[arg(long, global = true, value_name = "BRIDGE", group = "vlan_att")]
    pub vlan_ovs_bridge: Option<String>,
    /// Public side: libvirt network.
    #[arg(long, global = true, value_name = "NAME", group = "pub_att")]
    pub public_network: Option<String>,
    /// Public side: Linux bridge.
    #[arg(long, global = true, value_name = "BRIDGE", group = "pub_att")]
    pub public_bridge: Option<String>,
    /// Headnode address on the VLAN.
    #[arg(long, global = true, value_name = "IPV4")]
    pub private_address: Option<Ipv4Addr>,
    /// Headnode address on the BMC management subnet.
    #[arg(long, global = true, value_name = "IPV4")]
    pub management_address: Option<Ipv4Addr>,
    /// First address of the DHCP range.
    #[arg(long, global = true, value_name = "IPV4")]
    pub dhcp_range_start: Option<Ipv4Addr>,
    /// Last address of the DHCP range.
    #[arg(long, global = true, value_name = "IPV4")]
    pub dhcp_range_end: Option<Ipv4Addr>,
    /// An SSH public key for the headnode's default user (repeatable; adds to the config's).
    #[arg(long = "ssh-key", global = true, value_name = "KEY")]
    pub ssh_keys: Vec<String>,
}

impl GlobalArgs {
    /// The libvirt URI of a run on one hypervisor: `--connect`, `LIBVIRT_DEFAULT_URI`, or
    /// `qemu:///system`.
    pub fn uri(&self) -> &str {
        self.connect.as_deref().unwrap_or(DEFAULT_URI)
    }

    /// These options, aimed at the hypervisor at `uri`.
    pub fn aimed_at(&self, uri: &str) -> GlobalArgs {
        GlobalArgs {
            connect: Some(uri.to_string()),
            ..self.clone()
        }
    }

    /// Lay the flags over `config` and validate the result.
    pub fn apply(&self, mut config: Config) -> anyhow::Result<Config> {
        fn set<T: Clone>(slot: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                *slot = v.clone();
            }
        }
        set(&mut config.base_image, &self.base_image);
        set(&mut config.pool, &self.pool);
        set(&mut config.pool_dir, &self.pool_dir);
        set(&mut config.image_dir, &self.image_dir);
        set(&mut config.disk_gib, &self.disk_gib);
        set(&mut config.config_root, &self.config_root);
        set(&mut config.apparmor_abstraction, &self.apparmor_abstraction);
        set(&mut config.lock_dir, &self.lock_dir);
        set(&mut config.state_dir, &self.state_dir);
        set(&mut config.log_dir, &self.log_dir);
        set(&mut config.memory_mib, &self.memory);
        set(&mut config.vcpus, &self.vcpus);
        set(&mut config.tcg_tb_cache_mib, &self.tcg_tb_cache);
        set(&mut config.virt_type, &self.virt_type);
        set(
            &mut config.addressing.private_address,
            &self.private_address,
        );
        set(
            &mut config.addressing.management_address,
            &self.management_address,
        );
        set(
            &mut config.addressing.dhcp_range_start,
            &self.dhcp_range_start,
        );
        set(&mut config.addressing.dhcp_range_end, &self.dhcp_range_end);
        if let Some(name) = &self.vlan_network {
            config.vlan_attachment = Attachment::Network { name: name.clone() };
        }
        if let Some(name) = &self.vlan_bridge {
            config.vlan_attachment = Attachment::Bridge { name: name.clone() };
        }
        if let Some(name) = &self.vlan_ovs_bridge {
            config.vlan_attachment = Attachment::Ovs { name: name.clone() };
        }
        if let Some(name) = &self.public_network {
            config.public_attachment = Attachment::Network { name: name.clone() };
        }
        if let Some(name) = &self.public_bridge {
            config.public_attachment = Attachment::Bridge { name: name.clone() };
        }
        config
            .ssh_authorized_keys
            .extend(self.ssh_keys.iter().cloned());
        config.validate().context("in the command-line flags")?;
        Ok(config)
    }
}

use anyhow::Context as _;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{kind_of, Kind};
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bare_vlans_mean_create_and_flags_override_config() {
        let cli = Cli::try_parse_from([
            "mkheadnode",
            "42",
            "--memory",
            "2048",
            "--vlan-bridge",
            "br{vlan}",
            "--wait",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.vlans.as_deref(), Some("42"));
        assert!(cli.create.wait);
        let config = cli.global.apply(Config::default()).unwrap();
        assert_eq!(config.memory_mib, 2048);
        assert_eq!(
            config.vlan_attachment,
            Attachment::Bridge {
                name: "br{vlan}".into()
            }
        );
    }

    #[test]
    fn subcommands_take_global_flags_after_them() {
        let cli = Cli::try_parse_from([
            "mkheadnode",
            "teardown",
            "7,9",
            "--purge",
            "-c",
            "test:///default",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Teardown { purge: true, .. })
        ));
        assert_eq!(cli.global.uri(), "test:///default");
    }

    #[test]
    fn global_flags_may_come_before_the_subcommand() {
        for args in [
            &["mkheadnode", "-q", "list"][..],
            &[
                "mkheadnode",
                "--connect",
                "test:///default",
                "list",
                "--json",
            ],
            &["mkheadnode", "--jobs", "2", "teardown", "7"],
        ] {
            let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert!(
                cli.command.is_some() && cli.vlans.is_none(),
                "{args:?} -> {cli:?}"
            );
        }
    }

    #[test]
    fn create_options_count_before_or_after_the_subcommand() {
        let cli = Cli::try_parse_from(["mkheadnode", "--wait", "rebuild", "4", "--timeout", "60"])
            .unwrap();
        let Some(Command::Rebuild { create, .. }) = &cli.command else {
            panic!("{cli:?}")
        };
        let args = create.merged(&cli.create);
        assert!(args.wait);
        assert_eq!(args.timeout, Some(60));
    }

    #[test]
    fn verbose_and_quiet_may_be_repeated() {
        for args in [
            &["mkheadnode", "-vv", "list"][..],
            &["mkheadnode", "list", "-v", "-v"],
        ] {
            assert_eq!(
                Cli::try_parse_from(args).unwrap().global.verbose,
                2,
                "{args:?}"
            );
        }
        let cli = Cli::try_parse_from(["mkheadnode", "-q", "-q", "list"]).unwrap();
        assert_eq!(cli.global.quiet, 2);
        assert!(Cli::try_parse_from(["mkheadnode", "-v", "-q", "list"]).is_err());
    }

    #[test]
    fn node_commands_parse() {
        let cli =
            Cli::try_parse_from(["mkheadnode", "install", "42", "-p", "deb", "--all"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Install(ref a)) if a.all && a.macs.is_empty()));
        for bad in [
            &["mkheadnode", "install", "42", "-p", "deb"][..],
            &[
                "mkheadnode",
                "install",
                "42",
                "-p",
                "deb",
                "--all",
                "aa:bb:cc:dd:ee:ff",
            ],
            &["mkheadnode", "install", "42", "--all"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
        let cli = Cli::try_parse_from(["mkheadnode", "nodes", "42", "--events"]).unwrap();
        assert!(
            matches!(cli.command, Some(Command::Nodes(ref a)) if a.events.as_deref() == Some(""))
        );
        let cli =
            Cli::try_parse_from(["mkheadnode", "nodes", "42", "--events", "aa:bb:cc:dd:ee:ff"])
                .unwrap();
        assert!(
            matches!(cli.command, Some(Command::Nodes(ref a)) if a.events.as_ref().is_some_and(|m| m.len() == 17))
        );
        let cli =
            Cli::try_parse_from(["mkheadnode", "profile", "add", "7,9", "deb", "/tmp/d"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Profile {
                action: ProfileCommand::Add { .. }
            })
        ));
    }

    #[test]
    fn bad_flag_values_are_usage_errors() {
        assert!(Cli::try_parse_from([
            "mkheadnode",
            "1",
            "--vlan-network",
            "a",
            "--vlan-bridge",
            "b"
        ])
        .is_err());
        let cli = Cli::try_parse_from(["mkheadnode", "1", "--vcpus", "0"]).unwrap();
        let err = cli.global.apply(Config::default()).unwrap_err();
        assert_eq!(kind_of(&err), Kind::Usage);
    }
}
