#!/usr/bin/env python3
"""`make bench-storm`: the install storm (issue 13, item 3). How many nodes one headnode installs
at once, and how the cost grows.

One headnode, made by the real tool on an isolated libvirt network for VLAN 3990, with two
profiles (random bytes: `storm`, an 8 MiB kernel and a 64 MiB initrd; `stormtftp`, 1 + 1 MiB)
and 50 machines in machines.txt, armed with `mkheadnode install --no-power`. N of them (1, 10,
50) start at once, each a network namespace whose veth is a port of the VLAN's bridge, with the
machine's MAC: a real DHCP exchange (busybox udhcpc, sending its architecture as option 93 and a
PXE vendor class), its boot loader fetched as the firmware would, then the profile's kernel and
initrd, then `/boot-default/`. The kinds of machine (STORM_KINDS, default `http,tftp`):

- `http`, UEFI HTTP Boot (arch 16): shim, GRUB, both grub.cfg, kernel and initrd, all over HTTP
  from nginx; profile `storm`;
- `tftp`, BIOS (arch 0): pxelinux.0, ldlinux.c32, pxelinux.cfg/01-<mac>, kernel and initrd, all
  over TFTP with the block size pxelinux asks for (1408); profile `stormtftp` (TFTP moves
  ~1.5 MB/s here whatever the number of machines: 50 × 72 MiB would take an hour);
- `uefi`, UEFI PXE (arch 7): shim, GRUB and the grub.cfg over TFTP, then kernel and initrd over
  HTTP (what the headnode's GRUB does); profile `storm`.

The anchor: dnsmasq serving DHCP and TFTP from the same guest (dhcpd and tftpd-hpa stopped,
dnsmasq-base and what it needs from Debian's archive put on the config share and installed for
the run: the image has no dnsmasq), to `tftp` machines, with dnsmasq's defaults. Before every
run the DHCP server starts from an empty lease file (a storm of new machines), the guest's and
machines' neighbour caches are flushed and every machine is armed again. Writes its report (a
markdown section) to STORM_OUT (default target/storm.md), and the raw results beside it (.json).

`storm.py` runs it all; `storm.py up` leaves the headnode and clients up, `storm.py run KIND N
[dnsmasq]` runs one storm against it, `storm.py down` removes everything, `storm.py report`
writes the report again from the last run's results.
"""
import base64
import importlib.machinery
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (sh, virsh, macs_of)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
VLAN = 3990
HEADNODE = f"headnode-{VLAN}"
VNET, VBRIDGE = f"storm-v{VLAN}", f"storm{VLAN}"
PNET, PBRIDGE = "storm-public", "stormpub"
ROOT = "/var/lib/mkheadnode-storm"
POOL = "mkheadnode-storm"
URI = "qemu:///system"
SERVER = "192.168.10.254"
IMAGE = os.environ.get("IMAGE", "/var/lib/mkheadnode/base/debian-12-headnode.qcow2")
BIN = os.path.abspath(os.environ.get("BIN", os.path.join(REPO, "target/release/mkheadnode")))
OUT = os.environ.get("STORM_OUT", os.path.join(REPO, "target/storm.md"))
SIZES = [int(n) for n in os.environ.get("STORM_SIZES", "1,10,50").split(",")]
MACHINES = max(SIZES)
# The profile of the storm: what an installer's kernel and initrd weigh.
PROFILE, KERNEL_MIB, INITRD_MIB = "storm", int(os.environ.get("STORM_KERNEL_MIB", "8")), int(os.environ.get("STORM_INITRD_MIB", "64"))
# The profile of the TFTP rows (pxelinux, and the dnsmasq anchor): TFTP moves ~1.5 MB/s here,
# whatever the number of nodes, so 50 nodes would need an hour for the storm profile. Their
# throughput is measured with a 1 MiB kernel and a 1 MiB initrd.
TFTP_PROFILE, TFTP_KERNEL_MIB, TFTP_INITRD_MIB = "stormtftp", 1, int(os.environ.get("STORM_TFTP_INITRD_MIB", "1"))
PROFILES = {PROFILE: (KERNEL_MIB, INITRD_MIB), TFTP_PROFILE: (TFTP_KERNEL_MIB, TFTP_INITRD_MIB)}
KINDS = os.environ.get("STORM_KINDS", "http,tftp").split(",")
# The TFTP block size pxelinux asks for (its TFTP_LARGEBLK: a 1440-byte MTU less the headers).
BLKSIZE = 1408
# A client gives up on a file after this long (a firmware would have long before).
FILE_TIMEOUT = 600
# The vendor class and architecture (option 93) each kind of client sends.
DHCP_IDS = {
    "tftp": ("PXEClient:Arch:00000:UNDI:002001", "0000"),
    "uefi": ("PXEClient:Arch:00007:UNDI:003016", "0007"),
    "http": ("HTTPClient:Arch:00016:UNDI:003001", "0010"),
}
DNSMASQ_DEBS = f"{ROOT}/cfg/{VLAN}/storm-debs"
DNSMASQ_LEASES = "/run/storm-dnsmasq.leases"
DNSMASQ_PID = "/run/storm-dnsmasq.pid"

sh, virsh = bench.sh, bench.virsh
bench.BIN = BIN


def mac(i):
    return f"52:54:00:5c:{VLAN % 256:02x}:{i:02x}"


def netns(i):
    return f"storm-c{i}"


def flags():
    # STORM_CONFIG: a mkheadnode config file for the headnode (e.g. another tcg_tb_cache_mib).
    config = ["--config", os.environ["STORM_CONFIG"]] if os.environ.get("STORM_CONFIG") else []
    return config + [
        "--connect", URI, "--virt-type", "qemu", "-q", "--base-image", IMAGE,
        "--pool", POOL, "--pool-dir", f"{ROOT}/pool", "--config-root", f"{ROOT}/cfg",
        "--apparmor-abstraction", f"{ROOT}/libvirt-qemu", "--lock-dir", f"{ROOT}/lock",
        "--log-dir", f"{ROOT}/log", "--vlan-network", VNET, "--public-network", PNET,
    ]


def mk(*args, check=True):
    return sh(BIN, *args, *flags(), check=check)


# ---------------------------------------------------------------------------------------------
# The headnode's guest, through its agent.


def agent(request):
    r = virsh("qemu-agent-command", HEADNODE, json.dumps(request), check=False)
    if r.returncode != 0:
        raise RuntimeError(f"guest agent: {r.stderr.strip()}")
    return json.loads(r.stdout)["return"]


def guest(cmd, timeout=300, check=True):
    """(exit code, stdout + stderr) of a shell command in the headnode."""
    pid = agent({"execute": "guest-exec", "arguments": {"path": "/bin/sh", "arg": ["-c", cmd], "capture-output": True}})["pid"]
    deadline = time.monotonic() + timeout
    while True:
        st = agent({"execute": "guest-exec-status", "arguments": {"pid": pid}})
        if st.get("exited"):
            out = (base64.b64decode(st.get("out-data", "")) + base64.b64decode(st.get("err-data", ""))).decode(errors="replace")
            code = st.get("exitcode", -1)
            if check and code != 0:
                sys.exit(f"storm: in the headnode, `{cmd}` failed ({code}):\n{out}")
            return code, out
        if time.monotonic() > deadline:
            sys.exit(f"storm: in the headnode, `{cmd}` did not finish in {timeout} s")
        time.sleep(0.2)


# ---------------------------------------------------------------------------------------------
# Set-up and clean-up.


def cleanup():
    for name in sh("ip", "netns", "list", check=False).stdout.split():
        if re.fullmatch(r"storm-c\d+", name):
            sh("ip", "netns", "del", name, check=False)
    if os.path.exists(BIN):
        sh(BIN, "teardown", str(VLAN), "--purge", *flags(), check=False)
    if virsh("dominfo", HEADNODE, check=False).returncode == 0:
        virsh("destroy", HEADNODE, check=False)
        virsh("undefine", HEADNODE, check=False)
    bench.remove_pool(POOL, (VNET, PNET), ROOT)


def networks():
    public_mac = bench.macs_of(str(VLAN), flags())[VLAN][1]
    nets = {
        # The VLAN: a bridge and nothing else (no address of the host's, no DHCP of libvirt's).
        VNET: f"<network><name>{VNET}</name><bridge name='{VBRIDGE}' stp='off' delay='0'/></network>",
        # Isolated; the headnode's address reserved, as in `make bench`.
        PNET: f"<network><name>{PNET}</name><bridge name='{PBRIDGE}' stp='off'/>"
        "<ip address='172.31.252.1' prefix='24'><dhcp><range start='172.31.252.100' end='172.31.252.200'/>"
        f"<host mac='{public_mac}' ip='172.31.252.10'/></dhcp></ip></network>",
    }
    for n, xml in nets.items():
        with open(f"{ROOT}/{n}.xml", "w") as f:
            f.write(xml)
        virsh("net-define", f"{ROOT}/{n}.xml")
        virsh("net-start", n)


def profile_files(profile, kernel_mib, initrd_mib):
    """A profile: both loaders' configs, a kernel and an initrd of these sizes (random bytes:
    nothing boots them, and nothing on the way can compress them)."""
    src = f"{ROOT}/profile-src/{profile}"
    os.makedirs(src, exist_ok=True)
    for name, mib in (("vmlinuz", kernel_mib), ("initrd.img", initrd_mib)):
        with open(f"{src}/{name}", "wb") as f:
            for _ in range(mib):
                f.write(os.urandom(1 << 20))
    with open(f"{src}/pxelinux.cfg", "w") as f:
        f.write(f"DEFAULT install\nLABEL install\n  KERNEL {profile}/vmlinuz\n  INITRD {profile}/initrd.img\n"
                "  APPEND console=ttyS0 headnode=@HEADNODE@\n")
    with open(f"{src}/grub.cfg", "w") as f:
        f.write(f"set timeout=0\nlinux ${{mkheadnode_fetch}}/{profile}/vmlinuz console=ttyS0 headnode=@HEADNODE@\n"
                f"initrd ${{mkheadnode_fetch}}/{profile}/initrd.img\nboot\n")
    sh("chmod", "-R", "a+rX", src)
    return src


def clients():
    """A namespace per machine: `eth0` with the machine's MAC, its veth peer a port of the
    VLAN's bridge. No IPv6 (no router solicitations or DAD on the VLAN)."""
    for i in range(1, MACHINES + 1):
        ns, port = netns(i), f"stc{i}"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "address", mac(i), "netns", ns)
        with open(f"/proc/sys/net/ipv6/conf/{port}/disable_ipv6", "w") as f:
            f.write("1")
        sh("ip", "link", "set", port, "master", VBRIDGE, "up")
        sh("ip", "netns", "exec", ns, "sh", "-c",
           "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 && echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"
           " && ip link set lo up && ip link set eth0 up")


def up():
    if os.geteuid() != 0:
        sys.exit("storm: run as root (make bench-storm)")
    if not os.path.exists(IMAGE):
        sys.exit(f"storm: no base image at {IMAGE}: run `make image`")
    cleanup()
    for d in ("", "cfg", "pool", "log", "lock"):
        os.makedirs(f"{ROOT}/{d}", exist_ok=True)
        os.chmod(f"{ROOT}/{d}", 0o755)
    with open(f"{ROOT}/libvirt-qemu", "w") as f:
        f.write("  /usr/share/qemu/** r,\n")
    with open(f"{ROOT}/udhcpc.sh", "w") as f:
        f.write('#!/bin/sh\n[ "$1" = bound ] || exit 0\nip addr add "$ip/${mask:-24}" dev "$interface"\n'
                'echo "ip=$ip"\necho "siaddr=$siaddr"\necho "boot_file=$boot_file"\n')
    os.chmod(f"{ROOT}/udhcpc.sh", 0o755)
    with open(f"{ROOT}/machines.txt", "w") as f:
        f.write("# the install storm's simulated machines (no BMC: armed with --no-power)\n")
        for i in range(1, MACHINES + 1):
            f.write(f"{mac(i)} 10.0.0.{i}\n")
    networks()
    times = {}
    print(f"==> {HEADNODE}: create --wait (TCG)", flush=True)
    t = time.monotonic()
    mk(str(VLAN), "--wait", "--timeout", "600", "--machines", f"{ROOT}/machines.txt")
    times["ready"] = time.monotonic() - t
    xml = virsh("dumpxml", HEADNODE).stdout
    tb = re.search(r"<tb-cache unit='KiB'>(\d+)<", xml)
    times["tb_cache"] = f"{int(tb.group(1)) // 1024} MiB" if tb else "qemu's default"
    mem = re.search(r"<memory unit='KiB'>(\d+)<", xml)
    times["memory"] = f"{int(mem.group(1)) // 1024} MiB" if mem else "?"
    times["vcpus"] = re.search(r"<vcpu[^>]*>(\d+)<", xml).group(1)
    for name, (kernel, initrd) in PROFILES.items():
        src = profile_files(name, kernel, initrd)
        t = time.monotonic()
        mk("profile", "add", str(VLAN), name, src)
        times[f"profile {name}"] = time.monotonic() - t
    t = time.monotonic()
    mk("install", str(VLAN), "--profile", PROFILE, "--all", "--no-power")
    times["arm"] = time.monotonic() - t
    print("    " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items() if isinstance(v, float)), flush=True)
    clients()
    return times


# ---------------------------------------------------------------------------------------------
# One simulated machine, run inside its namespace (`storm.py client KIND MAC`).


class Fail(Exception):
    pass


def curl(url, out="/dev/null"):
    """Fetch `url` (tftp:// or http://): bytes received."""
    args = ["curl", "-sS", "-o", out, "-w", "%{size_download} %{http_code}", "--max-time", str(FILE_TIMEOUT)]
    if url.startswith("tftp:"):
        args += ["--tftp-blksize", str(BLKSIZE)]
    r = subprocess.run([*args, url], capture_output=True, text=True)
    size, code = (r.stdout.split() + ["0", "0"])[:2]
    if r.returncode != 0:
        raise Fail(f"{url}: curl exit {r.returncode}: {r.stderr.strip()}")
    if url.startswith("http:") and code != "200":
        raise Fail(f"{url}: HTTP {code}")
    return int(float(size))


def text(url, tmp):
    curl(url, tmp)
    with open(tmp, encoding="latin-1") as f:
        return f.read()


def loads(cfg, kind):
    """The kernel and initrd a pxelinux.cfg (`KERNEL`, `INITRD`) or grub.cfg (`linux`, `initrd`)
    loads, as paths under the TFTP root."""
    keys = ("kernel", "initrd") if kind == "tftp" else ("linux", "initrd")
    found = {}
    for line in cfg.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0].lower() in keys:
            found[words[0].lower()] = words[1].replace("${mkheadnode_fetch}/", "")
    if len(found) != 2:
        raise Fail(f"no kernel and initrd in {cfg!r}")
    return [found[k] for k in keys]


def client(kind, hw):
    dashed = hw.replace(":", "-")
    tmp = f"{ROOT}/client-{dashed}.tmp"
    r = {"mac": hw, "kind": kind, "ok": False, "bytes": {"tftp": 0, "http": 0}}
    print("ready", flush=True)
    sys.stdin.readline()
    clock = time.monotonic
    r["start"] = clock()
    try:
        vendor, arch = DHCP_IDS[kind]
        # As a PXE ROM: no client identifier (the lease is the hardware address's), retries 4 s apart.
        d = subprocess.run(["busybox", "udhcpc", "-i", "eth0", "-q", "-n", "-C", "-t", "6", "-T", "4", "-s",
                            f"{ROOT}/udhcpc.sh", "-V", vendor, "-x", f"0x5d:{arch}"], capture_output=True, text=True)
        lease = dict(line.split("=", 1) for line in d.stdout.splitlines() if "=" in line)
        if d.returncode != 0 or "ip" not in lease:
            raise Fail(f"no DHCP lease: {' '.join(d.stderr.split())[-200:]}")
        r["bound"], r["ip"] = clock(), lease["ip"]
        server, boot = lease.get("siaddr") or SERVER, lease.get("boot_file", "")
        r["boot_file"] = boot

        def get(path, proto):
            r["bytes"][proto] += curl(f"{proto}://{server}/{path}")

        if kind == "tftp":
            files, cfg_url, payload = [boot, "ldlinux.c32"], f"tftp://{server}/pxelinux.cfg/01-{dashed}", "tftp"
        elif kind == "uefi":
            chain = os.path.dirname(boot)
            files, cfg_url, payload = [boot, f"{chain}/grubx64.efi", "grub/grub.cfg"], f"tftp://{server}/{chain}/grub.cfg", "http"
        else:
            prefix = f"http://{server}/"
            if not boot.startswith(prefix):
                raise Fail(f"HTTP Boot offer names {boot!r}")
            chain = os.path.dirname(boot[len(prefix):])
            files, cfg_url, payload = [boot[len(prefix):], f"{chain}/grubx64.efi", "grub/grub.cfg"], f"{prefix}{chain}/grub.cfg", "http"
        loader = "tftp" if kind != "http" else "http"
        for f in files:
            if not f:
                raise Fail("the offer names no boot file")
            get(f, loader)
        cfg = text(cfg_url, tmp)
        r["bytes"][loader] += len(cfg.encode("latin-1"))
        r["loaded"] = clock()
        r["payload"] = payload
        before = r["bytes"][payload]
        for f in loads(cfg, kind):
            get(f, payload)
        r["payload_bytes"] = r["bytes"][payload] - before
        r["fetched"] = clock()
        if os.environ.get("STORM_BOOT_DEFAULT", "1") == "1":
            status = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "300",
                                     f"http://{server}/boot-default/?mac={hw}"], capture_output=True, text=True)
            r["boot_default"] = status.stdout.strip() or f"curl exit {status.returncode}"
            if r["boot_default"] != "200":
                raise Fail(f"/boot-default/ answered {r['boot_default']} {status.stderr.strip()}")
        r["ok"] = True
    except Fail as e:
        r["reason"] = str(e)
    finally:
        r["end"] = clock()
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(json.dumps(r), flush=True)


# ---------------------------------------------------------------------------------------------
# One storm.


def lease_parser():
    """The headnode's dhcpd.leases parser (leases.py, shared by its boot-default CGI and nodes
    tool), the one the headnode trusts."""
    path = os.path.join(REPO, "cloud-init/files/leases.py")
    loader = importlib.machinery.SourceFileLoader("mkheadnode_leases", path)
    spec = importlib.util.spec_from_loader("mkheadnode_leases", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def prepare(server, profile):
    """The DHCP server from an empty lease file, no neighbour caches, every machine armed."""
    if server == "dhcpd":
        guest("systemctl stop isc-dhcp-server && rm -f /var/lib/dhcp/dhcpd.leases~ && "
              ": > /var/lib/dhcp/dhcpd.leases && ip neigh flush dev eth0 && systemctl start isc-dhcp-server")
    else:
        # dnsmasq keeps its leases in memory too: started again on an empty file.
        guest(f"{DNSMASQ_STOP}; rm -f {DNSMASQ_LEASES}; ip neigh flush dev eth0; {DNSMASQ_START}")
    for i in range(1, MACHINES + 1):
        sh("ip", "-n", netns(i), "addr", "flush", "dev", "eth0")
        sh("ip", "-n", netns(i), "neigh", "flush", "dev", "eth0")
    # Armed again by the headnode's link tool in one run for all of them: `mkheadnode install`
    # runs it once per machine (50 machines: ~40 s under TCG), which `up` times once.
    guest(f"/usr/local/sbin/mkheadnode-link --profile {profile} --no-power >/dev/null")


DNSMASQ_START = (f"dnsmasq --conf-file=/dev/null --port=0 --interface=eth0 --bind-interfaces "
                 f"--dhcp-range=192.168.10.1,192.168.10.127,255.255.255.0,10h --dhcp-boot=pxelinux.0,,{SERVER} "
                 f"--dhcp-leasefile={DNSMASQ_LEASES} --pid-file={DNSMASQ_PID} --enable-tftp --tftp-root=/var/lib/tftpboot")
DNSMASQ_STOP = (f"if [ -f {DNSMASQ_PID} ]; then p=$(cat {DNSMASQ_PID}); kill $p; "
                f"while kill -0 $p 2>/dev/null; do sleep 0.1; done; rm -f {DNSMASQ_PID}; fi")


def dnsmasq(on):
    """dnsmasq in place of dhcpd and tftpd-hpa (on), or back (off)."""
    if on:
        code, _ = guest("command -v dnsmasq", check=False)
        if code != 0:
            guest(f"dpkg -i {DNSMASQ_DEBS.replace(f'{ROOT}/cfg/{VLAN}', '/etc/moc')}/*.deb")
        guest(f"systemctl stop isc-dhcp-server tftpd-hpa && {DNSMASQ_START}")
    else:
        guest(f"{DNSMASQ_STOP}; systemctl start isc-dhcp-server tftpd-hpa")


def fetch_dnsmasq_debs():
    """dnsmasq-base and what it needs that the base image lacks, from Debian's archive, put on the
    headnode's config share (the image carries no dnsmasq)."""
    os.makedirs(DNSMASQ_DEBS, exist_ok=True)
    _, missing = guest("for p in dnsmasq-base libnetfilter-conntrack3 libnftables1 libnftnl11 libmnl0 libgmp10 "
                       "libhogweed6 libnettle8 libidn2-0 libdbus-1-3 libjansson4 libxtables12 libnfnetlink0; do "
                       "dpkg -s $p >/dev/null 2>&1 || echo $p; done", check=False)
    names = missing.split()
    if names:
        r = subprocess.run(["apt-get", "download", *names], cwd=DNSMASQ_DEBS, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"storm: apt-get download {' '.join(names)} failed:\n{r.stderr}")
    sh("chmod", "-R", "a+rX", DNSMASQ_DEBS)
    return names


def leases_held(server):
    """{MAC: address} of the leases in force that the DHCP server recorded."""
    if server == "dhcpd":
        _, text = guest("cat /var/lib/dhcp/dhcpd.leases")
        parser, now = lease_parser(), time.time()
        table = parser.leases(parser.statements(text))
        return {r["mac"]: ip for ip, r in table.items() if r["mac"] and parser.in_force(r, now)}
    _, text = guest(f"cat {DNSMASQ_LEASES}")
    return {w[1]: w[2] for w in (line.split() for line in text.splitlines()) if len(w) >= 3}


def storm(kind, n, server="dhcpd"):
    """Start n clients at once; their results and what the DHCP server recorded."""
    prepare(server, TFTP_PROFILE if kind == "tftp" else PROFILE)
    procs = []
    for i in range(1, n + 1):
        p = subprocess.Popen(["ip", "netns", "exec", netns(i), sys.executable, os.path.abspath(__file__), "client", kind, mac(i)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "STORM_BOOT_DEFAULT": "1" if server == "dhcpd" else "0"})
        procs.append(p)
    for p in procs:
        if p.stdout.readline().strip() != "ready":
            sys.exit("storm: a client did not start")
    cpu = cpu_now()
    go = time.monotonic()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p in procs:
        line = p.stdout.readline()
        results.append(json.loads(line) if line.strip() else {"ok": False, "reason": "the client said nothing", "bytes": {}})
    wall = time.monotonic() - go
    used = [b - a for a, b in zip(cpu, cpu_now())]
    client_cpu = 0.0
    for p in procs:
        _, status, usage = os.wait4(p.pid, 0)
        client_cpu += usage.ru_utime + usage.ru_stime
    held = leases_held(server)
    return {"kind": kind, "n": n, "server": server, "go": go, "clients": results, "held": held,
            "cpu": {"guest_busy": used[0] / used[1] if used[1] else 0.0, "qemu": used[2] / wall, "clients": client_cpu / wall,
                    "load": os.getloadavg()[0]}}


def cpu_now():
    """(guest busy jiffies, guest total jiffies, qemu's CPU seconds on the host)."""
    _, stat = guest("head -1 /proc/stat")
    ticks = [int(x) for x in stat.split()[1:]]
    with open(f"/run/libvirt/qemu/{HEADNODE}.pid") as f:
        pid = f.read().strip()
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    qemu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks), qemu


# ---------------------------------------------------------------------------------------------
# Figures and the report.


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q * len(xs) + 0.5)) - 1))] if xs else float("nan")


def figures(run):
    cs, go = run["clients"], run["go"]
    done = [c for c in cs if c["ok"]]
    bound = [c for c in cs if "bound" in c]
    ends = [c["end"] - go for c in cs]
    totals = [c["end"] - c["start"] for c in done]
    f = {
        "label": f"{run['server']} {run['kind']}", "server": run["server"], "kind": run["kind"], "n": run["n"],
        "done": len(done), "last": max(ends) if ends else float("nan"),
        "median": statistics.median(totals) if totals else float("nan"),
        "p95": pct(totals, 0.95), "max": max(totals) if totals else float("nan"),
        "dhcp_rate": len(bound) / max(c["bound"] - go for c in bound) if bound else 0.0,
        "dhcp_max": max(c["bound"] - c["start"] for c in bound) if bound else float("nan"),
        "failures": sorted({c.get("reason", "?") for c in cs if not c["ok"]}),
    }
    for path in ("tftp", "http"):
        mine = [c for c in cs if c.get("payload") == path and "fetched" in c]
        if mine:
            span = max(c["fetched"] for c in mine) - min(c["loaded"] for c in mine)
            f[path] = sum(c["payload_bytes"] for c in mine) / span
            f[f"{path}_node"] = statistics.median(c["payload_bytes"] / (c["fetched"] - c["loaded"]) for c in mine)
    # A lease is lost when a client was given an address that the server holds no lease in force
    # for (or for another MAC); a client without an address lost its lease too.
    held = run["held"]
    got = {c["mac"]: c.get("ip") for c in cs}
    f["lost"] = sum(1 for m, ip in got.items() if ip is None or held.get(m) != ip)
    ips = [ip for ip in got.values() if ip]
    f["duplicates"] = len(ips) - len(set(ips))
    cgi = [c["end"] - c["fetched"] for c in done if "boot_default" in c]
    f["cgi_max"] = max(cgi) if cgi else None
    f.update(run["cpu"])
    return f


def mib(x):
    return x / (1 << 20)


def report(runs, times, took):
    """The markdown section: how it was run, a row a storm, the targets."""
    rows = [figures(r) for r in runs]
    by = {(f["server"], f["kind"], f["n"]): f for f in rows}
    lines = [
        "## Install storm: N machines network-booting from one headnode at once",
        "",
        f"Written by `make bench-storm` ({time.strftime('%Y-%m-%d')}, {took:.0f} s); one run a row. One headnode made "
        f"by `mkheadnode` (TCG, {times.get('memory', '?')}, {times.get('vcpus', '?')} vCPUs, translation cache {times.get('tb_cache', '?')}), ready after {times['ready']:.1f} s; profiles `{PROFILE}` "
        f"({KERNEL_MIB} MiB kernel, {INITRD_MIB} MiB initrd) and `{TFTP_PROFILE}` ({TFTP_KERNEL_MIB} + "
        f"{TFTP_INITRD_MIB} MiB) added with `mkheadnode profile add` ({times[f'profile {PROFILE}']:.1f} s and "
        f"{times[f'profile {TFTP_PROFILE}']:.1f} s); {MACHINES} machines armed with `mkheadnode install --all "
        f"--no-power` in {times['arm']:.1f} s (one link-tool run a machine), and again by the link tool before each run.",
        "",
        "Each machine is a network namespace on the VLAN's bridge with its machines.txt MAC: a real DHCP "
        "exchange (busybox udhcpc with option 93 and the PXE vendor class of its firmware, no client "
        "identifier, retries 4 s apart), its loader fetched as the firmware would, the kernel and initrd, "
        "then `/boot-default/`. **http**: UEFI HTTP Boot (arch 16), shim, GRUB, configs, kernel and initrd "
        f"over HTTP from nginx, profile `{PROFILE}`. **tftp**: BIOS (arch 0), pxelinux.0, ldlinux.c32, "
        f"its config, kernel and initrd over TFTP (block size 1408, as pxelinux asks), profile `{TFTP_PROFILE}`. "
        f"The anchor, **dnsmasq**: DHCP and TFTP by dnsmasq {times['dnsmasq']} with its defaults in the same guest "
        "(dhcpd and tftpd-hpa stopped; nginx stays for nothing, no `/boot-default/`), to tftp machines. "
        "Every run starts from an empty lease file and flushed neighbour caches. Throughput is the "
        "kernel+initrd bytes of all machines over the time from the first machine starting them to the "
        "last finishing; CPU: the guest's two vCPUs busy, the cores qemu used on the host, and the host's "
        "load average (other jobs share this machine's 2 cores).",
        "",
        "| server, path | machines | done | last done (s) | per machine median / p95 / max (s) | DHCP answers/s "
        "(slowest, s) | kernel+initrd MiB/s: all (median machine) | slowest /boot-default/ (s) | lost leases | "
        "guest busy / qemu cores / host load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in rows:
        paths = ", ".join(f"{mib(f[p]):.1f} ({mib(f[p + '_node']):.2f})" for p in ("tftp", "http") if p in f) or "—"
        cgi = f"{f['cgi_max']:.1f}" if f["cgi_max"] is not None else "—"
        lines.append(f"| {f['label']} | {f['n']} | {f['done']}/{f['n']} | {f['last']:.1f} | {f['median']:.1f} / "
                     f"{f['p95']:.1f} / {f['max']:.1f} | {f['dhcp_rate']:.1f} ({f['dhcp_max']:.1f}) | {paths} | {cgi} | "
                     f"{f['lost'] + f['duplicates']} | {f['guest_busy'] * 100:.0f}% / {f['qemu']:.2f} / {f['load']:.1f} |")
    fails = [(f["label"], f["n"], why) for f in rows for why in f["failures"]]
    if fails:
        lines += ["", "Failures:", ""] + [f"- {lab}, {n} machines: {why}" for lab, n, why in fails]
    ok = lambda b: "met" if b else "**missed**"
    top = max(SIZES)
    lines += ["", "### Targets", ""]
    for kind in KINDS:
        f = by.get(("dhcpd", kind, top))
        if f:
            lines.append(f"- {kind}, {top} machines: every one completes and no lease is lost: {f['done']}/{top} done, "
                         f"{f['lost']} leases lost, {f['duplicates']} addresses given twice: "
                         f"{ok(f['done'] == top and f['lost'] == 0 and f['duplicates'] == 0)}")
    one, many = by.get(("dhcpd", "http", 1)), by.get(("dhcpd", "http", top))
    if one and many and "http" in one and "http" in many:
        lines.append(f"- aggregate HTTP throughput at {top} machines at least 0.8× that of 1: {mib(many['http']):.1f} vs "
                     f"{mib(one['http']):.1f} MiB/s ({many['http'] / one['http']:.2f}×): {ok(many['http'] >= 0.8 * one['http'])}")
    for n in SIZES:
        h, t, d = by.get(("dhcpd", "http", n)), by.get(("dhcpd", "tftp", n)), by.get(("dnsmasq", "tftp", n))
        parts = []
        if h and t and "http" in h and "tftp" in t:
            parts.append(f"{h['http'] / t['tftp']:.0f}× tftpd-hpa's TFTP")
        if h and d and "http" in h and "tftp" in d:
            parts.append(f"{h['http'] / d['tftp']:.0f}× dnsmasq's TFTP")
        if parts:
            lines.append(f"- HTTP path, {n} machine{'s' if n > 1 else ''} at once: {' and '.join(parts)} (aggregate; reported)")
    t = by.get(("dhcpd", "tftp", top))
    if t and "tftp" in t:
        need = top * (KERNEL_MIB + INITRD_MIB) / mib(t["tftp"]) / 60
        lines.append(f"- at the TFTP rate of {top} machines, {top} pxelinux machines loading the `{PROFILE}` profile "
                     f"({KERNEL_MIB + INITRD_MIB} MiB each) would need ~{need:.0f} min (reported)")
    notes = os.path.join(HERE, "storm-notes.md")
    if os.path.exists(notes):
        lines += ["", open(notes).read().rstrip()]
    return lines


def matrix():
    """(server, kind, N) of every run, in order."""
    runs = [("dhcpd", kind, n) for kind in KINDS for n in SIZES]
    return runs + [("dnsmasq", "tftp", n) for n in SIZES]


def main():
    """Everything: set up, every run of the matrix, the report into OUT."""
    t0 = time.monotonic()
    times = up()
    fetch_dnsmasq_debs()
    dnsmasq(True)
    times["dnsmasq"] = guest("dnsmasq --version | head -1")[1].split(" version ")[-1].split()[0]
    dnsmasq(False)
    runs, dnsmasq_on = [], False
    for server, kind, n in matrix():
        if (server == "dnsmasq") != dnsmasq_on:
            dnsmasq_on = server == "dnsmasq"
            dnsmasq(dnsmasq_on)
        print(f"==> {server} {kind}: {n} machine{'s' if n > 1 else ''} at once", flush=True)
        run = storm(kind, n, server)
        f = figures(run)
        print(f"    {f['done']}/{n} done, last after {f['last']:.1f} s, lost {f['lost']}"
              + "".join(f", {p} {mib(f[p]):.1f} MiB/s" for p in ("tftp", "http") if p in f)
              + "".join(f"\n    failed: {w}" for w in f["failures"]), flush=True)
        runs.append(run)
    times["took"] = time.monotonic() - t0
    os.makedirs(os.path.dirname(os.path.abspath(OUT)), exist_ok=True)
    with open(os.path.splitext(OUT)[0] + ".json", "w") as f:
        json.dump({"times": times, "runs": runs}, f)
    write_report(times, runs)


def write_report(times, runs):
    lines = report(runs, times, times["took"])
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else "all"
    if cmd == "client":
        client(sys.argv[2], sys.argv[3])
    elif cmd == "up":
        up()
    elif cmd == "down":
        cleanup()
    elif cmd == "report":
        # The report again from the raw results of the last run (after editing storm-notes.md).
        with open(os.path.splitext(OUT)[0] + ".json") as f:
            saved = json.load(f)
        write_report(saved["times"], saved["runs"])
    elif cmd == "run":
        server = sys.argv[4] if len(sys.argv) > 4 else "dhcpd"
        if server == "dnsmasq":
            fetch_dnsmasq_debs()
            dnsmasq(True)
        try:
            result = storm(sys.argv[2], int(sys.argv[3]), server)
        finally:
            if server == "dnsmasq":
                dnsmasq(False)
        print(json.dumps(figures(result), indent=1))
    else:
        try:
            main()
        finally:
            cleanup()
