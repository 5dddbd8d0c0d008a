#!/usr/bin/python3
"""mkheadnode's boot-default CGI, behind nginx + fcgiwrap.

An installer calls `GET /boot-default/?mac=aa:bb:cc:dd:ee:ff` when it has finished; this disarms
that node for both loaders, removing its `{{pxelinux_cfg}}/01-aa-bb-cc-dd-ee-ff` link (BIOS) and its
`{{uefi_dir}}/01-aa-bb-cc-dd-ee-ff` link (UEFI), so its next boot falls through to the local disk.
Answers, as the 2013 script did: `OK` (200), or 400 for a malformed MAC. Beyond it: 403 when the
caller does not hold that MAC's DHCP lease (unless MKHEADNODE_REQUIRE_LEASE=0) or an entry is not
a symlink, 404 when the MAC has no link. Every call is logged.
"""

import os
import re
import stat
import sys
import urllib.parse

MAC = re.compile(r"\A([0-9a-f]{2}-){5}[0-9a-f]{2}\Z")
# Where each loader looks for a node's install link, under the TFTP root.
LINK_DIRS = ("{{pxelinux_cfg}}", "{{uefi_dir}}")
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


def disarm(directory, name):
    """Remove the symlink `name` in `directory`: "removed", "absent", or "refused" when the entry
    is not a symlink (only links are ever removed)."""
    try:
        dirfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return "absent"
    try:
        try:
            st = os.lstat(name, dir_fd=dirfd)
        except FileNotFoundError:
            return "absent"
        if not stat.S_ISLNK(st.st_mode):
            return "refused"
        os.unlink(name, dir_fd=dirfd)
        return "removed"
    finally:
        os.close(dirfd)


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
    root = os.environ.get("MKHEADNODE_TFTP_ROOT", "{{tftp_root}}")
    removed, refused = [], []
    for sub in LINK_DIRS:
        outcome = disarm(os.path.join(root, sub), "01-" + mac)
        if outcome == "removed":
            removed.append(f"{sub}/01-{mac}")
        elif outcome == "refused":
            refused.append(f"{sub}/01-{mac}")
    if refused:
        log(remote, raw, f"403 not a symlink, left alone: {', '.join(refused)}; removed: {removed}")
        return reply(403, "not an install link; left alone")
    if not removed:
        log(remote, raw, "404 no link")
        return reply(404, "no install link for this MAC")
    log(remote, raw, f"200 removed {', '.join(removed)}")
    return reply(200, "OK")


if __name__ == "__main__":
    main()
