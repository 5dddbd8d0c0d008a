/*!
The cloud-init NoCloud seed: `user-data`, `meta-data` and `network-config` rendered from
`cloud-init/`, packed into an ISO9660 image (Rock Ridge + Joliet) labelled `cidata`.

The image is written by `hadris-iso` (pure Rust, pinned): no genisoimage or xorriso is needed on
the hypervisor: the bytes are written into a libvirt volume.
*/

use crate::model::addresses::Ipv4Net;
use crate::model::plan::Plan;
use crate::render::template::{render_text, Vars};
use anyhow::Context as _;
use hadris_iso::read::PathSeparator;
use hadris_iso::write::options::{CreationFeatures, IsoFormatOptions};
use hadris_iso::write::{File as IsoFile, InputFiles, IsoImageWriter};
use std::io::Cursor;
use std::sync::Arc;

const USER_DATA: &str = include_str!("../../cloud-init/user-data.yaml");
const DHCPD_CONF: &str = include_str!("../../cloud-init/files/dhcpd.conf");
const ISC_DHCP_SERVER: &str = include_str!("../../cloud-init/files/isc-dhcp-server");
const DHCPD_UNIT: &str = include_str!("../../cloud-init/files/dhcpd-unit.conf");
const TFTPD_HPA: &str = include_str!("../../cloud-init/files/tftpd-hpa");
const PXELINUX_DEFAULT: &str = include_str!("../../cloud-init/files/pxelinux-default");
const GRUB_CFG: &str = include_str!("../../cloud-init/files/grub.cfg");
const NGINX_SITE: &str = include_str!("../../cloud-init/files/nginx-site.conf");
const FCGIWRAP_UNIT: &str = include_str!("../../cloud-init/files/fcgiwrap-unit.conf");
const TFTPD_UNIT: &str = include_str!("../../cloud-init/files/tftpd-unit.conf");
const NGINX_UNIT: &str = include_str!("../../cloud-init/files/nginx-unit.conf");
const BOOT_DEFAULT_CGI: &str = include_str!("../../cloud-init/files/boot-default.cgi");
const DISARM_TOOL: &str = include_str!("../../cloud-init/files/mkheadnode-disarm.py");
const SUDOERS_DISARM: &str = include_str!("../../cloud-init/files/sudoers-disarm");
const LINK_TOOL: &str = include_str!("../../cloud-init/files/mkheadnode-link.py");
const NODES_TOOL: &str = include_str!("../../cloud-init/files/mkheadnode-nodes.py");
const LEASES_MODULE_PY: &str = include_str!("../../cloud-init/files/leases.py");
const PUBLISH_PROFILES: &str = include_str!("../../cloud-init/files/publish-profiles.sh");
const SETUP_SCRIPT: &str = include_str!("../../cloud-init/files/headnode-setup.sh");
const RULES_V4: &str = include_str!("../../cloud-init/files/rules.v4");
const RULES_V6: &str = include_str!("../../cloud-init/files/rules.v6");
const MODULES_9P: &str = include_str!("../../cloud-init/files/modules-9p.conf");
const MOC_MOUNT: &str = include_str!("../../cloud-init/files/etc-moc.mount");
const MOC_FAILED: &str = include_str!("../../cloud-init/files/mkheadnode-moc-failed.service");
const PROFILES_SERVICE: &str = include_str!("../../cloud-init/files/mkheadnode-profiles.service");
const MEMORY_PER_BOOT: &str = include_str!("../../cloud-init/files/memory-per-boot.sh");
const SYSCTL_CONF: &str = include_str!("../../cloud-init/files/sysctl.conf");

/// Where the guest keeps what it serves over TFTP and HTTP.
pub const TFTP_ROOT: &str = "/var/lib/tftpboot";
/// The boot file BIOS clients get: pxelinux, which reads [`PXELINUX_CFG`]`/01-<mac>`.
pub const BIOS_LOADER: &str = "pxelinux.0";
/// pxelinux's per-node configs under [`TFTP_ROOT`]: an armed node's `01-<mac>` link.
pub const PXELINUX_CFG: &str = "pxelinux.cfg";
/// The UEFI boot file, the Microsoft-signed shim, which loads `grubx64.efi` beside it.
pub const UEFI_LOADER: &str = "shimx64.efi";
/// Under [`TFTP_ROOT`], shim, the signed network GRUB and, in `profiles/<name>/`, each
/// profile's UEFI chain (links to both and to the profile's `grub.cfg`).
pub const EFI_DIR: &str = "efi";
/// Under [`TFTP_ROOT`], an armed UEFI node's `01-<mac>` link to its profile's chain; dhcpd
/// names `01-<mac>/`[`UEFI_LOADER`] in it, so an unarmed node finds no boot file.
pub const UEFI_DIR: &str = "uefi";
/// Names under [`TFTP_ROOT`] that are boot files or directories: no profile may take one.
pub const RESERVED_NAMES: &[&str] = &[
    BIOS_LOADER,
    "lpxelinux.0",
    "ldlinux.c32",
    "menu.c32",
    "chain.c32",
    "mboot.c32",
    "libutil.c32",
    "libcom32.c32",
    "memdisk",
    PXELINUX_CFG,
    EFI_DIR,
    UEFI_DIR,
    "grub",
    UEFI_LOADER,
    "grubx64.efi",
    "boot-default",
];
/// Where the guest installs the boot-default CGI.
pub const CGI_PATH: &str = "/usr/local/lib/mkheadnode/boot-default";
/// The dhcpd.leases parser the CGI and the nodes tool share (a Python module, loaded by its
/// path), beside the CGI.
pub const LEASES_MODULE: &str = "/usr/local/lib/mkheadnode/leases.py";
/// The one program the web server's user may run as root (through sudo): it removes one MAC's
/// install links.
pub const DISARM_HELPER: &str = "/usr/local/sbin/mkheadnode-disarm";
/// Where the guest installs the link tool (`mkheadnode install` runs it).
pub const LINK_TOOL_PATH: &str = "/usr/local/sbin/mkheadnode-link";
/// Where the guest installs the nodes tool (`mkheadnode nodes` runs it).
pub const NODES_TOOL_PATH: &str = "/usr/local/sbin/mkheadnode-nodes";
/// The guest's unit that publishes the share's profiles into the TFTP root.
pub const PROFILES_UNIT: &str = "mkheadnode-profiles.service";

/// The values of the nginx site, separate so tests can run it on loopback in a temp root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxSite {
    /// `listen` argument, e.g. `192.168.10.254:80`.
    pub listen: String,
    /// Document root (and TFTP root).
    pub tftp_root: String,
    /// fcgiwrap's socket.
    pub fcgi_socket: String,
    /// Path of the boot-default CGI.
    pub cgi_path: String,
    /// dhcpd's lease file.
    pub leases_file: String,
    /// Whether the CGI checks the caller against the leases.
    pub require_lease: bool,
}

impl NginxSite {
    /// The site as the headnode runs it.
    pub fn for_plan(plan: &Plan) -> NginxSite {
        NginxSite {
            listen: format!("{}:80", plan.addressing.private_address),
            tftp_root: TFTP_ROOT.into(),
            fcgi_socket: "/run/fcgiwrap.socket".into(),
            cgi_path: CGI_PATH.into(),
            leases_file: "/var/lib/dhcp/dhcpd.leases".into(),
            require_lease: plan.boot_default_requires_lease,
        }
    }

    /// Render the server block.
    pub fn render(&self) -> anyhow::Result<String> {
        let ctx = Vars::new()
            .value("listen", &self.listen)
            .value("tftp_root", &self.tftp_root)
            .value("fcgi_socket", &self.fcgi_socket)
            .value("cgi_path", &self.cgi_path)
            .value("leases_file", &self.leases_file)
            .value("require_lease", if self.require_lease { "1" } else { "0" });
        render_text(NGINX_SITE, "files/nginx-site.conf", &ctx)
    }
}

/// The guest's file layout, offered to every guest file template (one source for the paths
/// that the set-up script, dhcpd, GRUB, the link tool and the CGI must agree on).
pub fn layout() -> Vars {
    let reserved: Vec<&str> = RESERVED_NAMES.to_vec();
    Vars::new()
        .optional("tftp_root", TFTP_ROOT)
        .optional("bios_loader", BIOS_LOADER)
        .optional("pxelinux_cfg", PXELINUX_CFG)
        .optional("uefi_loader", UEFI_LOADER)
        .optional("efi_dir", EFI_DIR)
        .optional("uefi_dir", UEFI_DIR)
        .optional("cgi_path", CGI_PATH)
        .optional("leases_module", LEASES_MODULE)
        .optional("disarm_helper", DISARM_HELPER)
        .optional("early_marker", EARLY_MARKER)
        .optional("serving_gate", SERVING_GATE)
        .optional("units_current", UNITS_CURRENT)
        .optional("sysctl_path", SYSCTL_PATH)
        .optional("reserved_names", reserved.join(" | "))
        .optional("reserved_names_py", json(&reserved))
}

/// A guest file rendered with [`layout`] and nothing else.
fn with_layout(template: &str, origin: &str) -> anyhow::Result<String> {
    render_text(template, origin, &layout())
}

/// The boot-default CGI program (Python 3), as installed in the guest.
pub fn boot_default_cgi() -> anyhow::Result<String> {
    with_layout(BOOT_DEFAULT_CGI, "files/boot-default.cgi")
}

/// The dhcpd.leases parser (Python 3), as installed in the guest at [`LEASES_MODULE`].
pub fn leases_module() -> anyhow::Result<String> {
    with_layout(LEASES_MODULE_PY, "files/leases.py")
}

/// mkheadnode-disarm (Python 3), as installed in the guest at [`DISARM_HELPER`].
pub fn disarm_tool() -> anyhow::Result<String> {
    with_layout(DISARM_TOOL, "files/mkheadnode-disarm.py")
}

/// The sudoers rule that lets the web server's user run [`DISARM_HELPER`] with one MAC.
pub fn sudoers_disarm() -> anyhow::Result<String> {
    with_layout(SUDOERS_DISARM, "files/sudoers-disarm")
}

/// The link tool (Python 3), as installed in the guest.
pub fn link_tool() -> anyhow::Result<String> {
    with_layout(LINK_TOOL, "files/mkheadnode-link.py")
}

/// The nodes tool (Python 3), as installed in the guest.
pub fn nodes_tool() -> anyhow::Result<String> {
    with_layout(NODES_TOOL, "files/mkheadnode-nodes.py")
}

/// The dhcpd expression for the client's MAC as `aa-bb-cc-dd-ee-ff`: `binary-to-ascii` drops
/// leading zeros, so each byte is padded to two digits.
fn dhcpd_mac_dashed() -> String {
    (1..=6)
        .map(|i| {
            format!(
                "suffix(concat(\"0\", binary-to-ascii(16, 8, \"\", substring(hardware, {i}, 1))), 2)"
            )
        })
        .collect::<Vec<_>>()
        .join(", \"-\", ")
}

/// The guest's `dhcpd.conf`.
pub fn dhcpd_conf(plan: &Plan) -> anyhow::Result<String> {
    let a = &plan.addressing;
    let private = Ipv4Net::of(a.private_address, a.private_prefix);
    let mgmt = Ipv4Net::of(a.management_address, a.management_prefix);
    let ctx = layout()
        .value("vlan", plan.vlan)
        .value("private_network", private.network)
        .value("private_netmask", private.netmask)
        .value("private_broadcast", private.broadcast)
        .value("private_address", a.private_address)
        .value("dhcp_range_start", a.dhcp_range_start)
        .value("dhcp_range_end", a.dhcp_range_end)
        .value("management_network", mgmt.network)
        .value("management_netmask", mgmt.netmask)
        .value("mac_dashed", dhcpd_mac_dashed());
    render_text(DHCPD_CONF, "files/dhcpd.conf", &ctx)
}

/// The guest-side files user-data carries, by placeholder name.
pub fn guest_files(plan: &Plan) -> anyhow::Result<Vec<(&'static str, String)>> {
    let addr = layout().value("private_address", plan.addressing.private_address);
    Ok(vec![
        ("dhcpd_conf", dhcpd_conf(plan)?),
        ("isc_dhcp_server", ISC_DHCP_SERVER.to_string()),
        ("dhcpd_unit", DHCPD_UNIT.to_string()),
        (
            "tftpd_hpa",
            render_text(TFTPD_HPA, "files/tftpd-hpa", &addr)?,
        ),
        ("tftpd_unit", TFTPD_UNIT.to_string()),
        ("pxelinux_default", PXELINUX_DEFAULT.to_string()),
        ("grub_cfg", render_text(GRUB_CFG, "files/grub.cfg", &addr)?),
        ("nginx_site", NginxSite::for_plan(plan).render()?),
        ("nginx_unit", NGINX_UNIT.to_string()),
        ("fcgiwrap_unit", FCGIWRAP_UNIT.to_string()),
        ("boot_default_cgi", boot_default_cgi()?),
        ("leases_module", leases_module()?),
        ("disarm_tool", disarm_tool()?),
        ("sudoers_disarm", sudoers_disarm()?),
        ("link_tool", link_tool()?),
        ("nodes_tool", nodes_tool()?),
        (
            "publish_profiles",
            render_text(PUBLISH_PROFILES, "files/publish-profiles.sh", &addr)?,
        ),
        (
            "setup_script",
            with_layout(SETUP_SCRIPT, "files/headnode-setup.sh")?,
        ),
        ("rules_v4", RULES_V4.to_string()),
        ("rules_v6", RULES_V6.to_string()),
        ("modules_9p", MODULES_9P.to_string()),
        ("moc_mount", MOC_MOUNT.to_string()),
        ("moc_failed_service", MOC_FAILED.to_string()),
        ("profiles_service", PROFILES_SERVICE.to_string()),
        ("memory_per_boot", MEMORY_PER_BOOT.to_string()),
        ("sysctl_conf", SYSCTL_CONF.to_string()),
    ])
}
const META_DATA: &str = include_str!("../../cloud-init/meta-data.yaml");
const NETWORK_CONFIG: &str = include_str!("../../cloud-init/network-config.yaml");

/// The volume label NoCloud looks for.
pub const VOLUME_LABEL: &str = "cidata";

/// The three seed files, as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedFiles {
    /// `user-data` (a `#cloud-config` document).
    pub user_data: String,
    /// `meta-data`.
    pub meta_data: String,
    /// `network-config` (version 1).
    pub network_config: String,
}

impl SeedFiles {
    /// The files as (name, contents) pairs, in a fixed order.
    pub fn entries(&self) -> [(&'static str, &str); 3] {
        [
            ("user-data", &self.user_data),
            ("meta-data", &self.meta_data),
            ("network-config", &self.network_config),
        ]
    }
}

/// The line the guest's set-up script prints when the PXE stack is up.
pub const SETUP_DONE: &str = "mkheadnode-setup: done";
/// The start of the line it prints when a step failed.
pub const SETUP_FAILED: &str = "mkheadnode-setup: FAILED";

/// The line the guest prints on its console when cloud-init has finished (its final stage waits
/// for the set-up, so this without [`SETUP_DONE`] means the set-up never finished).
pub fn ready_marker(plan: &Plan) -> String {
    format!("mkheadnode: {} ready", plan.hostname)
}

/// A value as a YAML scalar or flow sequence: JSON is a subset of YAML, so a JSON-encoded value
/// can never change the structure of the document it is put in.
fn yaml<T: serde::Serialize + ?Sized>(value: &T) -> String {
    json(value)
}

/// A value as JSON (also a Python literal for the strings and lists used here).
fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("plain values always serialize")
}

/// The last file the seed's write_files writes: the set-up's go.
pub const SETUP_GO_FILE: &str = "/run/mkheadnode/seed-files-written";

/// Where images built for mkheadnode (`scripts/image-early`, their early set-up) record that they
/// ran the set-up before cloud-init; cloud-init then does not start it again.
pub const EARLY_MARKER: &str = "/var/lib/mkheadnode/early-set-up-ran";

/// The gate that images built for mkheadnode (`scripts/build-image.sh`) put on the PXE services
/// instead of masking them: each may start only once this exists, which the set-up makes when
/// their configuration and the firewall are in place.
pub const SERVING_GATE: &str = "/var/lib/mkheadnode/serving";

/// Where the guest keeps its kernel settings (`cloud-init/files/sysctl.conf`): the set-up
/// applies them, and systemd-sysctl at every later boot.
pub const SYSCTL_PATH: &str = "/etc/sysctl.d/60-mkheadnode.conf";

/// What the set-up says after "mkheadnode-setup: " when systemd has read every unit file it
/// starts already (images built for mkheadnode), so that it needs no reload.
pub const UNITS_CURRENT: &str = "the PXE services' units are current: no systemd reload";

/// What the image's early set-up prints on the console when it takes the seed over.
pub const EARLY_SETUP_SIGN: &str = "mkheadnode-early: writing the seed's";

/// user-data's `ssh_authorized_keys` line, or a comment where there are no keys: cloud-init's
/// schema requires at least one.
fn ssh_keys_entry(keys: &[String]) -> String {
    if keys.is_empty() {
        "# (no ssh_authorized_keys configured)".to_string()
    } else {
        format!("ssh_authorized_keys: {}", yaml(keys))
    }
}

/// The set-up's trigger: a path unit that starts it once cloud-init has written its go.
fn setup_go() -> String {
    format!("--path-property=PathExists={SETUP_GO_FILE}")
}

/// Render the seed files of a planned headnode.
pub fn files(plan: &Plan) -> anyhow::Result<SeedFiles> {
    let a = &plan.addressing;
    let mut user = Vars::new()
        .value("setup_go", yaml(&setup_go()))
        .value("setup_go_file", yaml(SETUP_GO_FILE))
        .value("hostname", yaml(&plan.hostname))
        .value("early_marker", yaml(EARLY_MARKER))
        .value("sysctl_path", yaml(SYSCTL_PATH))
        .value(
            "ssh_authorized_keys",
            ssh_keys_entry(&plan.ssh_authorized_keys),
        )
        .value(
            "final_message",
            yaml(&format!("{} after $UPTIME s", ready_marker(plan))),
        );
    for (name, text) in guest_files(plan)? {
        user = user.value(name, yaml(&text));
    }
    let meta = Vars::new()
        .value("instance_id", yaml(&plan.instance_id))
        .value("hostname", yaml(&plan.hostname));
    let net = Vars::new()
        .value("private_mac", yaml(&plan.private_nic.mac.to_string()))
        .value("public_mac", yaml(&plan.public_nic.mac.to_string()))
        .value(
            "private_cidr",
            yaml(&format!("{}/{}", a.private_address, a.private_prefix)),
        )
        .value(
            "management_cidr",
            yaml(&format!("{}/{}", a.management_address, a.management_prefix)),
        );
    Ok(SeedFiles {
        user_data: render_text(USER_DATA, "user-data.yaml", &user)?,
        meta_data: render_text(META_DATA, "meta-data.yaml", &meta)?,
        network_config: render_text(NETWORK_CONFIG, "network-config.yaml", &net)?,
    })
}

/// Pack the seed files into an ISO9660 image labelled `cidata`.
pub fn iso(files: &SeedFiles) -> anyhow::Result<Vec<u8>> {
    let input = InputFiles {
        path_separator: PathSeparator::ForwardSlash,
        files: files
            .entries()
            .iter()
            .map(|(name, text)| IsoFile::File {
                name: Arc::new(name.to_string()),
                contents: text.as_bytes().to_vec(),
            })
            .collect(),
    };
    let options = IsoFormatOptions {
        volume_name: VOLUME_LABEL.to_string(),
        system_id: None,
        volume_set_id: None,
        publisher_id: None,
        preparer_id: None,
        application_id: Some("MKHEADNODE".to_string()),
        sector_size: 2048,
        features: CreationFeatures::extensions(),
        path_separator: PathSeparator::ForwardSlash,
        strict_charset: false,
    };
    let mut out = Cursor::new(Vec::new());
    IsoImageWriter::create(&mut out, input, options)
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .context("writing the cloud-init seed image")?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Config;
    use crate::model::plan::VirtType;
    use crate::model::vlan::Vlan;

    fn plan_with_keys(keys: Vec<String>) -> Plan {
        let config = Config {
            ssh_authorized_keys: keys,
            ..Config::default()
        };
        Plan::new(&config, Vlan::new(42).unwrap(), VirtType::Qemu)
    }

    #[test]
    fn files_carry_the_plan() {
        let f = files(&plan_with_keys(vec!["ssh-ed25519 AAAAC3 op@desk".into()])).unwrap();
        assert!(f.user_data.starts_with("#cloud-config\n"));
        assert!(f.user_data.contains("hostname: \"headnode-42\""));
        assert!(f
            .user_data
            .contains("ssh_authorized_keys: [\"ssh-ed25519 AAAAC3 op@desk\"]"));
        assert!(f
            .user_data
            .contains("mkheadnode: headnode-42 ready after $UPTIME s"));
        assert!(f.meta_data.contains("instance-id: \"mkheadnode-vlan42\""));
        assert!(f
            .network_config
            .contains("mac_address: \"52:54:00:4d:00:2a\""));
        assert!(f
            .network_config
            .contains("mac_address: \"52:54:00:4d:10:2a\""));
        assert!(f
            .network_config
            .contains("address: \"192.168.10.254/24\"\n"));
        assert!(f.network_config.contains("address: \"10.0.0.254/24\"\n"));
    }

    #[test]
    fn the_set_up_goes_only_after_the_last_file_is_written() {
        let f = files(&plan_with_keys(vec![])).unwrap();
        let last = f.user_data.rsplit("\n  - path: ").next().unwrap();
        assert!(
            last.starts_with(&format!("\"{SETUP_GO_FILE}\"\n")),
            "the last file written is not the go: {last}"
        );
        let go = format!("--path-property=PathExists={SETUP_GO_FILE}");
        assert!(
            f.user_data.contains(&go),
            "the set-up does not wait for its go"
        );
    }

    #[test]
    fn the_image_early_set_up_and_the_seed_agree_on_their_paths() {
        // The image's early set-up and the seed meet at these paths: its marker keeps cloud-init
        // from starting the set-up again, and it takes over only a seed whose user-data writes
        // the set-up with its go last.
        let early = [
            include_str!("../../scripts/image-early/src/main.rs"),
            include_str!("../../scripts/image-early/src/seed.rs"),
        ]
        .concat();
        let user = files(&plan_with_keys(vec![])).unwrap().user_data;
        for (name, path) in [
            ("RAN_MARKER", EARLY_MARKER),
            ("GO_FILE", SETUP_GO_FILE),
            ("SETUP", "/usr/local/sbin/mkheadnode-setup"),
        ] {
            assert!(
                early.contains(&format!("const {name}: &str = \"{path}\";")),
                "the early set-up's {name} is not {path}"
            );
            assert!(user.contains(path), "user-data lacks {path}");
        }
        assert!(
            early.contains("println!(\"mkheadnode-early: {msg}\")")
                && early.contains(
                    &EARLY_SETUP_SIGN.replace("mkheadnode-early: ", "say(&format!(\n        \"")
                ),
            "the early set-up does not print {EARLY_SETUP_SIGN:?}"
        );
        let guard = format!("'test -e \"$0\" || exec \"$@\"', \"{EARLY_MARKER}\",");
        assert!(user.contains(&guard), "bootcmd starts the set-up unguarded");
    }

    /// user-data's write_files entry of a 0644 file at `path` (as user-data spells it) with
    /// `content`.
    fn write_files_entry(path: &str, content: &str) -> String {
        format!(
            "  - path: {path}\n    permissions: \"0644\"\n    content: {}\n",
            json(content)
        )
    }

    #[test]
    fn the_image_carries_the_seeds_unit_files_as_the_seed_writes_them() {
        // The image (scripts/build-image.sh) carries the seed's unit files that are the same on
        // every headnode, so that systemd has read them at boot and the set-up needs no reload.
        // Each must be at the path the seed writes it to, with the same mode and content: one
        // that differs has the early set-up rewrite it, and systemd reloaded after all.
        let recipe = include_str!("../../scripts/build-image.sh");
        let user = files(&plan_with_keys(vec![])).unwrap().user_data;
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/image-units/");
        let mut carried = 0;
        for line in recipe.lines() {
            let Some(entry) = line.trim().strip_prefix("\"$HERE/image-units/") else {
                continue;
            };
            let (name, path) = entry.trim_end_matches('"').split_once(':').unwrap();
            let content = std::fs::read_to_string(format!("{dir}{name}")).unwrap();
            let written = write_files_entry(path, &content);
            assert!(
                user.contains(&written),
                "the seed does not write {name} as {path}"
            );
            carried += 1;
        }
        assert!(carried >= 7, "found {carried} unit files in build-image.sh");
        // The gate the image puts on the services is the one the set-up opens.
        assert!(recipe.contains(&format!("\nSERVING_GATE={SERVING_GATE}\n")));
        let setup = with_layout(SETUP_SCRIPT, "files/headnode-setup.sh").unwrap();
        assert!(
            setup.contains(&format!("\ngate={SERVING_GATE}\n")),
            "{setup}"
        );
        assert!(setup.contains("\n: > \"$gate\"\n"), "{setup}");
    }

    #[test]
    fn the_set_up_applies_the_kernel_settings_the_seed_writes() {
        let plan = plan_with_keys(vec![]);
        let f = files(&plan).unwrap();
        let written = write_files_entry(&json(SYSCTL_PATH), SYSCTL_CONF);
        assert!(
            f.user_data.contains(&written),
            "{SYSCTL_PATH} is not written as is"
        );
        let guest: std::collections::BTreeMap<&str, String> =
            guest_files(&plan).unwrap().into_iter().collect();
        let setup = &guest["setup_script"];
        let apply = setup.find(&format!("\nsysctl -q -p {SYSCTL_PATH} &\ntuned=$!\n"));
        let waited = setup.find("\nwait \"$tuned\"\n");
        let serving = setup.find("\n: > \"$gate\"\n");
        assert!(
            apply.is_some() && waited.is_some() && serving.is_some(),
            "{setup}"
        );
        assert!(
            apply < waited && waited < serving,
            "applied and waited for before serving"
        );
        let settings: Vec<(&str, &str)> = SYSCTL_CONF
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| l.split_once(" = ").expect("key = value"))
            .collect();
        assert!(
            settings.contains(&("net.ipv4.tcp_min_tso_segs", "44")),
            "{settings:?}"
        );
    }

    #[test]
    fn the_boot_default_calls_yield_to_the_downloads() {
        let nice = |unit: &str| -> i32 {
            unit.lines()
                .find_map(|l| l.strip_prefix("Nice="))
                .map_or(0, |v| v.parse().unwrap())
        };
        assert!(nice(FCGIWRAP_UNIT) > nice(NGINX_UNIT), "{FCGIWRAP_UNIT}");
        assert!(nice(FCGIWRAP_UNIT) <= 19);
    }

    #[test]
    fn no_keys_leave_ssh_authorized_keys_out() {
        let none = files(&plan_with_keys(vec![])).unwrap().user_data;
        assert!(!none.contains("\nssh_authorized_keys:"), "{none}");
        let one = files(&plan_with_keys(vec!["ssh-ed25519 AAAA a@b".into()])).unwrap();
        assert!(one
            .user_data
            .contains("\nssh_authorized_keys: [\"ssh-ed25519 AAAA a@b\"]\n"));
    }

    #[test]
    fn hostile_values_cannot_add_yaml_keys() {
        let f = files(&plan_with_keys(vec![
            "ssh-rsa AAAA x\"]\npower_state: {mode: reboot}".into(),
        ]))
        .unwrap();
        assert!(!f.user_data.contains("\npower_state:"), "{}", f.user_data);
    }

    #[test]
    fn the_layout_reserves_every_boot_file_and_directory() {
        for name in [
            BIOS_LOADER,
            PXELINUX_CFG,
            UEFI_LOADER,
            EFI_DIR,
            UEFI_DIR,
            "grub",
            "grubx64.efi",
        ] {
            assert!(RESERVED_NAMES.contains(&name), "{name} is not reserved");
        }
        // Every guest file renders with it: no placeholder is left over.
        for (name, text) in guest_files(&plan_with_keys(vec![])).unwrap() {
            assert!(!text.contains("{{"), "{name} has an unfilled placeholder");
        }
    }

    #[test]
    fn each_guest_file_carries_the_layout_and_the_plans_addresses() {
        let plan = Plan::new(
            &Config {
                boot_default_requires_lease: false,
                ..Config::default()
            },
            Vlan::new(42).unwrap(),
            VirtType::Qemu,
        );
        let files: std::collections::BTreeMap<&str, String> =
            guest_files(&plan).unwrap().into_iter().collect();
        let reserved = json(RESERVED_NAMES);
        for (name, want) in [
            ("dhcpd_conf", "shared-network vlan42 {".to_string()),
            (
                "dhcpd_conf",
                "subnet 192.168.10.0 netmask 255.255.255.0 {".into(),
            ),
            ("dhcpd_conf", "range 192.168.10.1 192.168.10.127;".into()),
            (
                "dhcpd_conf",
                "subnet 10.0.0.0 netmask 255.255.255.0 {".into(),
            ),
            ("tftpd_hpa", format!("TFTP_DIRECTORY=\"{TFTP_ROOT}\"")),
            ("grub_cfg", "(http,192.168.10.254)".into()),
            ("nginx_site", "listen 192.168.10.254:80;".into()),
            ("nginx_site", format!("SCRIPT_FILENAME {CGI_PATH};")),
            ("nginx_site", "MKHEADNODE_REQUIRE_LEASE 0;".into()),
            ("boot_default_cgi", format!("DISARM = \"{DISARM_HELPER}\"")),
            ("disarm_tool", format!("CGI = \"{CGI_PATH}\"")),
            ("sudoers_disarm", format!("NOPASSWD: {DISARM_HELPER} ^")),
            ("link_tool", format!("RESERVED = {reserved}")),
            ("nodes_tool", format!("RESERVED = {reserved}")),
            ("leases_module", format!("Installed as {LEASES_MODULE},")),
            ("publish_profiles", "s/@HEADNODE@/192.168.10.254/g".into()),
            (
                "setup_script",
                format!("install -d -o root -g root -m 0755 {TFTP_ROOT} {TFTP_ROOT}/{EFI_DIR} "),
            ),
        ] {
            assert!(files[name].contains(&want), "{name} has no `{want}`");
        }
    }

    #[test]
    fn dhcpd_spells_the_mac_with_two_digits_a_byte() {
        let expr = dhcpd_mac_dashed();
        assert_eq!(
            expr.matches("suffix(concat(\"0\", binary-to-ascii(16, 8, \"\", substring(hardware, ")
                .count(),
            6
        );
        assert!(
            expr.contains("substring(hardware, 1, 1)")
                && expr.contains("substring(hardware, 6, 1)")
        );
        assert_eq!(expr.matches(", \"-\", ").count(), 5);
    }

    #[test]
    fn iso_is_an_iso9660_image_labelled_cidata() {
        let image = iso(&files(&plan_with_keys(vec![])).unwrap()).unwrap();
        assert_eq!(image.len() % 2048, 0);
        // Primary volume descriptor at sector 16: type 1, "CD001", volume id at offset 40.
        let pvd = &image[16 * 2048..17 * 2048];
        assert_eq!(&pvd[0..6], b"\x01CD001");
        assert_eq!(
            String::from_utf8_lossy(&pvd[40..72]).trim_end(),
            VOLUME_LABEL
        );
    }

    #[test]
    fn the_iso_holds_the_three_files_by_name() {
        let seed = files(&plan_with_keys(vec![])).unwrap();
        let names: Vec<&str> = seed.entries().iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ["user-data", "meta-data", "network-config"]);
        let image = iso(&seed).unwrap();
        let holds = |bytes: &[u8]| image.windows(bytes.len()).any(|w| w == bytes);
        for (name, text) in seed.entries() {
            assert!(holds(name.as_bytes()), "no name {name}");
            assert!(holds(text.as_bytes()), "no contents of {name}");
        }
    }
}
