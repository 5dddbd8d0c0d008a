//! The guest side, run for real on this machine: the rendered dhcpd.conf through `dhcpd -t`,
//! the nginx site through `nginx -t` and then live on loopback with fcgiwrap and the
//! boot-default CGI, and the link tool against a temp TFTP root.

use crate::guest_web_user::{as_web_user, Sandbox, WEB_USER};
use crate::support::{free_port, guest_file, run, run_with_input, tool, wait_until, Netns};
use mkheadnode::model::config::Config;
use mkheadnode::model::plan::{Plan, VirtType};
use mkheadnode::model::vlan::Vlan;
use mkheadnode::render::seed::{self, NginxSite};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn plan() -> Plan {
    Plan::new(&Config::default(), Vlan::new(42).unwrap(), VirtType::Qemu)
}

fn dhcpd_check(conf: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dhcpd.conf");
    std::fs::write(&path, conf).unwrap();
    let (code, out, err) = run(Command::new("dhcpd").args(["-t", "-q", "-cf"]).arg(&path));
    (code, format!("{out}{err}"))
}

#[test]
fn dhcpd_accepts_the_rendered_config_and_rejects_the_2013_one() {
    let conf = seed::dhcpd_conf(&plan()).unwrap();
    let (code, msg) = dhcpd_check(&conf);
    assert_eq!(code, 0, "{msg}\n{conf}");
    // The recipe's own subnet line is rejected, so the check above can fail.
    let (code, _) =
        dhcpd_check(&conf.replace("subnet 192.168.10.0 netmask", "subnet 192.168.10.1 netmask"));
    assert_ne!(code, 0);
}

#[test]
fn dhcpd_really_starts_on_an_eth0_with_both_subnets() {
    // `dhcpd -t` accepts two subnets on one interface outside a shared-network; dhcpd itself
    // then refuses to start. Only running it shows that.
    let ns = Netns::new("dhcpd");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dhcpd.conf"),
        seed::dhcpd_conf(&plan()).unwrap(),
    )
    .unwrap();
    let mut child = ns
        .dhcpd(dir.path())
        .arg("-d")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let still_running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(still_running, "dhcpd exited:\n{log}");
    assert!(log.contains("Listening on LPF/eth0"), "{log}");
}

/// Kills a daemon, found by its pid file, when dropped.
struct Daemon(PathBuf);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

/// The guest files by placeholder name.
fn guest_files() -> std::collections::BTreeMap<&'static str, String> {
    seed::guest_files(&plan()).unwrap().into_iter().collect()
}

/// A systemd drop-in's command: its ExecStart= that is not the one clearing the packaged one,
/// after checking that the drop-in has each of `wants`.
fn drop_in_command<'a>(unit: &'a str, wants: &[&str]) -> &'a str {
    for want in wants.iter().chain(&["\nExecStart=\n"]) {
        assert!(unit.contains(want), "the drop-in lacks {want:?}:\n{unit}");
    }
    unit.lines()
        .filter_map(|l| l.strip_prefix("ExecStart="))
        .find(|l| !l.is_empty())
        .expect("an ExecStart with a command")
}

#[test]
fn the_dhcpd_drop_in_forks_only_once_dhcpd_serves() {
    // The guest's isc-dhcp-server.service runs the drop-in's ExecStart as Type=forking: the
    // command must return 0 with the daemon running and named in the unit's PIDFile.
    let files = guest_files();
    let exec = drop_in_command(
        &files["dhcpd_unit"],
        &["Type=forking", "PIDFile=/run/dhcpd.pid"],
    );
    let interfaces = files["isc_dhcp_server"]
        .lines()
        .find_map(|l| l.strip_prefix("INTERFACESv4="))
        .expect("INTERFACESv4")
        .trim_matches('"');
    let ns = Netns::new("dhcpd-unit");
    let dir = tempfile::tempdir().unwrap();
    let (conf, pid, leases) = (
        dir.path().join("dhcpd.conf"),
        dir.path().join("dhcpd.pid"),
        dir.path().join("dhcpd.leases"),
    );
    std::fs::write(&conf, seed::dhcpd_conf(&plan()).unwrap()).unwrap();
    std::fs::write(&leases, "").unwrap();
    let command = exec
        .replace("$INTERFACESv4", interfaces)
        .replace("/etc/dhcp/dhcpd.conf", &conf.display().to_string())
        .replace("/run/dhcpd.pid", &pid.display().to_string());
    let _daemon = Daemon(pid.clone());
    let (code, out, err) = run(ns
        .exec(command.split_whitespace().next().unwrap())
        .args(command.split_whitespace().skip(1))
        .arg("-lf")
        .arg(&leases));
    assert_eq!(code, 0, "{command}: {out}{err}");
    let daemon = std::fs::read_to_string(&pid).expect("dhcpd wrote no pid file");
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", daemon.trim())).unwrap_or_default();
    assert_eq!(comm.trim(), "dhcpd", "pid file names {daemon:?}");
}

#[test]
fn the_tftpd_drop_in_forks_only_once_tftpd_listens() {
    // The guest's tftpd-hpa.service runs the drop-in's ExecStart as Type=forking, with the
    // values of /etc/default/tftpd-hpa: the command must return 0 with in.tftpd already
    // listening on the VLAN-side address, its one process left running (the unit's main one).
    let files = guest_files();
    let exec = drop_in_command(
        &files["tftpd_unit"],
        &["Type=forking", "GuessMainPID=yes", "--listen"],
    );
    let value = |key: &str| {
        files["tftpd_hpa"]
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}"))
            .trim_matches('"')
            .to_string()
    };
    let root = tempfile::tempdir().unwrap();
    let command = exec
        .replace("${TFTP_USERNAME}", &value("TFTP_USERNAME"))
        .replace("${TFTP_ADDRESS}", &value("TFTP_ADDRESS"))
        .replace("$TFTP_OPTIONS", &value("TFTP_OPTIONS"))
        .replace("${TFTP_DIRECTORY}", &root.path().display().to_string());
    assert!(!command.contains('$'), "unsubstituted: {command}");
    let ns = Netns::new("tftpd-unit");
    let words: Vec<&str> = command.split_whitespace().collect();
    let (code, out, err) = run(ns.exec(words[0]).args(&words[1..]));
    assert_eq!(code, 0, "{command}: {out}{err}");
    let (_, sockets, _) = run(ns.exec("ss").args(["-H", "-lunp"]));
    let pids: Vec<String> = run(Command::new("ip").args(["netns", "pids", &ns.0]))
        .1
        .split_whitespace()
        .map(str::to_string)
        .collect();
    for pid in &pids {
        let _ = Command::new("kill").arg(pid).status();
    }
    assert!(
        sockets.contains("192.168.10.254:69") && sockets.contains("in.tftpd"),
        "in.tftpd does not listen on the VLAN side when its start returns:\n{sockets}"
    );
    assert_eq!(pids.len(), 1, "not one process left: {pids:?}");
}

#[test]
fn the_set_up_reloads_systemd_unless_every_unit_is_current() {
    // The set-up skips unmasking, enabling and `daemon-reload` (seconds at first boot) only when
    // `systemctl show` says that systemd has read every unit as it is on disk, none masked or
    // missing, and the share and the profiles enabled; anything else takes the slow path.
    let files = guest_files();
    let setup = &files["setup_script"];
    let start = setup.find("units_current() {").expect("no units_current()");
    let end = start
        + setup[start..]
            .find("\n}\n")
            .expect("units_current() has no end")
        + 3;
    let function = &setup[start..end];
    let unit = |id: &str, load: &str, file: &str, reload: &str| {
        format!("Id={id}\nLoadState={load}\nUnitFileState={file}\nNeedDaemonReload={reload}\n\n")
    };
    let current = [
        unit("isc-dhcp-server.service", "loaded", "generated", "no"),
        unit("tftpd-hpa.service", "loaded", "generated", "no"),
        unit("fcgiwrap.socket", "loaded", "enabled", "no"),
        unit("nginx.service", "loaded", "enabled", "no"),
        unit("fcgiwrap.service", "loaded", "static", "no"),
        unit("etc-moc.mount", "loaded", "enabled", "no"),
        unit("mkheadnode-profiles.service", "loaded", "enabled", "no"),
    ];
    let verdict = |state: String| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("units.state");
        std::fs::write(&file, state).unwrap();
        let script = format!(
            "{function}units_current \"$1\" \"etc-moc.mount mkheadnode-profiles.service\" \
             && echo current || echo stale"
        );
        let (code, out, err) = run(Command::new("/bin/sh")
            .args(["-c", &script, "sh"])
            .arg(&file));
        assert_eq!(code, 0, "{out}{err}");
        out.trim().to_string()
    };
    assert_eq!(verdict(current.concat()), "current");
    let changed = |i: usize, with: String| {
        let mut units = current.clone();
        units[i] = with;
        verdict(units.concat())
    };
    let cases = [
        (
            1,
            unit("tftpd-hpa.service", "loaded", "generated", "yes"),
            "a drop-in changed on disk",
        ),
        (
            3,
            unit("nginx.service", "masked", "masked", "no"),
            "a masked service",
        ),
        (
            5,
            unit("etc-moc.mount", "loaded", "disabled", "no"),
            "the share not enabled",
        ),
        (
            6,
            unit("mkheadnode-profiles.service", "not-found", "", "no"),
            "a unit not read",
        ),
    ];
    for (i, with, what) in cases {
        assert_eq!(changed(i, with), "stale", "{what} counted as current");
    }
}

#[test]
fn rendered_files_keep_the_recipes_values() {
    let p = plan();
    let conf = seed::dhcpd_conf(&p).unwrap();
    for want in [
        "default-lease-time 36000;",
        "max-lease-time 36000;",
        "allow booting;",
        "allow bootp;",
        "authoritative;",
        "shared-network vlan42 {",
        "subnet 192.168.10.0 netmask 255.255.255.0 {",
        "subnet 10.0.0.0 netmask 255.255.255.0 {",
        "range 192.168.10.1 192.168.10.127;",
        "option broadcast-address 192.168.10.255;",
        "next-server 192.168.10.254;",
        "filename \"pxelinux.0\";",
    ] {
        assert!(conf.contains(want), "dhcpd.conf lacks {want:?}:\n{conf}");
    }
    let files: std::collections::BTreeMap<_, _> =
        seed::guest_files(&p).unwrap().into_iter().collect();
    assert!(files["isc_dhcp_server"].contains("INTERFACESv4=\"eth0\""));
    assert!(files["tftpd_hpa"].contains("TFTP_ADDRESS=\"192.168.10.254:69\""));
    assert!(files["tftpd_hpa"].contains("TFTP_DIRECTORY=\"/var/lib/tftpboot\""));
    assert!(
        files["pxelinux_default"].contains("DEFAULT disk")
            && files["pxelinux_default"].contains("LOCALBOOT 0")
    );
    assert!(files["nginx_site"].contains("listen 192.168.10.254:80;"));
    assert!(files["nginx_site"].contains("root /var/lib/tftpboot;"));
    assert!(files["nginx_site"].contains("fastcgi_read_timeout 300s;"));
    let setup = &files["setup_script"];
    for f in [
        "/usr/lib/PXELINUX/pxelinux.0",
        "ldlinux.c32 menu.c32 chain.c32 mboot.c32 libutil.c32 libcom32.c32",
        "/usr/lib/syslinux/memdisk",
    ] {
        assert!(setup.contains(f), "setup script does not install {f}");
    }
    assert!(setup.contains("rm -f /etc/nginx/sites-enabled/default"));
    let rules = &files["rules_v4"];
    assert!(
        rules.contains(":INPUT DROP")
            && rules.contains("-A INPUT -i eth1 -p tcp --dport 22 -j ACCEPT")
    );
    assert_eq!(
        rules.matches("-i eth1").count(),
        1,
        "eth1 must accept ssh only:\n{rules}"
    );
    assert!(files["moc_mount"].contains("Options=ro,trans=virtio"));
    assert!(files["moc_mount"].contains("What=/etc/moc"));
}

#[test]
fn firewall_rules_parse() {
    let files: std::collections::BTreeMap<_, _> =
        seed::guest_files(&plan()).unwrap().into_iter().collect();
    for (name, prog) in [
        ("rules_v4", "iptables-restore"),
        ("rules_v6", "ip6tables-restore"),
    ] {
        let (code, _, err) = run_with_input(Command::new(prog).arg("--test"), &files[name]);
        assert_eq!(code, 0, "{prog}: {err}");
    }
}

/// nginx + fcgiwrap on loopback serving the rendered site from a temp root; stopped on drop.
/// fcgiwrap runs the CGI as the web user, as in the guest, so it disarms through sudo and
/// mkheadnode-disarm.
struct Web {
    sandbox: Sandbox,
    nginx: Child,
    fcgi: Child,
    open_port: u16,
    lease_port: u16,
}

fn nginx_conf(dir: &Path, sites: &[String]) -> PathBuf {
    let d = dir.display();
    let conf = format!(
        "daemon off;\nuser root root;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\nevents {{}}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n\
         proxy_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n{}\n}}\n",
        sites.join("\n")
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    path
}

/// The arguments the guest's fcgiwrap drop-in starts fcgiwrap with.
fn fcgiwrap_args() -> Vec<String> {
    let unit = guest_file("fcgiwrap_unit");
    let exec = unit
        .lines()
        .filter_map(|l| l.strip_prefix("ExecStart="))
        .find(|l| !l.is_empty())
        .expect("an ExecStart with a command");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/sbin/fcgiwrap"), "{exec}");
    words.map(str::to_string).collect()
}

impl Web {
    fn start() -> Web {
        let sandbox = Sandbox::new();
        let dir = sandbox.dir.path();
        let root = sandbox.root();
        // fcgiwrap makes its socket as the web user, in a directory of that user's.
        let run_dir = dir.join("run");
        std::fs::create_dir(&run_dir).unwrap();
        tool("chown", &[WEB_USER, run_dir.to_str().unwrap()]);
        let socket = run_dir.join("fcgi.sock");
        let (open_port, lease_port) = (free_port(), free_port());
        let site = |port: u16, require_lease: bool| {
            NginxSite {
                listen: format!("127.0.0.1:{port}"),
                tftp_root: root.display().to_string(),
                fcgi_socket: socket.display().to_string(),
                cgi_path: sandbox.cgi().display().to_string(),
                leases_file: dir.join("dhcpd.leases").display().to_string(),
                require_lease,
            }
            .render()
            .unwrap()
        };
        let conf = nginx_conf(dir, &[site(open_port, false), site(lease_port, true)]);
        let (code, out, err) = run(Command::new("nginx")
            .arg("-t")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir));
        assert_eq!(code, 0, "nginx -t: {out}{err}");
        // As the guest's drop-in runs it (-f: the CGI's stderr goes to nginx's error log; its
        // processes), with its socket given here rather than by systemd.
        // In a process group of its own, which the drop stops whole: fcgiwrap's processes.
        let fcgi = as_web_user("fcgiwrap")
            .args(fcgiwrap_args())
            .arg("-s")
            .arg(format!("unix:{}", socket.display()))
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let nginx = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let web = Web {
            sandbox,
            nginx,
            fcgi,
            open_port,
            lease_port,
        };
        let up = || socket.exists() && TcpStream::connect(("127.0.0.1", open_port)).is_ok();
        assert!(
            wait_until(Duration::from_secs(10), up),
            "nginx/fcgiwrap did not come up"
        );
        web
    }

    fn cfg(&self) -> PathBuf {
        self.sandbox.root().join("pxelinux.cfg")
    }

    fn get(&self, port: u16, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: headnode\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let status = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = resp
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or("")
            .trim()
            .to_string();
        (status, body)
    }

    fn link(&self, mac_dashed: &str) -> PathBuf {
        let p = self.cfg().join(format!("01-{mac_dashed}"));
        std::os::unix::fs::symlink("../centos/pxelinux.cfg", &p).unwrap();
        p
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.sandbox.path("error.log")).unwrap_or_default()
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        // SIGTERM lets nginx's master stop its workers; SIGKILL would orphan them.
        // SAFETY: signalling a child we spawned and have not reaped.
        unsafe { libc::kill(self.nginx.id() as i32, libc::SIGTERM) };
        // SAFETY: signalling the process group of a child we spawned as its leader, not reaped.
        unsafe { libc::kill(-(self.fcgi.id() as i32), libc::SIGKILL) };
        let _ = self.nginx.wait();
        let _ = self.fcgi.wait();
    }
}

#[test]
fn boot_default_over_nginx_and_fcgiwrap() {
    let web = Web::start();
    let port = web.open_port;
    let node = web.link("aa-bb-cc-dd-ee-01");
    let other = web.link("aa-bb-cc-dd-ee-02");
    let regular = web.cfg().join("01-aa-bb-cc-dd-ee-03");
    std::fs::write(&regular, "not a link").unwrap();
    std::fs::write(web.cfg().join("default"), "DEFAULT disk\n").unwrap();

    // The 2013 call, colons and upper case: OK, and only that link is gone.
    assert_eq!(
        web.get(port, "/boot-default/?mac=AA:BB:CC:DD:EE:01"),
        (200, "OK".to_string())
    );
    assert!(!node.exists() && std::fs::symlink_metadata(&node).is_err());
    assert!(std::fs::symlink_metadata(&other).is_ok());
    // Repeating it is harmless.
    assert_eq!(web.get(port, "/boot-default/?mac=aa-bb-cc-dd-ee-01").0, 404);
    // Dashes work too.
    assert_eq!(web.get(port, "/boot-default/?mac=aa-bb-cc-dd-ee-02").0, 200);

    for bad in [
        "/boot-default/?mac=not-a-mac",
        "/boot-default/?mac=../default",
        "/boot-default/?mac=..%2F..%2Fetc%2Fpasswd",
        "/boot-default/?mac=aa:bb:cc:dd:ee:01%00",
        "/boot-default/?mac=aa:bb:cc:dd:ee:01/../default",
        "/boot-default/?mac=",
        "/boot-default/",
        "/boot-default/?mac=aa:bb:cc:dd:ee:01&mac=aa:bb:cc:dd:ee:02",
    ] {
        assert_eq!(web.get(port, bad).0, 400, "{bad}");
    }
    assert_eq!(
        web.get(port, "/boot-default/?mac=aa:bb:cc:dd:ee:09").0,
        404,
        "unknown MAC"
    );
    assert_eq!(
        web.get(port, "/boot-default/?mac=aa:bb:cc:dd:ee:03").0,
        403,
        "regular file"
    );
    assert_eq!(std::fs::read_to_string(&regular).unwrap(), "not a link");
    assert_eq!(
        std::fs::read_to_string(web.cfg().join("default")).unwrap(),
        "DEFAULT disk\n"
    );

    // Static files come from the TFTP root.
    std::fs::write(web.sandbox.root().join("hello.txt"), "hi").unwrap();
    assert_eq!(web.get(port, "/hello.txt"), (200, "hi".to_string()));

    let log = web.error_log();
    assert!(
        log.contains("removed pxelinux.cfg/01-aa-bb-cc-dd-ee-01"),
        "{log}"
    );
    assert!(log.contains("400 malformed MAC"), "{log}");
    assert!(log.contains("403 not a symlink"), "{log}");
}

#[test]
fn boot_default_calls_of_nodes_finishing_together_run_side_by_side() {
    // An install storm: nodes that finish together call /boot-default/ at once. The guest's
    // fcgiwrap keeps several CGI processes, so the calls do not all queue behind one (each is
    // about a second under emulation; `make bench-storm`), and every call is answered.
    let args = fcgiwrap_args();
    let children: usize = args
        .iter()
        .position(|a| a == "-c")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    assert!(
        children >= 4,
        "fcgiwrap {args:?} runs {children} CGI process(es)"
    );
    let web = Web::start();
    let pid = web.fcgi.id().to_string();
    let workers = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
            .filter(|stat| stat.rsplit(") ").next().and_then(|r| r.split(' ').nth(1)) == Some(&pid))
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(10), || workers() == children),
        "fcgiwrap has {} processes, not {children}",
        workers()
    );
    let macs: Vec<String> = (0..12).map(|i| format!("aa-bb-cc-dd-ef-{i:02x}")).collect();
    let links: Vec<PathBuf> = macs.iter().map(|m| web.link(m)).collect();
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let calls: Vec<_> = macs
            .iter()
            .map(|m| {
                let web = &web;
                s.spawn(move || web.get(web.open_port, &format!("/boot-default/?mac={m}")))
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    for (mac, answer) in macs.iter().zip(&answers) {
        assert_eq!(answer, &(200, "OK".to_string()), "{mac}");
    }
    assert!(links.iter().all(|l| std::fs::symlink_metadata(l).is_err()));
}

#[test]
fn boot_default_checks_the_dhcp_lease_by_default() {
    let web = Web::start();
    let port = web.lease_port;
    let mine = web.link("aa-bb-cc-dd-ee-11");
    let theirs = web.link("aa-bb-cc-dd-ee-12");
    std::fs::write(
        web.sandbox.path("dhcpd.leases"),
        "lease 127.0.0.1 {\n  starts 2 2026/11/24 10:00:00;\n  ends never;\n  binding state active;\n  next binding state free;\n  hardware ethernet aa:bb:cc:dd:ee:11;\n}\n\
         lease 192.168.10.7 {\n  ends never;\n  binding state active;\n  hardware ethernet aa:bb:cc:dd:ee:12;\n}\n",
    )
    .unwrap();
    // Another node's MAC: refused, link kept.
    assert_eq!(web.get(port, "/boot-default/?mac=aa:bb:cc:dd:ee:12").0, 403);
    assert!(std::fs::symlink_metadata(&theirs).is_ok());
    // The caller's own lease: accepted.
    assert_eq!(
        web.get(port, "/boot-default/?mac=aa:bb:cc:dd:ee:11"),
        (200, "OK".to_string())
    );
    assert!(std::fs::symlink_metadata(&mine).is_err());
    // A lease that has since been freed no longer counts.
    let mine = web.link("aa-bb-cc-dd-ee-11");
    let mut leases = std::fs::read_to_string(web.sandbox.path("dhcpd.leases")).unwrap();
    leases.push_str(
        "lease 127.0.0.1 {\n  binding state free;\n  hardware ethernet aa:bb:cc:dd:ee:11;\n}\n",
    );
    std::fs::write(web.sandbox.path("dhcpd.leases"), leases).unwrap();
    assert_eq!(web.get(port, "/boot-default/?mac=aa:bb:cc:dd:ee:11").0, 403);
    assert!(std::fs::symlink_metadata(&mine).is_ok());
}

/// A temp TFTP root with a profile, a machines file and a credentials file for the link tool.
struct LinkBed {
    dir: tempfile::TempDir,
}

impl LinkBed {
    fn new(machines: &str, credentials: &str) -> LinkBed {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tftpboot");
        std::fs::create_dir_all(root.join("pxelinux.cfg")).unwrap();
        std::fs::create_dir_all(root.join("centos")).unwrap();
        std::fs::write(root.join("centos/pxelinux.cfg"), "DEFAULT install\n").unwrap();
        std::fs::write(dir.path().join("machines.txt"), machines).unwrap();
        let creds = dir.path().join("bmc.conf");
        std::fs::write(&creds, credentials).unwrap();
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::write(
            dir.path().join("mkheadnode-link"),
            seed::link_tool().unwrap(),
        )
        .unwrap();
        LinkBed { dir }
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let d = self.dir.path();
        run(Command::new("python3")
            .arg(d.join("mkheadnode-link"))
            .arg("--tftp-root")
            .arg(d.join("tftpboot"))
            .arg("--machines")
            .arg(d.join("machines.txt"))
            .arg("--credentials")
            .arg(d.join("bmc.conf"))
            .args(["--timeout", "5"])
            .args(args))
    }

    fn link_target(&self, mac_dashed: &str) -> Option<String> {
        let p = self
            .dir
            .path()
            .join("tftpboot/pxelinux.cfg")
            .join(format!("01-{mac_dashed}"));
        std::fs::read_link(p).ok().map(|t| t.display().to_string())
    }
}

#[test]
fn link_tool_dry_run_changes_nothing() {
    let bed = LinkBed::new("aa:bb:cc:dd:ee:01 10.0.0.1\n", "[default]\ndriver = ipmi\n");
    let (code, out, err) = bed.run(&["--profile", "centos", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("would link pxelinux.cfg/01-aa-bb-cc-dd-ee-01 -> ../centos/pxelinux.cfg"),
        "{out}"
    );
    assert!(out.contains("would power-cycle via ipmi"), "{out}");
    assert_eq!(bed.link_target("aa-bb-cc-dd-ee-01"), None);
}

#[test]
fn link_tool_links_every_machine_and_reports_bad_lines() {
    let bed = LinkBed::new(
        "# rack\naa:bb:cc:dd:ee:01 10.0.0.1\nbogus line here\nAA-BB-CC-DD-EE-02 10.0.0.2\naa:bb:cc:dd:ee:03 10.0.0.300\n",
        "[default]\ndriver = none\n",
    );
    let (code, out, _) = bed.run(&["--profile", "centos"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("line 3") && out.contains("line 5"), "{out}");
    assert!(out.contains("2 of 4 machines done"), "{out}");
    for m in ["aa-bb-cc-dd-ee-01", "aa-bb-cc-dd-ee-02"] {
        assert_eq!(
            bed.link_target(m).as_deref(),
            Some("../centos/pxelinux.cfg"),
            "{m}"
        );
    }
    // Only the MACs asked for.
    let bed = LinkBed::new(
        "aa:bb:cc:dd:ee:01 10.0.0.1\naa:bb:cc:dd:ee:02 10.0.0.2\n",
        "[default]\ndriver = none\n",
    );
    let (code, out, _) = bed.run(&["--profile", "centos", "aa:bb:cc:dd:ee:02"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(bed.link_target("aa-bb-cc-dd-ee-01"), None);
    assert!(bed.link_target("aa-bb-cc-dd-ee-02").is_some());
}

#[test]
fn link_tool_refuses_unsafe_setups_before_doing_anything() {
    let bed = LinkBed::new(
        "aa:bb:cc:dd:ee:01 10.0.0.1\n",
        "[default]\ndriver = ipmi\npassword = x\n",
    );
    std::fs::set_permissions(
        bed.dir.path().join("bmc.conf"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (code, out, err) = bed.run(&["--profile", "centos"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("world-readable"), "{err}");
    assert_eq!(bed.link_target("aa-bb-cc-dd-ee-01"), None);
    for profile in ["../etc", "nosuch"] {
        let (code, _, err) = bed.run(&["--profile", profile]);
        assert_eq!(code, 2, "{profile}: {err}");
    }
    assert_eq!(bed.link_target("aa-bb-cc-dd-ee-01"), None);
}

#[test]
fn link_tool_keeps_its_links_and_temp_names_where_only_root_writes() {
    let bed = LinkBed::new("aa:bb:cc:dd:ee:01 10.0.0.1\n", "[default]\ndriver = none\n");
    let cfg = bed.dir.path().join("tftpboot/pxelinux.cfg");
    let mode = |m: u32| std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(m)).unwrap();
    // Group-writable (the old root:www-data 0775), world-writable, or another user's: refused
    // before anything is done.
    for (what, m, owner) in [
        ("group-writable", 0o775, "root"),
        ("world-writable", 0o1777, "root"),
        ("another user's", 0o755, WEB_USER),
    ] {
        mode(m);
        tool("chown", &[owner, cfg.to_str().unwrap()]);
        let (code, out, err) = bed.run(&["--profile", "centos"]);
        assert_eq!(code, 2, "{what}: {out}{err}");
        assert!(err.contains("writable by no one else"), "{what}: {err}");
        assert_eq!(bed.link_target("aa-bb-cc-dd-ee-01"), None, "{what}");
    }
    mode(0o755);
    tool("chown", &["root", cfg.to_str().unwrap()]);
    for _ in 0..2 {
        let (code, out, err) = bed.run(&["--profile", "centos"]);
        assert_eq!(code, 0, "{out}{err}");
    }
    // The temporary names it linked under are gone.
    let names: Vec<String> = std::fs::read_dir(&cfg)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["01-aa-bb-cc-dd-ee-01"]);
}

#[test]
fn link_tool_reports_an_unreachable_bmc_and_goes_on() {
    let port = free_port().to_string();
    let bed = LinkBed::new(
        "aa:bb:cc:dd:ee:01 127.0.0.1\naa:bb:cc:dd:ee:02 127.0.0.2\n",
        &format!("[default]\ndriver = ipmi\nusername = admin\npassword = secret\nport = {port}\n[127.0.0.2]\ndriver = none\n"),
    );
    let start = Instant::now();
    let (code, out, _) = bed.run(&["--profile", "centos"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAILED aa:bb:cc:dd:ee:01 (127.0.0.1): ipmi"),
        "{out}"
    );
    assert!(out.contains("ok     aa:bb:cc:dd:ee:02"), "{out}");
    assert!(start.elapsed() < Duration::from_secs(30));
}
