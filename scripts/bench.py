#!/usr/bin/env python3
"""`make bench`: mkheadnode against virt-install and against libvirt itself, on this machine's
libvirtd, with the same base image, NICs, 9p share and seed content. Writes BENCHMARKS.md.

Every figure is the median of BENCH_RUNS runs (default 5). The floor is `virsh define` +
`virsh start` of the very XML mkheadnode generated, with its volumes already there; a tool's
own overhead is its wall time minus the floor. Guests run under TCG with 256 MiB and an empty
disk: what is measured is the host side, not a boot (the smoke test times boots).
"""
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

RUNS = int(os.environ.get("BENCH_RUNS", "7"))
READY_RUNS = int(os.environ.get("BENCH_READY_RUNS", "5"))
# Every domain runs this long before its timed teardown, so all three stop qemu at the same age.
SETTLE = 1.0
# The VLAN of the headnodes booted for real (ready time).
READY_VLAN = 3999
# The VLANs of the headnodes booted at once for their idle memory, and how long they idle first.
MEM_VLANS = range(3101, 3111)
MEM_SETTLE = int(os.environ.get("BENCH_MEM_SETTLE", "60"))
KSM_SECONDS = int(os.environ.get("BENCH_KSM_SECONDS", "120"))
IMAGE = os.environ.get("IMAGE", "/var/lib/mkheadnode/base/debian-12-headnode.qcow2")
BIN = os.path.abspath(os.environ.get("BIN", "target/release/mkheadnode"))
ROOT = "/var/lib/mkheadnode-bench"
# Where a failed run leaves its consoles.
FAILED_LOGS = "/var/tmp/mkheadnode-bench-failed-logs"
POOL = "mkheadnode-bench"
VNET, PNET = "bench-vlan", "bench-public"
URI = "qemu:///system"
OUT = os.environ.get("BENCH_OUT", "BENCHMARKS.md")


def sh(*args, check=True):
    r = subprocess.run(args, capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit(f"bench: {' '.join(args)} failed:\n{r.stdout}{r.stderr}")
    return r


def timed(*cmds):
    """Wall time of running the commands one after another."""
    t = time.perf_counter()
    for c in cmds:
        sh(*c)
    return time.perf_counter() - t


def virsh(*a, check=True):
    return sh("virsh", "-c", URI, *a, check=check)


FLAGS = [
    "--connect", URI, "--virt-type", "qemu", "--memory", "256", "--vcpus", "1", "-q",
    "--base-image", f"{ROOT}/base.qcow2", "--pool", POOL, "--pool-dir", f"{ROOT}/pool",
    "--config-root", f"{ROOT}/cfg", "--apparmor-abstraction", f"{ROOT}/libvirt-qemu",
    "--lock-dir", f"{ROOT}/lock", "--log-dir", f"{ROOT}/log",
    "--vlan-network", VNET, "--public-network", PNET,
]


def mk(*args):
    return (BIN, *args, *FLAGS)


def cleanup():
    # Only the domains of the VLANs it uses (3000-3110, READY_VLAN): other runs on this host
    # (`make bench-storm`'s VLAN 3990) keep theirs.
    ours = {f"{p}-{v}" for p in ("headnode", "vi") for v in [*range(3000, 3101), *MEM_VLANS, READY_VLAN]}
    for line in virsh("list", "--all", "--name", check=False).stdout.split():
        if line in ours:
            virsh("destroy", line, check=False)
            virsh("undefine", line, "--nvram", check=False)
    remove_pool(POOL, (VNET, PNET), ROOT)


def remove_pool(pool, networks, root):
    """Remove a pool with its volumes, libvirt networks and a directory, whatever is left of them."""
    for vol in virsh("vol-list", pool, check=False).stdout.splitlines()[2:]:
        if vol.split():
            virsh("vol-delete", vol.split()[0], "--pool", pool, check=False)
    virsh("pool-destroy", pool, check=False)
    virsh("pool-undefine", pool, check=False)
    for n in networks:
        virsh("net-destroy", n, check=False)
        virsh("net-undefine", n, check=False)
    shutil.rmtree(root, ignore_errors=True)


def setup(macs):
    cleanup()
    for d in ("", "cfg", "pool", "log", "seed"):
        os.makedirs(f"{ROOT}/{d}", exist_ok=True)
        os.chmod(f"{ROOT}/{d}", 0o755)
    sh("qemu-img", "create", "-q", "-f", "qcow2", f"{ROOT}/base.qcow2", "1G")
    os.chmod(f"{ROOT}/base.qcow2", 0o644)
    with open(f"{ROOT}/libvirt-qemu", "w") as f:
        f.write("  /usr/share/qemu/** r,\n")
    # Both isolated; the public one hands out addresses, as the guest's eth1 waits for one. The
    # booted headnode's address is reserved, as an operator's DHCP server would have it: for an
    # address it hands out for the first time, dnsmasq first pings it and waits 3 s.
    nets = {
        VNET: "",
        PNET: "<ip address='172.31.253.1' prefix='24'><dhcp><range start='172.31.253.100' end='172.31.253.200'/>"
        f"<host mac='{macs[READY_VLAN][1]}' ip='172.31.253.10'/></dhcp></ip>",
    }
    for n, ip in nets.items():
        with open(f"{ROOT}/{n}.xml", "w") as f:
            f.write(f"<network><name>{n}</name><bridge stp='off'/>{ip}</network>")
        virsh("net-define", f"{ROOT}/{n}.xml")
        virsh("net-start", n)


def dry_run(spec, flags=None):
    """What mkheadnode would make for the VLANs of `spec`: domain XML and seed files."""
    return sh(BIN, "--dry-run", spec, *(FLAGS if flags is None else flags)).stdout


def seed_files(vlan):
    """The seed files mkheadnode would write, from its --dry-run output."""
    out = dry_run(str(vlan))
    files = {}
    for name in ("user-data", "meta-data", "network-config"):
        marker = f"# headnode-{vlan}: seed file {name}\n"
        text = out.split(marker, 1)[1]
        text = text.split("\n# headnode-", 1)[0].split("\n<!-- ", 1)[0]
        path = f"{ROOT}/seed/{name}"
        with open(path, "w") as f:
            f.write(text)
        files[name] = path
    return files


def macs_of(spec, flags=None):
    """{vlan: (private MAC, public MAC)} as mkheadnode gives them, from the metadata of the
    domains its --dry-run prints: virt-install's guests and the reserved address get the same."""
    ns = {"m": "urn:x-mkheadnode:headnode:1"}
    out, found = dry_run(spec, flags), {}
    while "<domain" in out:
        start = out.index("<domain")
        end = out.index("</domain>", start) + len("</domain>")
        meta = ET.fromstring(out[start:end]).find("metadata/m:headnode", ns)
        vlan = int(meta.findtext("m:vlan", namespaces=ns))
        found[vlan] = (meta.findtext("m:private-mac", namespaces=ns), meta.findtext("m:public-mac", namespaces=ns))
        out = out[end:]
    return found


def virt_install(vlan, seed, macs):
    name = f"vi-{vlan}"
    os.makedirs(f"{ROOT}/cfg/{vlan}", exist_ok=True)
    return (
        "virt-install", "--connect", URI, "--name", name, "--memory", "256", "--vcpus", "1",
        "--virt-type", "qemu", "--import", "--osinfo", "detect=on,require=off",
        "--disk", f"size=10,backing_store={ROOT}/base.qcow2,backing_format=qcow2,pool={POOL},format=qcow2",
        "--network", f"network={VNET},mac={macs[vlan][0]},model=virtio",
        "--network", f"network={PNET},mac={macs[vlan][1]},model=virtio",
        "--filesystem", f"source.dir={ROOT}/cfg/{vlan},target.dir=/etc/moc,accessmode=mapped,readonly=on",
        "--cloud-init", f"user-data={seed['user-data']},meta-data={seed['meta-data']},network-config={seed['network-config']}",
        "--graphics", "none", "--noautoconsole", "--wait", "0",
    )


def without(flags, *names):
    """`flags` without the named options and their values."""
    out, skip = [], False
    for x in flags:
        if skip:
            skip = False
        elif x in names:
            skip = True
        else:
            out.append(x)
    return out


def kib(pid, field, name="status"):
    """A `Field:  N kB` line of /proc/PID/status or smaps_rollup, in KiB."""
    for line in open(f"/proc/{pid}/{name}"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def mem_available():
    return next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemAvailable:"))


def idle_memory(boot_flags):
    """MEM_COUNT headnodes booted at once with the tool's defaults, ready, their boots ended, then
    idle for MEM_SETTLE s: each qemu's RSS and PSS, and what the host lost of MemAvailable per headnode."""
    spec = f"{MEM_VLANS[0]}-{MEM_VLANS[-1]}"
    print(f"==> memory: {len(MEM_VLANS)} headnodes ready at once, then idle {MEM_SETTLE} s", flush=True)
    sh("sync")
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("1")
    before = mem_available()
    t = time.perf_counter()
    sh(BIN, spec, "--wait", "--timeout", "1800", *boot_flags)
    all_ready = time.perf_counter() - t
    # Ready is the PXE stack serving, which images made for mkheadnode reach before cloud-init
    # has even started: a headnode is idle once its boot has ended, when cloud-init's final stage
    # prints its message (after the boot's page cache is given back).
    pending = set(MEM_VLANS)
    while pending and time.perf_counter() - t < 1800:
        for v in list(pending):
            with open(f"{ROOT}/log/headnode-{v}-serial.log", errors="replace") as log:
                if f"mkheadnode: headnode-{v} ready after" in log.read():
                    pending.discard(v)
        time.sleep(1)
    if pending:
        sys.exit(f"bench: the boots of {sorted(pending)} did not end within 1800 s")
    all_booted = time.perf_counter() - t
    time.sleep(MEM_SETTLE)
    rss, pss = [], []
    for v in MEM_VLANS:
        pid = open(f"/run/libvirt/qemu/headnode-{v}.pid").read().strip()
        rss.append(kib(pid, "VmRSS") / 1024)
        pss.append(kib(pid, "Pss", "smaps_rollup") / 1024)
    host = (before - mem_available()) / 1024 / len(MEM_VLANS)
    ksm = ksm_saving(before)
    sh(BIN, "teardown", spec, *boot_flags)
    return {"rss": rss, "pss": pss, "host": host, "all_ready": all_ready, "all_booted": all_booted, "ksm": ksm}


KSM = "/sys/kernel/mm/ksm"


def ksm_saving(before):
    """With KSM scanning for KSM_SECONDS (if the kernel has it and it is off): MiB shared per
    headnode, and the host's MemAvailable lost per headnode then. The settings are put back."""
    if not os.path.exists(f"{KSM}/run") or open(f"{KSM}/run").read().strip() != "0":
        return None
    saved = {k: open(f"{KSM}/{k}").read().strip() for k in ("pages_to_scan", "sleep_millisecs")}
    put = lambda k, v: open(f"{KSM}/{k}", "w").write(v)
    try:
        put("pages_to_scan", "5000")
        put("sleep_millisecs", "20")
        put("run", "1")
        time.sleep(KSM_SECONDS)
        sharing = int(open(f"{KSM}/pages_sharing").read()) * 4 / 1024 / len(MEM_VLANS)
        host = (before - mem_available()) / 1024 / len(MEM_VLANS)
    finally:
        put("run", "2")  # unmerge everything, then off as it was
        put("run", "0")
        for k, v in saved.items():
            put(k, v)
    return {"sharing": sharing, "host": host}


def sized(flags):
    """Guest RAM, vCPUs and TCG translation cache of the domain mkheadnode makes with `flags`."""
    out = sh(BIN, "--dry-run", str(READY_VLAN), *flags).stdout
    dom = ET.fromstring(out[out.index("<domain"):out.index("</domain>") + len("</domain>")])
    tb = dom.findtext("features/tcg/tb-cache") or "qemu's default"
    return f"{dom.findtext('memory')} MiB guest RAM, {dom.findtext('vcpu')} vCPUs, {tb} MiB translation cache"


def med(xs):
    return statistics.median(xs)


def main():
    if os.geteuid() != 0:
        sys.exit("bench: run as root (make bench)")
    macs = macs_of(f"3000-3010,{READY_VLAN}")
    setup(macs)
    seed = seed_files(3000)
    r = {k: [] for k in ("ours", "floor", "vi", "ours_td", "floor_td", "vi_td")}
    for i in range(RUNS):
        print(f"==> run {i + 1}/{RUNS}: single headnode", flush=True)
        r["ours"].append(timed(mk("3000")))
        time.sleep(SETTLE)
        r["ours_td"].append(timed(mk("teardown", "3000")))
        # The floor: the same XML, volumes made by mkheadnode, defined and started by virsh.
        sh(*mk("3000", "--no-start"))
        virsh("dumpxml", "headnode-3000")
        xml = virsh("dumpxml", "--inactive", "headnode-3000").stdout
        with open(f"{ROOT}/floor.xml", "w") as f:
            f.write(xml)
        virsh("undefine", "headnode-3000")
        r["floor"].append(timed(("virsh", "-c", URI, "define", f"{ROOT}/floor.xml"), ("virsh", "-c", URI, "start", "headnode-3000")))
        time.sleep(SETTLE)
        r["floor_td"].append(timed(("virsh", "-c", URI, "destroy", "headnode-3000"), ("virsh", "-c", URI, "undefine", "headnode-3000")))
        for v in ("headnode-3000.qcow2", "headnode-3000-seed.iso"):
            virsh("vol-delete", v, "--pool", POOL, check=False)
        r["vi"].append(timed(virt_install(3000, seed, macs)))
        time.sleep(SETTLE)
        r["vi_td"].append(timed(("virsh", "-c", URI, "destroy", "vi-3000"), ("virsh", "-c", URI, "undefine", "vi-3000", "--remove-all-storage")))

    print("==> bulk", flush=True)
    bulk = []
    for n, extra in ((1, ()), (10, ()), (10, ("--no-start",)), (100, ("--no-start",))):
        spec = "3001" if n == 1 else f"3001-{3000 + n}"
        c, t = [], []
        for _ in range(max(1, RUNS // 2)):
            c.append(timed(mk(spec, *extra)))
            t.append(timed(mk("teardown", spec)))
        bulk.append((n, med(c), med(t), "defined only" if extra else "started"))
    defined = {n: c / n for n, c, _, how in bulk if how == "defined only"}
    vi_loop = []
    for _ in range(max(1, RUNS // 2)):
        cmds = [virt_install(v, seed, macs) for v in range(3001, 3011)]
        vi_loop.append(timed(*cmds))
        for v in range(3001, 3011):
            virsh("destroy", f"vi-{v}", check=False)
            virsh("undefine", f"vi-{v}", "--remove-all-storage", check=False)

    print("==> memory and disk", flush=True)
    rss = sh("/usr/bin/time", "-f", "%M", *mk("3000"), check=True).stderr.strip().splitlines()[-1]
    disk = sum(os.path.getsize(f"{ROOT}/pool/{v}") for v in ("headnode-3000.qcow2", "headnode-3000-seed.iso"))
    alloc = sum(os.stat(f"{ROOT}/pool/{v}").st_blocks * 512 for v in ("headnode-3000.qcow2", "headnode-3000-seed.iso"))
    sh(*mk("teardown", "3000"))
    rss100 = sh("/usr/bin/time", "-f", "%M", *mk("3001-3100", "--no-start")).stderr.strip().splitlines()[-1]
    sh(*mk("teardown", "3001-3100"))

    print(f"==> ready: {READY_RUNS} real boots of {IMAGE} (TCG)", flush=True)
    ready, booted_disk = [], []
    # Booted headnodes get the tool's defaults for memory, vCPUs and the TCG translation cache.
    boot_flags = without([x if x != f"{ROOT}/base.qcow2" else IMAGE for x in FLAGS], "--memory", "--vcpus")
    for i in range(READY_RUNS):
        t = time.perf_counter()
        sh(BIN, str(READY_VLAN), "--wait", "--timeout", "600", *boot_flags)
        ready.append(time.perf_counter() - t)
        booted_disk.append(sum(os.stat(f"{ROOT}/pool/{v}").st_blocks * 512 for v in (f"headnode-{READY_VLAN}.qcow2", f"headnode-{READY_VLAN}-seed.iso")))
        sh(BIN, "teardown", str(READY_VLAN), *boot_flags)
        print(f"    boot {i + 1}: ready after {ready[-1]:.1f} s", flush=True)
    idle = idle_memory(boot_flags)
    tcg_defaults = sized(boot_flags)
    cleanup()

    floor, ours, vi = med(r["floor"]), med(r["ours"]), med(r["vi"])
    o_over, vi_over = ours - floor, vi - floor
    ftd, otd = med(r["floor_td"]), med(r["ours_td"])
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
    ver = lambda *c: sh(*c, check=False).stdout.strip().splitlines()[0] if sh(*c, check=False).stdout.strip() else "?"
    ok = lambda b: "met" if b else "**missed**"
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` ({time.strftime('%Y-%m-%d')}); medians of {RUNS} runs (bulk: {max(1, RUNS // 2)}).",
        "",
        f"- machine: {os.cpu_count()} cores ({cpu}), {int(mem) // 1024 // 1024} GiB, {platform.platform()}",
        f"- {ver('virsh', '--version')} (libvirt), {ver('qemu-system-x86_64', '--version')}",
        f"- virt-install {ver('virt-install', '--version')}, {ver(BIN, '--version')}",
        "- guests: TCG, 256 MiB, 1 vCPU, two NICs on isolated networks, a qcow2 overlay on the same",
        "  1 GiB base, the same read-only mapped 9p share and the same seed content",
        "",
        "## One headnode (seconds)",
        "",
        "| | ours | virt-install | floor (virsh define + start) |",
        "|---|---|---|---|",
        f"| create, no waiting | {ours:.3f} | {vi:.3f} | {floor:.3f} |",
        f"| overhead above the floor | {o_over:.3f} | {vi_over:.3f} | — |",
        f"| teardown of a running headnode, {SETTLE:.0f} s after its start | {otd:.3f} | {med(r['vi_td']):.3f} | {ftd:.3f} |",
        "",
        "Teardown: ours is `mkheadnode teardown` (domain and both volumes); virt-install's is",
        "`virsh destroy` + `virsh undefine --remove-all-storage`; the floor `virsh destroy` + `virsh undefine`.",
        "",
        "## Bulk, one invocation (seconds)",
        "",
        "| VLANs | create | per VLAN | teardown | per VLAN | |",
        "|---|---|---|---|---|---|",
    ]
    for n, c, t, how in bulk:
        lines.append(f"| {n} | {c:.3f} | {c / n:.3f} | {t:.3f} | {t / n:.3f} | {how} |")
    lines += [
        f"| 10 × virt-install (loop) | {med(vi_loop):.3f} | {med(vi_loop) / 10:.3f} | | | started |",
        "",
        "## Resources",
        "",
        f"- peak RSS of `mkheadnode` creating one headnode: {int(rss) / 1024:.1f} MiB; defining 100: {int(rss100) / 1024:.1f} MiB",
        f"- on disk per headnode before boot: {disk / 1024:.0f} KiB apparent, {alloc / 1024:.0f} KiB allocated (overlay + seed)",
        f"- on disk per headnode after its first boot (test image): {med(booted_disk) / 1024 / 1024:.1f} MiB allocated (overlay + seed)",
        "",
        "## Ready: `mkheadnode --wait` until the PXE stack serves (seconds)",
        "",
        f"Real boots of the test image under TCG with the tool's defaults ({tcg_defaults}); median of {READY_RUNS}: **{med(ready):.1f}** "
        f"(all: {', '.join(f'{x:.1f}' for x in ready)}).",
        "",
        f"## Memory: {len(MEM_VLANS)} headnodes ready at once, their boots ended, idle {MEM_SETTLE} s (MiB)",
        "",
        f"The tool's defaults (TCG: {tcg_defaults}); all {len(MEM_VLANS)} ready after {idle['all_ready']:.0f} s, "
        f"their boots ended (cloud-init's final stage) after {idle['all_booted']:.0f} s.",
        "",
        "| per headnode | average | min | max |",
        "|---|---|---|---|",
        f"| qemu RSS | {statistics.mean(idle['rss']):.0f} | {min(idle['rss']):.0f} | {max(idle['rss']):.0f} |",
        f"| qemu PSS (shared pages split) | {statistics.mean(idle['pss']):.0f} | {min(idle['pss']):.0f} | {max(idle['pss']):.0f} |",
        f"| host MemAvailable lost | {idle['host']:.0f} | | |",
        "",
        (f"With KSM on for {KSM_SECONDS} s (`mkheadnode check` says whether it is): "
         f"{idle['ksm']['sharing']:.0f} MiB per headnode merged with its neighbours'; host "
         f"MemAvailable lost per headnode {idle['ksm']['host']:.0f} MiB." if idle["ksm"] else
         "KSM was not measured (this kernel has none, or it was already on)."),
        "",
        f"At that cost this {int(mem) // 1024 // 1024} GiB machine holds about "
        f"**{int(int(mem) / 1024 / max(idle['host'], 1))}** idle ready headnodes (by RSS: "
        f"{int(int(mem) / 1024 / statistics.mean(idle['rss']))}); each can grow to its guest RAM "
        "plus the translation cache while it installs.",
        "",
        "## Targets",
        "",
        f"- overhead above the floor at most 1/5 of virt-install's: {o_over:.3f} s vs {vi_over / 5:.3f} s allowed: {ok(o_over <= vi_over / 5)}",
        f"- teardown within 10% of virsh destroy + undefine: {otd:.3f} s vs {ftd * 1.1:.3f} s: {ok(otd <= ftd * 1.1)}",
        f"- 100 VLANs defined in one call under 2 s: {defined[100] * 100:.3f} s: {ok(defined[100] * 100 < 2)}",
        f"- per-VLAN cost flat from 10 to 100 (defined only): {defined[10] * 1000:.1f} ms vs {defined[100] * 1000:.1f} ms per VLAN: "
        f"{ok(defined[100] <= defined[10] * 1.2)} (no more than 20% up)",
        f"- ready in at most 25 s under TCG: {med(ready):.1f} s: {ok(med(ready) <= 25)}",
        f"- at most 256 MiB RSS per idle ready headnode on average, over {len(MEM_VLANS)}: "
        f"{statistics.mean(idle['rss']):.0f} MiB: {ok(statistics.mean(idle['rss']) <= 256)}",
    ]
    notes = os.environ.get("BENCH_NOTES")
    if notes and os.path.exists(notes):
        lines += ["", open(notes).read().rstrip()]
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def keep_logs():
    """A failed run's consoles, kept for a post-mortem: the cleanup removes ROOT with them."""
    shutil.rmtree(FAILED_LOGS, ignore_errors=True)
    if os.path.isdir(f"{ROOT}/log"):
        shutil.copytree(f"{ROOT}/log", FAILED_LOGS)
        print(f"bench: failed; its headnodes' consoles are kept in {FAILED_LOGS}", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        keep_logs()
        raise
    finally:
        cleanup()
