/*!
Settings: `/etc/mkheadnode/config.toml`, overridden by command-line flags.

Every key has a default, so an empty (or absent) file is a valid configuration. Unknown keys
are errors, so a typo never silently falls back to a default.
*/

use crate::error::{failure, Kind};
use crate::model::addresses::Ipv4Net;
use crate::model::fleet::{self, Host};
use crate::model::text::{apparmor_path_problem, control_problem};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Where the configuration is read from when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/mkheadnode/config.toml";

/// The largest overlay disk, in GiB: its size in bytes must fit in 64 bits with room to spare.
pub const MAX_DISK_GIB: u64 = 1 << 16;

/// The TCG translation cache per headnode unless configured. A headnode fills it during its boot
/// and holds all of it while idle; since its image sets it up before cloud-init, the boot has
/// little Python to translate, and 32 MiB is as quick to serve as 64 (`make bench` measures both
/// the ready time and the memory of the defaults). 50 nodes installing at once over HTTP were
/// a little quicker with 64 MiB before the storm's fixes (40-59 against 31-49 MiB/s: both flush
/// the cache every few seconds then); after them 32 MiB gives 50 nodes more than one node's
/// rate (BENCHMARKS.md). A larger one costs every idle headnode its size.
pub const DEFAULT_TCG_TB_CACHE_MIB: u64 = 32;
/// Below this, qemu would spend its time flushing and retranslating the guest's code.
pub const MIN_TCG_TB_CACHE_MIB: u64 = 32;
/// qemu's own default; more buys nothing for a headnode.
pub const MAX_TCG_TB_CACHE_MIB: u64 = 1024;

/// How a headnode's NIC reaches a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Attachment {
    /// A libvirt network; `{vlan}` in the name is replaced by the VLAN number.
    Network {
        /// Network name or pattern, e.g. `vlan{vlan}`.
        name: String,
    },
    /// A Linux bridge; `{vlan}` in the name is replaced by the VLAN number.
    Bridge {
        /// Bridge name or pattern, e.g. `br-vlan{vlan}`.
        name: String,
    },
    /// An Open vSwitch bridge; the NIC is tagged with the VLAN (private side only).
    Ovs {
        /// The OVS bridge name, e.g. `br-trunk`.
        name: String,
    },
}

/// Which virtualization type to ask libvirt for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum VirtTypeChoice {
    /// KVM where the host offers it and a probe shows it runs a guest, else qemu (TCG).
    Auto,
    /// Hardware virtualization; fail if unavailable.
    Kvm,
    /// Software emulation (TCG).
    Qemu,
}

/// The headnode's addresses on the VLAN, as in the 2013 recipe by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Addressing {
    /// The headnode's address on the VLAN's private network.
    pub private_address: Ipv4Addr,
    /// Prefix length of the private network.
    pub private_prefix: u8,
    /// The headnode's address on the BMC management subnet (same wire).
    pub management_address: Ipv4Addr,
    /// Prefix length of the management subnet.
    pub management_prefix: u8,
    /// First address dhcpd hands out.
    pub dhcp_range_start: Ipv4Addr,
    /// Last address dhcpd hands out.
    pub dhcp_range_end: Ipv4Addr,
}

impl Default for Addressing {
    fn default() -> Self {
        Addressing {
            private_address: Ipv4Addr::new(192, 168, 10, 254),
            private_prefix: 24,
            management_address: Ipv4Addr::new(10, 0, 0, 254),
            management_prefix: 24,
            dhcp_range_start: Ipv4Addr::new(192, 168, 10, 1),
            dhcp_range_end: Ipv4Addr::new(192, 168, 10, 127),
        }
    }
}

/// Everything mkheadnode needs to know about the hypervisor and the headnodes it makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The cloud image every headnode's disk is an overlay on (qcow2 or raw).
    pub base_image: PathBuf,
    /// The libvirt storage pool (type dir) that holds overlays and seeds; made if absent.
    pub pool: String,
    /// The pool's directory.
    pub pool_dir: PathBuf,
    /// Size of each overlay disk in GiB (at least the base image's size).
    pub disk_gib: u64,
    /// Parent of the per-VLAN config dirs shared into the guests.
    pub config_root: PathBuf,
    /// libvirt's AppArmor abstraction for qemu; patched only if it exists.
    pub apparmor_abstraction: PathBuf,
    /// Where per-VLAN lock files live.
    pub lock_dir: PathBuf,
    /// Where the state records live that make an interrupted run's leftovers provably ours
    /// (persistent: they must outlive a power loss).
    pub state_dir: PathBuf,
    /// Where each headnode's serial console is logged (on the hypervisor).
    pub log_dir: PathBuf,
    /// Memory per headnode in MiB.
    pub memory_mib: u64,
    /// Virtual CPUs per headnode.
    pub vcpus: u32,
    /// Size in MiB of qemu's TCG translation cache when a headnode runs under TCG (qemu's own
    /// default, 1 GiB, would sit in every headnode's memory beside its guest RAM).
    pub tcg_tb_cache_mib: u64,
    /// `auto`, `kvm` or `qemu`.
    pub virt_type: VirtTypeChoice,
    /// How NIC 1 (guest eth0) reaches the VLAN.
    pub vlan_attachment: Attachment,
    /// How NIC 2 (guest eth1) reaches the public network.
    pub public_attachment: Attachment,
    /// The headnode's addresses.
    pub addressing: Addressing,
    /// SSH public keys allowed to log in to the headnode as the default user.
    pub ssh_authorized_keys: Vec<String>,
    /// The guest's `/boot-default/` accepts a call only from the address holding that MAC's
    /// DHCP lease (the 2013 script let any host on the VLAN reset any node).
    pub boot_default_requires_lease: bool,
    /// The directory of the storage pool `<pool>-images` that `mkheadnode image push` uploads
    /// base images into, on each hypervisor.
    pub image_dir: PathBuf,
    /// Whether create and rebuild push the base image to a hypervisor that lacks it, instead
    /// of failing (`--push-image`).
    pub push_image: bool,
    /// The fleet: hypervisors and the VLANs each serves (`[[hosts]]`); empty for one.
    pub hosts: Vec<Host>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            base_image: PathBuf::from("/var/lib/mkheadnode/base/debian-12-headnode.qcow2"),
            pool: "mkheadnode".into(),
            pool_dir: PathBuf::from("/var/lib/mkheadnode/images"),
            disk_gib: 10,
            config_root: PathBuf::from("/var/lib/headnode-config"),
            apparmor_abstraction: PathBuf::from("/etc/apparmor.d/abstractions/libvirt-qemu"),
            lock_dir: PathBuf::from("/run/mkheadnode"),
            state_dir: PathBuf::from("/var/lib/mkheadnode/state"),
            log_dir: PathBuf::from("/var/log/libvirt/qemu"),
            memory_mib: 512,
            vcpus: 2,
            tcg_tb_cache_mib: DEFAULT_TCG_TB_CACHE_MIB,
            virt_type: VirtTypeChoice::Auto,
            vlan_attachment: Attachment::Network {
                name: "vlan{vlan}".into(),
            },
            public_attachment: Attachment::Network {
                name: "default".into(),
            },
            addressing: Addressing::default(),
            ssh_authorized_keys: Vec::new(),
            boot_default_requires_lease: true,
            image_dir: PathBuf::from("/var/lib/mkheadnode/pushed"),
            push_image: false,
            hosts: Vec::new(),
        }
    }
}

impl Config {
    /// Parse TOML text; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &Path) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| {
            failure(
                Kind::Usage,
                format!(
                    "invalid configuration in {}: {}",
                    origin.display(),
                    e.message()
                ),
            )
        })?;
        config
            .validate()
            .with_context(|| format!("in {}", origin.display()))?;
        Ok(config)
    }

    /// The storage pool of pushed base images: `<pool>-images`, at `image_dir`.
    pub fn image_pool(&self) -> String {
        format!("{}-images", self.pool)
    }

    /// Load `path` if given (it must exist), else the default file if it exists, else defaults.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        Config::load_or(path, Path::new(DEFAULT_CONFIG_PATH))
    }

    /// [`Config::load`] with `default` as the default file.
    fn load_or(path: Option<&Path>, default: &Path) -> anyhow::Result<Config> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (default.to_path_buf(), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::from_toml(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(Config::default())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(failure(
                Kind::NotFound,
                format!("config file {} does not exist", path.display()),
            )),
            Err(e) => Err(e).with_context(|| format!("reading config file {}", path.display())),
        }
    }

    /// Check values that parse but make no sense, one section at a time (sizes, paths,
    /// attachments, addressing, keys). Each error names the key and its value.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.validate_sizes()?;
        self.validate_paths()?;
        self.validate_attachments()?;
        self.addressing.validate()?;
        validate_keys(&self.ssh_authorized_keys)?;
        fleet::validate(&self.hosts)
    }

    /// The headnode's size, and the storage pool's name.
    fn validate_sizes(&self) -> anyhow::Result<()> {
        if self.memory_mib < 256 {
            return Err(bad(format!(
                "memory_mib = {} is too small: a headnode needs at least 256",
                self.memory_mib
            )));
        }
        if !(MIN_TCG_TB_CACHE_MIB..=MAX_TCG_TB_CACHE_MIB).contains(&self.tcg_tb_cache_mib) {
            return Err(bad(format!(
                "tcg_tb_cache_mib = {} is out of range: use {MIN_TCG_TB_CACHE_MIB} to \
                 {MAX_TCG_TB_CACHE_MIB}",
                self.tcg_tb_cache_mib
            )));
        }
        if self.vcpus == 0 || self.vcpus > 64 {
            return Err(bad(format!(
                "vcpus = {} is out of range: use 1 to 64",
                self.vcpus
            )));
        }
        if self.disk_gib == 0 {
            return Err(bad(format!(
                "disk_gib = {} is too small: use at least 1",
                self.disk_gib
            )));
        }
        if self.disk_gib > MAX_DISK_GIB {
            return Err(bad(format!(
                "disk_gib = {} is too large: use at most {MAX_DISK_GIB} (64 TiB)",
                self.disk_gib
            )));
        }
        if let Some(problem) = control_problem(&self.pool) {
            return Err(bad(format!(
                "pool = {:?} {problem}: use a plain storage pool name",
                self.pool
            )));
        }
        // White space would not survive the trip through the domain's metadata, whose values
        // are read back trimmed: the headnode would no longer look like ours.
        if self.pool.is_empty() || self.pool.contains(|c: char| c == '/' || c.is_whitespace()) {
            return Err(bad(format!(
                "pool = `{}` is not a usable storage pool name: use a name without `/` or \
                 white space",
                self.pool
            )));
        }
        Ok(())
    }

    /// The public side cannot be a trunk, and every name must be one a network or bridge can
    /// have.
    fn validate_attachments(&self) -> anyhow::Result<()> {
        if matches!(self.public_attachment, Attachment::Ovs { .. }) {
            return Err(bad(
                "public_attachment.kind = \"ovs\" is for the VLAN side only: use `network` or \
                 `bridge` for the public side"
                    .into(),
            ));
        }
        for (key, attachment) in [
            ("vlan_attachment", &self.vlan_attachment),
            ("public_attachment", &self.public_attachment),
        ] {
            let (Attachment::Network { name }
            | Attachment::Bridge { name }
            | Attachment::Ovs { name }) = attachment;
            if let Some(problem) = control_problem(name) {
                return Err(bad(format!(
                    "{key}.name = {name:?} {problem}: a network or bridge name cannot have one"
                )));
            }
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(bad(format!(
                    "{key}.name = `{name}` is not a usable name: it is empty or has white space"
                )));
            }
        }
        Ok(())
    }

    /// Every path must be absolute (they are paths on the hypervisor, whatever the working dir),
    /// UTF-8 and free of control characters (several go into the domain XML); `config_root`
    /// goes into an AppArmor rule too, so it must be a plain path (see
    /// [`apparmor_path_problem`]).
    fn validate_paths(&self) -> anyhow::Result<()> {
        for (key, p) in [
            ("base_image", &self.base_image),
            ("pool_dir", &self.pool_dir),
            ("image_dir", &self.image_dir),
            ("config_root", &self.config_root),
            ("apparmor_abstraction", &self.apparmor_abstraction),
            ("lock_dir", &self.lock_dir),
            ("state_dir", &self.state_dir),
            ("log_dir", &self.log_dir),
        ] {
            if !p.is_absolute() {
                return Err(bad(format!(
                    "{key} = `{}` must be an absolute path",
                    p.display()
                )));
            }
            let Some(text) = p.to_str() else {
                return Err(bad(format!(
                    "{key} = {p:?} is not valid UTF-8: use a path made of UTF-8 characters"
                )));
            };
            if let Some(problem) = control_problem(text) {
                return Err(bad(format!("{key} = {text:?} {problem}: remove it")));
            }
        }
        if let Some(problem) = apparmor_path_problem(&self.config_root) {
            return Err(bad(format!(
                "config_root = {:?} {problem}: it goes into an AppArmor rule \
                 (`<config_root>/** r,`)",
                self.config_root
            )));
        }
        Ok(())
    }
}

impl Addressing {
    /// The prefixes, and the DHCP range inside the private network without the headnode's own
    /// address in it.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (key, p) in [
            ("private_prefix", self.private_prefix),
            ("management_prefix", self.management_prefix),
        ] {
            if !(8..=30).contains(&p) {
                return Err(bad(format!(
                    "addressing.{key} = {p} is out of range: use 8 to 30"
                )));
            }
        }
        let net = |ip: Ipv4Addr| Ipv4Net::of(ip, self.private_prefix).network;
        for (key, ip) in [
            ("dhcp_range_start", self.dhcp_range_start),
            ("dhcp_range_end", self.dhcp_range_end),
        ] {
            if net(ip) != net(self.private_address) {
                return Err(bad(format!(
                    "addressing.{key} = {ip} is outside the private network {}/{}",
                    net(self.private_address),
                    self.private_prefix
                )));
            }
        }
        let (start, end) = (self.dhcp_range_start, self.dhcp_range_end);
        if u32::from(start) > u32::from(end) {
            return Err(bad(format!(
                "addressing.dhcp_range_start = {start} is above addressing.dhcp_range_end = \
                 {end}: swap them"
            )));
        }
        let host = u32::from(self.private_address);
        if (u32::from(start)..=u32::from(end)).contains(&host) {
            return Err(bad(format!(
                "addressing.private_address = {} lies inside the DHCP range {start} to {end}: \
                 move one of them",
                self.private_address
            )));
        }
        Ok(())
    }
}

/// Each key must be one line of `<type> <key> [comment]` without control characters: one of
/// them makes cloud-init reject the whole user-data, and the headnode comes up unconfigured.
fn validate_keys(keys: &[String]) -> anyhow::Result<()> {
    for (i, key) in keys.iter().enumerate() {
        if let Some(problem) = control_problem(key) {
            return Err(bad(format!(
                "ssh_authorized_keys[{i}] = {key:?} {problem}: cloud-init would reject the whole \
                 user-data; copy the key again as one line of `<type> <key> [comment]`"
            )));
        }
        if key.split_whitespace().count() < 2 {
            return Err(bad(format!(
                "ssh_authorized_keys[{i}] = `{key}` is not a one-line public key: write it as \
                 `<type> <key> [comment]`, as in ~/.ssh/id_ed25519.pub"
            )));
        }
    }
    Ok(())
}

/// A configuration error (exit status 2).
fn bad(message: String) -> anyhow::Error {
    failure(Kind::Usage, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::kind_of;

    fn parse(text: &str) -> anyhow::Result<Config> {
        Config::from_toml(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_is_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn reads_every_section() {
        let c = parse(
            r#"
            memory_mib = 2048
            virt_type = "qemu"
            ssh_authorized_keys = ["ssh-ed25519 AAAA op@desk"]
            [vlan_attachment]
            kind = "ovs"
            name = "br-trunk"
            [public_attachment]
            kind = "bridge"
            name = "br-public"
            [addressing]
            private_address = "192.168.20.254"
            dhcp_range_start = "192.168.20.10"
            dhcp_range_end = "192.168.20.99"
            "#,
        )
        .unwrap();
        assert_eq!(c.memory_mib, 2048);
        assert_eq!(c.virt_type, VirtTypeChoice::Qemu);
        assert_eq!(
            c.vlan_attachment,
            Attachment::Ovs {
                name: "br-trunk".into()
            }
        );
        assert_eq!(
            c.public_attachment,
            Attachment::Bridge {
                name: "br-public".into()
            }
        );
        assert_eq!(c.addressing.private_prefix, 24);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let msg = format!("{:#}", parse("memory = 2048").unwrap_err());
        assert!(msg.contains("memory") && msg.contains("test.toml"), "{msg}");
        let msg = format!(
            "{:#}",
            parse("[addressing]\nprivate_adress = \"1.2.3.4\"").unwrap_err()
        );
        assert!(msg.contains("private_adress"), "{msg}");
    }

    #[test]
    fn the_tcg_translation_cache_is_bounded_at_both_ends() {
        let parse = |v: u64| Config::from_toml(&format!("tcg_tb_cache_mib = {v}"), Path::new("t"));
        for ok in [MIN_TCG_TB_CACHE_MIB, MAX_TCG_TB_CACHE_MIB] {
            assert_eq!(parse(ok).unwrap().tcg_tb_cache_mib, ok);
        }
        for bad in [MIN_TCG_TB_CACHE_MIB - 1, MAX_TCG_TB_CACHE_MIB + 1] {
            let e = format!("{:#}", parse(bad).unwrap_err());
            assert!(
                e.contains(&format!("tcg_tb_cache_mib = {bad} is out of range")),
                "{e}"
            );
        }
    }

    #[test]
    fn nonsense_values_are_errors() {
        for (text, needle) in [
            ("memory_mib = 16", "memory_mib"),
            ("vcpus = 0", "vcpus"),
            ("base_image = \"relative.qcow2\"", "absolute"),
            ("state_dir = \"state\"", "state_dir = `state` must be an absolute path"),
            ("[public_attachment]\nkind = \"ovs\"\nname = \"x\"", "ovs"),
            ("disk_gib = 0", "disk_gib = 0"),
            ("disk_gib = 17179869184", "disk_gib = 17179869184 is too large"),
            ("pool = \"a/b\"", "pool = `a/b`"),
            ("pool = \"mk \"", "pool = `mk ` is not a usable storage pool name"),
            ("[vlan_attachment]\nkind = \"bridge\"\nname = \"\"", "vlan_attachment.name"),
            ("[addressing]\nprivate_prefix = 31", "addressing.private_prefix = 31"),
            ("[addressing]\ndhcp_range_start = \"10.1.1.1\"", "outside"),
            (
                "[addressing]\ndhcp_range_start = \"192.168.10.99\"\ndhcp_range_end = \"192.168.10.9\"",
                "dhcp_range_start = 192.168.10.99 is above",
            ),
            (
                "[addressing]\ndhcp_range_end = \"192.168.10.254\"",
                "inside the DHCP range",
            ),
            ("ssh_authorized_keys = [\"nokey\"]", "ssh_authorized_keys[0] = `nokey`"),
        ] {
            let msg = format!("{:#}", parse(text).unwrap_err());
            assert!(msg.contains(needle), "{text}: {msg}");
        }
    }

    #[test]
    fn control_characters_are_refused_naming_the_key() {
        for (text, needle) in [
            (
                r#"ssh_authorized_keys = ["ssh-ed25519 AAAA op@desk", "ssh-rsa AA\u0007AA x"]"#,
                "ssh_authorized_keys[1]",
            ),
            (
                r#"ssh_authorized_keys = ["ssh-rsa AAAA x\u007F"]"#,
                "U+007F",
            ),
            (
                r#"ssh_authorized_keys = ["ssh-rsa AAAA x\u0085"]"#,
                "U+0085",
            ),
            (r#"ssh_authorized_keys = ["ssh-rsa\tAAAA x"]"#, "U+0009"),
            (r#"ssh_authorized_keys = ["ssh-rsa AAAA x\r"]"#, "U+000D"),
            (
                "[vlan_attachment]\nkind = \"network\"\nname = \"v\\u001b[2J\"",
                "vlan_attachment.name",
            ),
            (
                "[public_attachment]\nkind = \"bridge\"\nname = \"br\\u0000\"",
                "public_attachment.name",
            ),
            (r#"pool = "mk\u009bp""#, "pool = "),
            (r#"base_image = "/var/lib/b\u0001.qcow2""#, "base_image"),
            (r#"log_dir = "/var/log/\u0090""#, "log_dir"),
            (r#"state_dir = "/var/lib/s\u001f""#, "state_dir"),
        ] {
            let msg = format!("{:#}", parse(text).unwrap_err());
            assert!(msg.contains(needle), "{text}: {msg}");
            assert!(msg.contains("control character"), "{text}: {msg}");
        }
    }

    #[test]
    fn config_root_must_be_a_plain_path_for_apparmor() {
        for (text, needle) in [
            (r#"config_root = "/srv/a b""#, "` `"),
            (r#"config_root = "/srv/a,b""#, "`,`"),
            (r#"config_root = "/srv/a#b""#, "`#`"),
            (r#"config_root = "/srv/*""#, "`*`"),
            (r#"config_root = "/srv/{a}""#, "`{`"),
            (r#"config_root = "/srv/\"q\"""#, "`\"`"),
            (r#"config_root = "/""#, "`/` itself"),
            (r#"config_root = "/srv/../etc""#, "`..`"),
        ] {
            let msg = format!("{:#}", parse(text).unwrap_err());
            assert!(
                msg.contains("config_root") && msg.contains(needle) && msg.contains("AppArmor"),
                "{text}: {msg}"
            );
        }
    }

    #[test]
    fn plain_values_pass() {
        let c = parse(
            r#"
            config_root = "/srv/headnode-config_2"
            ssh_authorized_keys = ["ssh-ed25519 AAAAC3Nza op@desk é"]
            "#,
        )
        .unwrap();
        assert_eq!(c.ssh_authorized_keys.len(), 1);
    }

    #[test]
    fn missing_explicit_file_is_not_found() {
        let err = Config::load(Some(Path::new("/nonexistent/mkheadnode.toml"))).unwrap_err();
        assert_eq!(kind_of(&err), Kind::NotFound);
    }

    #[test]
    fn a_missing_default_file_is_the_defaults_and_a_present_one_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let default = dir.path().join("config.toml");
        assert_eq!(Config::load_or(None, &default).unwrap(), Config::default());
        std::fs::write(&default, "vcpus = 4\n").unwrap();
        assert_eq!(Config::load_or(None, &default).unwrap().vcpus, 4);
        // An explicit file wins over the default one, and must exist.
        let explicit = dir.path().join("other.toml");
        let err = Config::load_or(Some(&explicit), &default).unwrap_err();
        assert_eq!(kind_of(&err), Kind::NotFound);
        assert!(
            format!("{err:#}").contains("other.toml does not exist"),
            "{err:#}"
        );
    }

    #[test]
    fn an_unreadable_file_is_a_read_error_not_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        for path in [Some(dir.path()), None] {
            let err = Config::load_or(path, dir.path()).unwrap_err();
            assert_eq!(kind_of(&err), Kind::Other, "{err:#}");
            assert!(
                format!("{err:#}").contains("reading config file"),
                "{err:#}"
            );
        }
    }

    #[test]
    fn values_at_their_limits_pass_and_one_beyond_fails() {
        for (text, refused) in [
            ("memory_mib = 256", None),
            ("memory_mib = 255", Some("memory_mib = 255 is too small")),
            ("vcpus = 1", None),
            ("vcpus = 64", None),
            ("vcpus = 65", Some("vcpus = 65 is out of range")),
            ("disk_gib = 1", None),
            ("disk_gib = 65536", None),
            ("disk_gib = 65537", Some("disk_gib = 65537 is too large")),
            ("[addressing]\nprivate_prefix = 8", None),
            ("[addressing]\nmanagement_prefix = 30", None),
            ("[addressing]\nmanagement_prefix = 7", Some("management_prefix = 7 is out")),
            (
                "[addressing]\ndhcp_range_start = \"192.168.10.9\"\ndhcp_range_end = \"192.168.10.9\"",
                None,
            ),
            (
                "[addressing]\ndhcp_range_end = \"192.168.10.253\"",
                None,
            ),
            (
                "[addressing]\ndhcp_range_start = \"192.168.10.254\"\ndhcp_range_end = \"192.168.10.254\"",
                Some("inside the DHCP range"),
            ),
            ("ssh_authorized_keys = [\"ssh-ed25519 AAAA\"]", None),
            ("ssh_authorized_keys = [\"AAAA\"]", Some("ssh_authorized_keys[0] = `AAAA`")),
        ] {
            match (parse(text), refused) {
                (Ok(_), None) => {}
                (Err(e), Some(why)) => assert!(format!("{e:#}").contains(why), "{text}: {e:#}"),
                (got, _) => panic!("{text}: {got:?}"),
            }
        }
    }

    #[test]
    fn names_are_refused_when_empty_or_with_white_space_alone() {
        for (text, needle) in [
            ("pool = \"\"", "pool = `` is not a usable"),
            ("pool = \"a b\"", "pool = `a b` is not a usable"),
            (
                "[public_attachment]\nkind = \"network\"\nname = \"\"",
                "public_attachment.name = ``",
            ),
            (
                "[vlan_attachment]\nkind = \"network\"\nname = \"vlan {vlan}\"",
                "vlan_attachment.name = `vlan {vlan}`",
            ),
        ] {
            let msg = format!("{:#}", parse(text).unwrap_err());
            assert!(msg.contains(needle), "{text}: {msg}");
        }
    }
}
