#!/usr/bin/python3
"""mkheadnode's boot-default CGI, behind nginx + fcgiwrap.

An installer calls `GET /boot-default/?mac=aa:bb:cc:dd:ee:ff` when it has finished; this removes
that node's `pxelinux.cfg/01-aa-bb-cc-dd-ee-ff` link so its next boot falls through to the local
disk. Answers, as the 2013 script did: `OK` (200), or 400 for a malformed MAC. Beyond it:
403 when the caller does not hold that MAC's DHCP lease (unless MKHEADNODE_REQUIRE_LEASE=0) or
the entry is not a symlink, 404 when there is no link for the MAC. Every call is logged.
"""

import os
import re
import stat
import sys
import urllib.parse

MAC = re.compile(r"\A([0-9a-f]{2}-){5}[0-9a-f]{2}\Z")
LEASE = re.compile(r"lease\s+([0-9.]+)\s*\{(.*?)\}", re.S)


def reply(status, text):
    reason = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed"}[status]
    sys.stdout.write(f"Status: {status} {reason}\r\nContent-Type: text/plain\r\n\r\n{text}\n")


def log(remote, mac, outcome):
    print(f"mkheadnode boot-default: from {remote} mac={mac!r}: {outcome}", file=sys.stderr)


def lease_holders(path, mac):
    """Addresses whose latest lease in dhcpd.leases is active and belongs to `mac` (a-b-c form)."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return set()
    latest = {}
    for ip, body in LEASE.findall(text):
        hw = re.search(r"hardware\s+ethernet\s+([0-9a-fA-F:]+)\s*;", body)
        state = re.search(r"(?<!next )(?<!rewind )binding\s+state\s+(\w+)\s*;", body)
        active = state is None or state.group(1) == "active"
        latest[ip] = (hw.group(1).lower().replace(":", "-") if hw else None, active)
    return {ip for ip, (hw, active) in latest.items() if hw == mac and active}


def main():
    remote = os.environ.get("REMOTE_ADDR", "?")
    if os.environ.get("REQUEST_METHOD", "GET") not in ("GET", "POST"):
        log(remote, None, "405 method")
        return reply(405, "use GET")
    values = urllib.parse.parse_qs(os.environ.get("QUERY_STRING", ""), keep_blank_values=True).get("mac", [])
    if len(values) != 1:
        log(remote, values, "400 no single mac parameter")
        return reply(400, "give exactly one mac=aa:bb:cc:dd:ee:ff")
    raw = values[0]
    mac = raw.strip().lower().replace(":", "-")
    if not MAC.match(mac):
        log(remote, raw, "400 malformed MAC")
        return reply(400, "malformed MAC address")
    if os.environ.get("MKHEADNODE_REQUIRE_LEASE", "1") != "0":
        leases = os.environ.get("MKHEADNODE_LEASES", "/var/lib/dhcp/dhcpd.leases")
        if remote not in lease_holders(leases, mac):
            log(remote, raw, "403 caller does not hold this MAC's lease")
            return reply(403, "only the node holding this MAC's DHCP lease may reset it")
    cfg = os.path.join(os.environ.get("MKHEADNODE_TFTP_ROOT", "/var/lib/tftpboot"), "pxelinux.cfg")
    name = "01-" + mac
    try:
        dirfd = os.open(cfg, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        log(remote, raw, f"404 no pxelinux.cfg ({e.strerror})")
        return reply(404, "no pxelinux.cfg directory")
    try:
        try:
            st = os.lstat(name, dir_fd=dirfd)
        except FileNotFoundError:
            log(remote, raw, "404 no link")
            return reply(404, "no install link for this MAC")
        if not stat.S_ISLNK(st.st_mode):
            log(remote, raw, "403 not a symlink, left alone")
            return reply(403, "not an install link; left alone")
        os.unlink(name, dir_fd=dirfd)
        log(remote, raw, f"200 removed pxelinux.cfg/{name}")
        return reply(200, "OK")
    finally:
        os.close(dirfd)


if __name__ == "__main__":
    main()
