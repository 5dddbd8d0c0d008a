/*!
What a selftest checks once its headnode runs: inside it, through the guest agent (its share,
services and files; its records of the nodes), on its public side from the host, and on the
nodes' consoles, milestone by milestone.
*/

use crate::error::{failure, Kind};
use crate::host::agent::GuestAgent;
use crate::host::interrupt;
use crate::model::nodes::Report;
use crate::model::selftest::{
    console_evidence, console_text, milestones, Firmware, StepResult, TestNode, Verdict, DURING,
    INSTALLER_RUNNING, PROFILE,
};
use crate::ops::guest;
use crate::ops::nodes::NodesQuery;
use crate::ops::selftest::Run;
use crate::render::seed::SYSCTL_PATH;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long one command in the headnode may take.
const GUEST_LIMIT: Duration = Duration::from_secs(60);

/// The headnode's share, services and files, for a headnode whose private address is
/// `private` and whose machines.txt lists `mac`: (what, command, what its output must contain).
fn headnode_checks(private: Ipv4Addr, mac: &str) -> Vec<(&'static str, String, String)> {
    let nginx = format!("{private}:80");
    [
        ("share mounted read-only", "findmnt -n -o FSTYPE,OPTIONS /etc/moc".into(), "9p ro,".into()),
        ("machines.txt readable", "cat /etc/moc/machines.txt".into(), mac.to_string()),
        ("dhcpd's packet socket on eth0", "ss -0p | grep dhcpd".into(), "*:eth0".into()),
        (
            "dhcpd not on eth1",
            "ss -0p | grep dhcpd | grep -q eth1 && echo on-eth1 || echo not-on-eth1".into(),
            "not-on-eth1".into(),
        ),
        (
            "services up",
            "systemctl is-active isc-dhcp-server tftpd-hpa nginx fcgiwrap.socket | sort -u".into(),
            "active".into(),
        ),
        (
            "nginx on the private address only",
            format!("ss -ltnp | grep nginx | grep -v -q '{nginx}' && echo elsewhere || echo only-{nginx}"),
            format!("only-{nginx}"),
        ),
        (
            "kernel settings in force",
            format!(
                "grep -q = {SYSCTL_PATH} && grep -v '^#' {SYSCTL_PATH} | grep = | \
                 while IFS=' =' read -r key value; do [ \"$(sysctl -n \"$key\")\" = \"$value\" ] || exit 1; \
                 done && echo in-force"
            ),
            "in-force".into(),
        ),
        (
            "boot-default calls yield to downloads",
            "[ \"$(systemctl show --value -p Nice fcgiwrap.service)\" -gt \
             \"$(systemctl show --value -p Nice nginx.service)\" ] && echo yields"
                .into(),
            "yields".into(),
        ),
        ("profile published", format!("ls /var/lib/tftpboot/{PROFILE}"), "vmlinuz".into()),
        (
            "default boots the disk",
            "cat /var/lib/tftpboot/pxelinux.cfg/default".into(),
            "LOCALBOOT 0".into(),
        ),
        (
            "UEFI chain published",
            format!("ls /var/lib/tftpboot/efi/profiles/{PROFILE}"),
            "grub.cfg grubx64.efi shimx64.efi".into(),
        ),
        (
            "GRUB's config at its signed prefix",
            "grep configfile /var/lib/tftpboot/grub/grub.cfg".into(),
            "/uefi/".into(),
        ),
        (
            "shim is Microsoft-signed",
            "grep -q 'Microsoft Corporation UEFI CA' /var/lib/tftpboot/efi/shimx64.efi && echo signed"
                .into(),
            "signed".into(),
        ),
    ]
    .into()
}

/// Run `cmd` with the headnode's shell; its exit status and output (standard error after
/// standard output).
pub(super) fn shell(agent: &GuestAgent, cmd: &str) -> anyhow::Result<(i64, String)> {
    let status = guest::run(agent, "/bin/sh", &["-c".into(), cmd.into()], GUEST_LIMIT)?;
    let mut text = guest::output_text(&status.stdout);
    text.push('\n');
    text.push_str(&guest::output_text(&status.stderr));
    Ok((status.exit_code.unwrap_or(-1), text))
}

/// The last `n` lines of the file at `path`, for an error.
pub(super) fn tail(path: &Path, n: usize) -> String {
    let text = console_text(&String::from_utf8_lossy(
        &std::fs::read(path).unwrap_or_default(),
    ));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// An error for step problem `what`, with the end of the console log that shows why.
pub(super) fn with_log(what: String, log: &Path) -> anyhow::Error {
    failure(
        Kind::Other,
        format!(
            "{what}\n--- last lines of {} ---\n{}",
            log.display(),
            tail(log, 25)
        ),
    )
}

impl Run<'_> {
    /// The headnode's guest agent (it answers).
    pub(super) fn agent(&self) -> anyhow::Result<GuestAgent> {
        self.session.agent(self.opts.vlan)
    }

    /// The headnode's serial log.
    pub(super) fn headnode_log(&self) -> std::path::PathBuf {
        self.session.plan(self.opts.vlan).serial_log
    }

    /// Every [`headnode_checks`] entry, inside the headnode.
    pub(super) fn headnode_checks(&mut self) -> anyhow::Result<Option<String>> {
        let agent = self.agent()?;
        let private = self.session.config.addressing.private_address;
        let mac = self
            .lab
            .nodes
            .last()
            .map(|n| n.mac.clone())
            .unwrap_or_default();
        for (what, cmd, want) in headnode_checks(private, &mac) {
            let (code, out) = shell(&agent, &cmd)?;
            let squashed = out.split_whitespace().collect::<Vec<_>>().join(" ");
            if code != 0 || !squashed.contains(&want) {
                return Err(with_log(
                    format!("{what}: `{cmd}` gave exit {code}, not `{want}`:\n{out}"),
                    &self.headnode_log(),
                ));
            }
        }
        Ok(None)
    }

    /// The public side, from the host: ssh answers within a minute (the set-up reloads sshd
    /// once more), and anything else is dropped (a timeout, not a refusal).
    pub(super) fn public_side(&mut self) -> anyhow::Result<Option<String>> {
        let agent = self.agent()?;
        let (_, out) = shell(&agent, "ip -4 -o addr show dev eth1")?;
        let Some(ip) = out
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .map(str::to_string)
        else {
            return Err(with_log(
                format!("eth1 has no address from the public network's DHCP: {out}"),
                &self.headnode_log(),
            ));
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut ssh = tcp(&ip, 22);
        while ssh.is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(1));
            ssh = tcp(&ip, 22);
        }
        if let Err(e) = ssh {
            return Err(with_log(
                format!("ssh on {ip}:22: {e}"),
                &self.headnode_log(),
            ));
        }
        for port in [80, 8080] {
            match tcp(&ip, port) {
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                    ) => {}
                other => {
                    return Err(failure(
                        Kind::Other,
                        format!("the public side answered on {ip}:{port} ({other:?}): its firewall is not in force"),
                    ))
                }
            }
        }
        Ok(None)
    }

    /// The headnode's report on its machines.
    pub(super) fn report(&self) -> anyhow::Result<Report> {
        self.session.nodes(self.opts.vlan, &NodesQuery::default())
    }

    /// `nodes` for one node, as JSON.
    pub(super) fn row_of(
        &self,
        report: &Report,
        node: &TestNode,
    ) -> anyhow::Result<serde_json::Value> {
        let row = report
            .nodes
            .iter()
            .find(|n| n.mac == node.mac)
            .ok_or_else(|| {
                failure(
                    Kind::Other,
                    format!("the headnode does not list {} ({})", node.label(), node.mac),
                )
            })?;
        Ok(serde_json::to_value(row)?)
    }

    /// Follow every node's console until each has shown all its milestones in order, a row
    /// each (the time since power-on); `nodes` is asked about a node caught mid-install.
    pub(super) fn follow_nodes(&mut self) -> anyhow::Result<Option<String>> {
        let since = self.powered.unwrap_or_else(Instant::now);
        let nodes = self.lab.nodes.clone();
        let plans: Vec<Vec<(&str, String)>> = nodes.iter().map(milestones).collect();
        let mut reached = vec![0usize; nodes.len()];
        let mut offset = vec![0usize; nodes.len()];
        let mut caught = 0;
        loop {
            let mut pending = None;
            for (i, node) in nodes.iter().enumerate() {
                let raw = std::fs::read(self.lab.node_log(node)).unwrap_or_default();
                let text = console_text(&String::from_utf8_lossy(&raw));
                while let Some((name, needle)) = plans[i].get(reached[i]) {
                    let Some(at) = text.get(offset[i]..).and_then(|t| t.find(needle.as_str()))
                    else {
                        pending.get_or_insert((node, *name, needle.clone()));
                        break;
                    };
                    offset[i] += at + needle.len();
                    reached[i] += 1;
                    self.milestone(node, name, since, Verdict::Pass, String::new());
                    let next = plans[i].get(reached[i]).map(|(_, n)| n.as_str());
                    let rest = text.get(offset[i]..).unwrap_or_default();
                    if DURING.contains(name) && next.is_some_and(|n| !rest.contains(n)) {
                        self.installing(node)?;
                        caught += 1;
                    }
                }
            }
            let Some((node, name, needle)) = pending else {
                return match caught {
                    0 => Err(failure(
                        Kind::Other,
                        "no node was caught installing by `nodes`",
                    )),
                    _ => Ok(None),
                };
            };
            if let Some(signal) = interrupt::requested() {
                return Err(failure(Kind::Other, format!("interrupted by {signal}")));
            }
            if since.elapsed() > self.opts.install_timeout {
                let why = format!(
                    "`{needle}` did not appear within {} s",
                    self.opts.install_timeout.as_secs()
                );
                let err = with_log(why, &self.lab.node_log(node));
                self.milestone(node, name, since, Verdict::Fail, format!("{err:#}"));
                return Err(failure(
                    Kind::Other,
                    format!("{}: {name}: see above", node.label()),
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// A milestone's row.
    fn milestone(
        &mut self,
        node: &TestNode,
        name: &str,
        since: Instant,
        verdict: Verdict,
        detail: String,
    ) {
        self.rows.push(StepResult {
            name: format!("{}: power-on -> {name}", node.label()),
            verdict,
            seconds: since.elapsed().as_secs_f64(),
            detail,
        });
    }

    /// `nodes` while `node` installs: its loader fetched since it was armed, a lease, and no
    /// callback yet.
    fn installing(&self, node: &TestNode) -> anyhow::Result<()> {
        let row = self.row_of(&self.report()?, node)?;
        let loader = node.firmware.loader();
        let last = row["last_loader"]["loader"].as_str().unwrap_or_default();
        if row["state"] != "installing" || !last.starts_with(loader) || row["lease"].is_null() {
            return Err(with_log(
                format!(
                    "{}: `nodes` while it installs: want state installing, a {loader} loader and \
                     a lease: {row}",
                    node.label()
                ),
                &self.lab.node_log(node),
            ));
        }
        Ok(())
    }

    /// After the install, from the headnode's `nodes`: each node installed, disarmed by its own
    /// callback, with an active lease, its last loader its firmware's.
    pub(super) fn nodes_installed(&mut self) -> anyhow::Result<Option<String>> {
        let report = self.report()?;
        for node in &self.lab.nodes {
            let row = self.row_of(&report, node)?;
            let want = [
                (&row["state"], serde_json::json!("installed")),
                (&row["boot"]["bios"], serde_json::Value::Null),
                (&row["boot"]["uefi"], serde_json::Value::Null),
                (&row["boot_default"]["status"], serde_json::json!(200)),
                (&row["lease"]["state"], serde_json::json!("active")),
            ];
            let last = row["last_loader"]["loader"].as_str().unwrap_or_default();
            if want.iter().any(|(got, want)| *got != want)
                || !last.starts_with(node.firmware.loader())
            {
                return Err(failure(
                    Kind::Other,
                    format!(
                        "{}: the headnode's record after the install is not right: {row}",
                        node.label()
                    ),
                ));
            }
        }
        Ok(None)
    }

    /// From the nodes' consoles: one install each; Secure Boot as each firmware had it, and a
    /// kernel with a broken signature refused only where it is on.
    pub(super) fn consoles(&mut self) -> anyhow::Result<Option<String>> {
        for node in &self.lab.nodes {
            let log = self.lab.node_log(node);
            let text = console_text(&String::from_utf8_lossy(&std::fs::read(&log)?));
            let runs = text.matches(INSTALLER_RUNNING).count();
            if runs != 1 {
                return Err(with_log(
                    format!("{}: the installer ran {runs} times, not once", node.label()),
                    &log,
                ));
            }
            for want in console_evidence(node) {
                if !text.contains(&want) {
                    let fix = if node.firmware == Firmware::SecureBoot {
                        ": is OVMF's Secure Boot build with Microsoft's keys (ovmf) intact?"
                    } else {
                        ""
                    };
                    return Err(with_log(
                        format!("{}: no `{want}` on its console{fix}", node.label()),
                        &log,
                    ));
                }
            }
        }
        Ok(None)
    }

    /// From the headnode's own records: GRUB fetched the kernels from nginx, each node called
    /// back and held a lease, and is disarmed for both loaders.
    pub(super) fn headnode_records(&mut self) -> anyhow::Result<Option<String>> {
        let agent = self.agent()?;
        let (_, access) = shell(&agent, "cat /var/log/nginx/access.log")?;
        let (_, leases) = shell(&agent, "cat /var/lib/dhcp/dhcpd.leases")?;
        let mut missing = Vec::new();
        for file in ["vmlinuz-bad", "vmlinuz", "initrd.gz"] {
            missing.push(format!("GET /{PROFILE}/{file} HTTP/1.1\" 200 "));
        }
        for node in &self.lab.nodes {
            missing.push(format!(
                "GET /boot-default/?mac={} HTTP/1.1\" 200 ",
                node.mac
            ));
        }
        missing.retain(|want| !access.contains(want));
        for node in &self.lab.nodes {
            if !leases.contains(&format!("hardware ethernet {}", node.mac)) {
                missing.push(format!("a lease of {}", node.mac));
            }
            for dir in ["pxelinux.cfg", "uefi"] {
                let link = format!("/var/lib/tftpboot/{dir}/01-{}", node.dashed());
                let (code, _) = shell(&agent, &format!("test -e {link} || test -L {link}"))?;
                if code == 0 {
                    missing.push(format!("{link} removed"));
                }
            }
        }
        if missing.is_empty() {
            return Ok(None);
        }
        Err(failure(
            Kind::Other,
            format!("the headnode's records lack: {}", missing.join("; ")),
        ))
    }
}

/// Connect to `addr`:`port` within 4 s.
fn tcp(addr: &str, port: u16) -> std::io::Result<TcpStream> {
    let sa: SocketAddr = format!("{addr}:{port}")
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    TcpStream::connect_timeout(&sa, Duration::from_secs(4))
}
