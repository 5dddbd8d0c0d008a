#!/usr/bin/python3
"""mkheadnode-nodes: what this headnode knows of each machine on its VLAN, as JSON.

For every machine of /etc/moc/machines.txt: its boot target (the profile each loader's link in
{{tftp_root}} points at, or none: it boots locally), its DHCP lease, the last boot loader and
files it fetched (tftpd's requests in the journal, nginx's access log), when it called
/boot-default/, and with --power its BMC's power state (mkheadnode-link --power-status).
--events adds the timeline those come from (DHCP, TFTP, HTTP, callback). The host's
`mkheadnode nodes` runs this through the guest agent and shows it.

Everything read here is hostile: a node chooses its DHCP client-hostname and vendor strings and
the file names and URLs it asks for. They are parsed strictly, kept as plain values and never
used to find other values; JSON encoding escapes them.
"""

import argparse
import datetime
import functools
import importlib.util
import ipaddress
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse

TFTP_ROOT = "{{tftp_root}}"
PXELINUX_CFG = "{{pxelinux_cfg}}"
UEFI_DIR = "{{uefi_dir}}"
EFI_DIR = "{{efi_dir}}"
BIOS_LOADER = "{{bios_loader}}"
UEFI_LOADER = "{{uefi_loader}}"
RESERVED = {{reserved_names_py}}
VERSION = 1
MAC = re.compile(r"\A[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")
PROFILE = re.compile(r"\A[A-Za-z0-9_-][A-Za-z0-9._-]*\Z")
# The most read from one log, from its end: enough for days of boots, bounded for the agent.
MAX_LOG_BYTES = 32 << 20
# The longest value from a log or lease kept whole (a hostname, a file name, a URL).
MAX_VALUE = 512
FETCHES_KEPT = 10


def clip(value):
    value = str(value)
    return value if len(value) <= MAX_VALUE else value[:MAX_VALUE] + "..."


def canon_mac(text):
    """`text` as aa:bb:cc:dd:ee:ff if it is a MAC (colons or dashes, any case), else None."""
    mac = str(text).strip().lower().replace("-", ":")
    return mac if MAC.match(mac) else None


def canon_ip(text):
    try:
        return str(ipaddress.IPv4Address(str(text)))
    except ValueError:
        return None


def read_tail(path, limit=MAX_LOG_BYTES):
    """The last `limit` bytes of a file as text (from the first whole line), or None."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read()
    except OSError:
        return None
    if size > limit:
        data = data.split(b"\n", 1)[-1]
    return data.decode("utf-8", errors="replace")


# --- machines.txt -----------------------------------------------------------------------------

def read_machines(path):
    """([{"mac", "bmc"}], [problems]) from a machines file; bad lines are problems."""
    machines, problems, seen = [], [], set()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        return [], [f"cannot read {path}: {e.strerror}"]
    for number, raw in enumerate(lines, 1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        mac = canon_mac(fields[0]) if len(fields) == 2 else None
        bmc = canon_ip(fields[1]) if len(fields) == 2 else None
        if mac is None or bmc is None:
            problems.append(f"{path} line {number}: expected `<mac> <bmc-ipv4>`")
        elif mac not in seen:
            seen.add(mac)
            machines.append({"mac": mac, "bmc": bmc})
    return machines, problems


# --- dhcpd.leases -----------------------------------------------------------------------------

@functools.cache
def lease_parser():
    """The dhcpd.leases parser, shared with the boot-default CGI: {{leases_module}}, root's like
    this file. Nothing is written beside it."""
    sys.dont_write_bytecode = True
    spec = importlib.util.spec_from_file_location("mkheadnode_leases", "{{leases_module}}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LEASE_LINE = re.compile(r"^lease ", re.M)


def parse_leases(text, problems):
    """Every lease of the tail of a dhcpd.leases file, the last entry for each address only (dhcpd
    appends a new entry when a lease changes), in file order; times in seconds, or None (for
    `never` too); the client's strings clipped. The tail may begin inside a block, so it is read
    from its first line that opens a lease (dhcpd writes no line break inside a string). A lease
    still being written at the end is left out; a problem before a later lease is added to
    `problems`, and the leases from it on are left out."""
    parser = lease_parser()
    first = LEASE_LINE.search(text)
    try:
        tree = parser.statements(text, first.start() if first else len(text))
    except parser.LeaseSyntax as e:
        tree = e.complete
        if LEASE_LINE.search(text, e.position + 1):
            problems.append(clip(f"dhcpd.leases: {e}; the leases from there on are left out"))

    def seconds(value):
        return value if isinstance(value, int) else None

    return [dict(record, starts=seconds(record["starts"]), ends=seconds(record["ends"]),
                 **{key: None if record[key] is None else clip(record[key])
                    for key in ("state", "hostname", "vendor_class")})
            for record in parser.leases(tree).values()]


def current_leases(leases):
    """The latest lease of each MAC (latest start; the later entry on a tie)."""
    out = {}
    for lease in leases:
        mac = lease["mac"]
        if mac is None:
            continue
        if mac not in out or (lease["starts"] or 0) >= (out[mac]["starts"] or 0):
            out[mac] = lease
    return out


# --- the journal: dhcpd and tftpd ---------------------------------------------------------------

DHCP_FROM = re.compile(
    r"\A(DHCPDISCOVER|DHCPREQUEST|DHCPDECLINE|DHCPRELEASE|DHCPINFORM|BOOTREQUEST)"
    r"(?: (?:for|of) ([0-9.]+)(?: \([0-9.]+\))?)? from ([0-9a-fA-F:]{17})(?:[ (]|\Z)")
DHCP_TO = re.compile(r"\A(DHCPOFFER|DHCPACK|DHCPNAK|BOOTREPLY) on ([0-9.]+) to ([0-9a-fA-F:]{17})(?:[ (]|\Z)")
TFTP_RRQ = re.compile(r"\ARRQ from ([0-9.]+) filename (.*)\Z", re.S)
IDENTIFIERS = ("dhcpd", "in.tftpd")


def journal_message(entry):
    message = entry.get("MESSAGE")
    if isinstance(message, list):  # not UTF-8: journalctl gives the bytes
        try:
            message = bytes(b & 0xff for b in message if isinstance(b, int)).decode("utf-8", "replace")
        except (TypeError, ValueError):
            return None
    return message if isinstance(message, str) else None


def journal_lines(path, lines):
    """The journal's dhcpd and tftpd entries as JSON lines: from `path` (an export of
    `journalctl -o json`) if given, else from journalctl."""
    if path:
        return read_tail(path) or ""
    cmd = ["journalctl", "-o", "json", "--no-pager", "-n", str(lines)]
    cmd += [f"SYSLOG_IDENTIFIER={ident}" for ident in IDENTIFIERS]
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return r.stdout[-MAX_LOG_BYTES:].decode("utf-8", errors="replace")


def journal_events(text):
    events = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
            when = int(entry["__REALTIME_TIMESTAMP"]) / 1e6
        except (ValueError, KeyError, TypeError):
            continue
        if not isinstance(entry, dict) or entry.get("SYSLOG_IDENTIFIER") not in IDENTIFIERS:
            continue
        message = journal_message(entry)
        if message is None:
            continue
        event = dhcp_event(when, message) or tftp_event(when, message)
        if event:
            events.append(event)
    return events


def event(when, kind, what, ip=None, mac=None, path=None, status=None):
    return {"time": when, "kind": kind, "what": what, "ip": ip, "mac": mac, "path": path,
            "status": status}


def dhcp_event(when, message):
    m = DHCP_TO.match(message)
    if m:
        kind, ip, mac = m.groups()
        what = f"{kind} on {ip}"
    else:
        m = DHCP_FROM.match(message)
        if not m:
            return None
        kind, ip, mac = m.groups()
        what = kind + (f" for {ip}" if ip else "")
    ip, mac = canon_ip(ip) if ip else None, canon_mac(mac)
    if mac is None:
        return None
    return event(when, "dhcp", what, ip=ip, mac=mac)


def tftp_event(when, message):
    m = TFTP_RRQ.match(message.rstrip("\n"))
    if not m or canon_ip(m.group(1)) is None:
        return None
    path = clip(m.group(2))
    return event(when, "tftp", "RRQ " + path, ip=canon_ip(m.group(1)), path=path)


# --- nginx's access log -------------------------------------------------------------------------

ACCESS = re.compile(
    r'\A(\S+) \S+ \S+ \[(\d{2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})\] '
    r'"((?:[^"\\]|\\.)*)" (\d{3}) ')
MONTHS = {m: i for i, m in enumerate(
    "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}
REQUEST = re.compile(r"\A([A-Z]+) (\S+)(?: HTTP/[0-9.]+)?\Z")


def access_time(groups):
    day, month, year, hh, mm, ss, sign, oh, om = groups
    try:
        local = datetime.datetime(int(year), MONTHS[month], int(day), int(hh), int(mm), int(ss))
    except (KeyError, ValueError):
        return None
    offset = datetime.timedelta(hours=int(oh), minutes=int(om)) * (1 if sign == "+" else -1)
    return (local - offset).replace(tzinfo=datetime.timezone.utc).timestamp()


def access_events(text):
    """Requests of nginx's access log (its default `combined` format, in which nginx writes
    quotes and control characters in a request as \\xHH)."""
    events = []
    for line in text.splitlines():
        m = ACCESS.match(line)
        if not m:
            continue
        ip, request, status = canon_ip(m.group(1)), m.group(11), int(m.group(12))
        when = access_time(m.groups()[1:10])
        r = REQUEST.match(request)
        if ip is None or when is None or not r:
            continue
        method, target = r.groups()
        split = urllib.parse.urlsplit(target)
        if split.path == "/boot-default/" or split.path == "/boot-default":
            macs = urllib.parse.parse_qs(split.query).get("mac", [])
            mac = canon_mac(macs[0]) if len(macs) == 1 else None
            events.append(event(when, "callback", f"{method} /boot-default/ -> {status}", ip=ip,
                                mac=mac, path=clip(target), status=status))
        else:
            path = clip(target)
            events.append(event(when, "http", f"{method} {path} -> {status}", ip=ip, path=path,
                                status=status))
    return events


# --- putting it together ------------------------------------------------------------------------

def attribute(events, leases):
    """Give each TFTP and HTTP request the MAC that held its address then: the latest DHCPACK
    (or lease start) for that address at or before the request."""
    held = {}
    for e in events:
        if e["kind"] == "dhcp" and e["what"].startswith(("DHCPACK", "BOOTREPLY")) and e["ip"]:
            held.setdefault(e["ip"], []).append((e["time"], e["mac"]))
    for lease in leases:
        if lease["mac"] and lease["starts"] is not None:
            held.setdefault(lease["ip"], []).append((lease["starts"], lease["mac"]))
    for e in events:
        if e["kind"] in ("tftp", "http") and e["mac"] is None and e["ip"] in held:
            before = [(t, mac) for t, mac in held[e["ip"]] if t <= e["time"] + 2]
            if before:
                e["mac"] = max(before, key=lambda x: x[0])[1]


def loader_of(e, mac):
    """Which loader a request fetched, if it is a boot loader: bios, uefi, uefi-http."""
    path = (e["path"] or "").lstrip("/")
    node = f"{UEFI_DIR}/01-{mac.replace(':', '-')}/{UEFI_LOADER}"
    if e["kind"] == "tftp" and path == BIOS_LOADER:
        return "bios"
    if path == node or path == f"{EFI_DIR}/{UEFI_LOADER}":
        return "uefi-http" if e["kind"] == "http" else "uefi"
    return None


def is_probe(e, mac):
    """pxelinux's search for its config: every name but the node's own and the default."""
    path = (e["path"] or "").lstrip("/")
    own = (f"{PXELINUX_CFG}/01-{mac.replace(':', '-')}", f"{PXELINUX_CFG}/default")
    return path.startswith(PXELINUX_CFG + "/") and path not in own


def boot_link(root, sub, mac, pattern):
    path = os.path.join(root, sub, "01-" + mac.replace(":", "-"))
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not os.path.islink(path):
        return {"profile": None, "target": None, "present": True, "since": st.st_mtime}
    target = os.readlink(path)
    m = re.fullmatch(pattern, target)
    profile = m.group(1) if m and PROFILE.match(m.group(1)) and m.group(1) not in RESERVED else None
    return {"profile": profile, "target": clip(target), "present": os.path.exists(path),
            "since": st.st_mtime}


def boot_target(root, mac):
    return {
        "bios": boot_link(root, PXELINUX_CFG, mac, r"\.\./([^/]+)/pxelinux\.cfg"),
        "uefi": boot_link(root, UEFI_DIR, mac, rf"\.\./{re.escape(EFI_DIR)}/profiles/([^/]+)"),
    }


def node_state(boot, mine):
    """armed (links, nothing fetched since), installing (fetched since armed), installed (no
    links, and a /boot-default/ call of its disarmed it), or local."""
    links = [b for b in boot.values() if b]
    if links:
        armed_at = min(b["since"] for b in links)
        fetched = any(e["kind"] in ("tftp", "http") and e["time"] >= armed_at for e in mine)
        return "installing" if fetched else "armed"
    calls = [e for e in mine if e["kind"] == "callback"]
    return "installed" if any(c["status"] == 200 for c in calls) else "local"


def node_report(machine, root, lease, events):
    mac = machine["mac"]
    mine = [e for e in events if e["mac"] == mac]
    boot = boot_target(root, mac)
    loaders = [(e, loader_of(e, mac)) for e in mine]
    loaders = [(e, name) for e, name in loaders if name]
    fetches = [e for e in mine if e["kind"] in ("tftp", "http") and not is_probe(e, mac)]
    calls = [e for e in mine if e["kind"] == "callback"]
    dhcp = [e for e in mine if e["kind"] == "dhcp"]
    return {
        "mac": mac,
        "bmc": machine["bmc"],
        "state": node_state(boot, mine),
        "boot": boot,
        "lease": lease,
        "last_dhcp": {"time": dhcp[-1]["time"], "what": dhcp[-1]["what"]} if dhcp else None,
        "last_loader": {"loader": loaders[-1][1], "time": loaders[-1][0]["time"],
                        "path": loaders[-1][0]["path"]} if loaders else None,
        "fetched": [{"time": e["time"], "via": e["kind"], "path": e["path"], "status": e["status"]}
                    for e in fetches[-FETCHES_KEPT:]],
        "boot_default": {"time": calls[-1]["time"], "status": calls[-1]["status"],
                         "from": calls[-1]["ip"]} if calls else None,
        "power": None,
    }


def published_profiles(root):
    """The profiles published under the TFTP root and the loaders each serves (as the link tool
    sees them)."""
    out = []
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return out
    for name in names:
        if not PROFILE.match(name) or name in RESERVED or not os.path.isdir(os.path.join(root, name)):
            continue
        loaders = []
        if os.path.isfile(os.path.join(root, name, "pxelinux.cfg")):
            loaders.append("bios")
        if os.path.isfile(os.path.join(root, name, "grub.cfg")) and os.path.isdir(
                os.path.join(root, EFI_DIR, "profiles", name)):
            loaders.append("uefi")
        if loaders:
            out.append({"name": name, "loaders": loaders})
    return out


POWER_LINE = re.compile(r"\A(ok|FAILED) +([0-9a-f:]{17}) \([0-9.]+\): (.*)\Z")


def power_states(a, macs):
    """Each machine's power state from `mkheadnode-link --power-status`: {mac: {"state"} or
    {"error"}}."""
    cmd = [a.link_tool, "--power-status", "--machines", a.machines, "--credentials",
           a.credentials, "--timeout", str(a.timeout)] + macs
    try:
        # The link tool asks up to 8 BMCs at once, each call bounded by the timeout.
        r = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                           timeout=a.timeout * (len(macs) // 8 + 3) + 30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {mac: {"state": None, "error": clip(f"mkheadnode-link --power-status: {e}")} for mac in macs}
    out = {}
    for line in r.stdout.splitlines():
        m = POWER_LINE.match(line)
        if m and m.group(1) == "ok":
            out[m.group(2)] = {"state": clip(m.group(3).removeprefix("power ")), "error": None}
        elif m:
            out[m.group(2)] = {"state": None, "error": clip(m.group(3))}
    problem = (r.stderr.strip().splitlines() or ["no answer"])[-1]
    for mac in macs:
        out.setdefault(mac, {"state": None, "error": clip(f"mkheadnode-link --power-status: {problem}")})
    return out


def report(a):
    machines, problems = read_machines(a.machines)
    out = {"version": VERSION, "time": time.time(), "problems": problems,
           "profiles": published_profiles(a.tftp_root), "nodes": [], "events": None}
    if a.brief:
        out["nodes"] = [dict(m) for m in machines]
        return out
    leases_text = read_tail(a.leases)
    if leases_text is None:
        problems.append(f"cannot read {a.leases}")
    leases = parse_leases(leases_text or "", problems)
    events = journal_events(journal_lines(a.journal, a.journal_lines))
    for log in a.access_log:
        events += access_events(read_tail(log) or "")
    events.sort(key=lambda e: e["time"])
    attribute(events, leases)
    current = current_leases(leases)
    out["nodes"] = [node_report(m, a.tftp_root, current.get(m["mac"]), events) for m in machines]
    if a.power:
        states = power_states(a, [m["mac"] for m in machines])
        for node in out["nodes"]:
            node["power"] = states.get(node["mac"])
    if a.events is not None:
        wanted = canon_mac(a.events) if a.events else None
        if a.events and wanted is None:
            raise SystemExit(f"mkheadnode-nodes: {a.events!r} is not a MAC address")
        chosen = [e for e in events if wanted is None or e["mac"] == wanted]
        out["events"] = chosen[-a.limit:]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="mkheadnode-nodes", description=__doc__.split("\n\n")[0])
    ap.add_argument("--brief", action="store_true", help="only the machines and the published profiles")
    ap.add_argument("--power", action="store_true", help="also ask each BMC for the power state")
    ap.add_argument("--events", nargs="?", const="", metavar="MAC", help="add the timeline (of one machine)")
    ap.add_argument("--limit", type=int, default=1000, help="the most events to print (the latest)")
    ap.add_argument("--machines", default="/etc/moc/machines.txt")
    ap.add_argument("--credentials", default="/etc/moc/bmc.conf")
    ap.add_argument("--tftp-root", default=TFTP_ROOT)
    ap.add_argument("--leases", default="/var/lib/dhcp/dhcpd.leases")
    ap.add_argument("--access-log", action="append",
                    help="nginx access log, oldest first (default: access.log.1, access.log)")
    ap.add_argument("--journal", help="read this export of `journalctl -o json` instead of the journal")
    ap.add_argument("--journal-lines", type=int, default=50000)
    ap.add_argument("--link-tool", default="/usr/local/sbin/mkheadnode-link")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per BMC call (--power)")
    a = ap.parse_args(argv)
    if a.access_log is None:
        a.access_log = ["/var/log/nginx/access.log.1", "/var/log/nginx/access.log"]
    a.limit = max(1, a.limit)
    json.dump(report(a), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
