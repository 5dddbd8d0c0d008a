#!/usr/bin/python3
"""mkheadnode's boot-default CGI, behind nginx + fcgiwrap.

An installer calls `GET /boot-default/?mac=aa:bb:cc:dd:ee:ff` when it has finished; this disarms
that node for both loaders, removing its `{{pxelinux_cfg}}/01-aa-bb-cc-dd-ee-ff` link (BIOS) and its
`{{uefi_dir}}/01-aa-bb-cc-dd-ee-ff` link (UEFI), so its next boot falls through to the local disk.
Answers, as the 2013 script did: `OK` (200), or 400 for a malformed MAC. Beyond it: 403 when the
caller does not hold that MAC's DHCP lease (unless MKHEADNODE_REQUIRE_LEASE=0) or an entry is not
a symlink, 404 when the MAC has no link, 503 when the lease file cannot be read or parsed, 500
when disarming failed. Every call is logged.

The web server's user cannot write the link directories: the links are removed by
{{disarm_helper}}, which that user may run as root through sudo with one argument, a MAC
(/etc/sudoers.d/mkheadnode), and which removes that MAC's links and nothing else.

The caller holds the lease when the last `lease` block dhcpd wrote for the caller's address names
that MAC, its binding state is active, and it ends in the future (or never). dhcpd.leases is
parsed as dhcpd reads it, by the parser mkheadnode-nodes shares ({{leases_module}}), so text
that a client chose (a host name with braces, semicolons or quotes) stays inside its quoted
string and cannot make a lease of its own.
"""

import functools
import importlib.util
import ipaddress
import os
import re
import stat
import subprocess
import sys
import time
import urllib.parse

MAC = re.compile(r"\A([0-9a-f]{2}-){5}[0-9a-f]{2}\Z")
# Where each loader looks for a node's install link, under the TFTP root.
LINK_DIRS = ("{{pxelinux_cfg}}", "{{uefi_dir}}")
# The one program the web server's user may run as root (through sudo): it disarms one MAC.
DISARM = "{{disarm_helper}}"


def reply(status, text):
    reason = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
              500: "Internal Server Error", 503: "Service Unavailable"}[status]
    sys.stdout.write(f"Status: {status} {reason}\r\nContent-Type: text/plain\r\n\r\n{text}\n")


def log(remote, mac, outcome):
    print(f"mkheadnode boot-default: from {remote} mac={mac!r}: {outcome}", file=sys.stderr)


@functools.cache
def lease_parser():
    """The dhcpd.leases parser, shared with mkheadnode-nodes: {{leases_module}}, root's like this
    file. Loaded on first use (mkheadnode-disarm loads this file for disarm_links alone), and
    nothing is written beside it."""
    sys.dont_write_bytecode = True
    spec = importlib.util.spec_from_file_location("mkheadnode_leases", "{{leases_module}}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lease_table(text, now):
    """{address: (hardware address in a-b-c form or None, whether the lease is in force at `now`)}
    from each address's last top-level `lease` block of a dhcpd.leases text. Raises LeaseSyntax
    (a ValueError)."""
    parser = lease_parser()
    return {address: (record["mac"] and record["mac"].replace(":", "-"), parser.in_force(record, now))
            for address, record in parser.leases(parser.statements(text)).items()}


def current_leases(path, now):
    """lease_table() of the lease file at `path`, read a second time shortly after a read that does
    not parse, in case dhcpd was half-way through appending a lease. Raises OSError or
    LeaseSyntax."""

    def read():
        with open(path, encoding="latin-1") as f:
            return f.read()

    syntax = lease_parser().LeaseSyntax
    try:
        return lease_table(read(), now)
    except syntax:
        time.sleep(0.2)
        return lease_table(read(), now)


def holds_lease(table, remote, mac):
    """Whether the caller at address `remote` holds a lease in force for `mac` (a-b-c form), by a
    table from lease_table()."""
    try:
        remote = str(ipaddress.IPv4Address(remote))
    except ValueError:
        return False
    return table.get(remote) == (mac, True)


# What disarming came to, as mkheadnode-disarm's exit status.
REMOVED, NO_LINK, NOT_A_LINK = 0, 3, 4


def disarm_links(root, mac):
    """Remove `mac`'s install links (`01-<mac>`, `mac` in a-b-c form) from each loader's directory
    under the TFTP root `root`: ([removed], [refused]), as paths under the root. Only symbolic
    links are removed (an entry of any other kind is refused and left alone), and the root and
    each directory are opened without following a link. Shared with mkheadnode-disarm."""
    if not MAC.match(mac):
        raise ValueError(f"not a MAC in aa-bb-cc-dd-ee-ff form: {mac!r}")
    name = "01-" + mac
    removed, refused = [], []
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    rootfd = os.open(root, flags)
    try:
        for sub in LINK_DIRS:
            try:
                dirfd = os.open(sub, flags, dir_fd=rootfd)
            except FileNotFoundError:
                continue
            try:
                try:
                    st = os.lstat(name, dir_fd=dirfd)
                except FileNotFoundError:
                    continue
                if stat.S_ISLNK(st.st_mode):
                    os.unlink(name, dir_fd=dirfd)
                    removed.append(f"{sub}/{name}")
                else:
                    refused.append(f"{sub}/{name}")
            finally:
                os.close(dirfd)
    finally:
        os.close(rootfd)
    return removed, refused


def outcome(removed, refused):
    """(mkheadnode-disarm's exit status, what to log) for what disarm_links() did."""
    if refused:
        return NOT_A_LINK, f"not a symlink, left alone: {', '.join(refused)}; removed: {', '.join(removed) or 'nothing'}"
    if not removed:
        return NO_LINK, "no link"
    return REMOVED, f"removed {', '.join(removed)}"


def disarm(mac):
    """Disarm `mac`: (mkheadnode-disarm's exit status, what to log). The web server's user may not
    write the link directories: it asks mkheadnode-disarm through sudo, the one thing it may do as
    root. Run as root (by hand, or by a test), this removes the links itself."""
    if os.geteuid() == 0:
        try:
            return outcome(*disarm_links(os.environ.get("MKHEADNODE_TFTP_ROOT", "{{tftp_root}}"), mac))
        except OSError as e:
            return 1, str(e)
    try:
        r = subprocess.run(["/usr/bin/sudo", "-n", DISARM, mac], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return 1, f"sudo {DISARM}: {e}"
    return r.returncode, " ".join((r.stdout + r.stderr).split())


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
        path = os.environ.get("MKHEADNODE_LEASES", "/var/lib/dhcp/dhcpd.leases")
        try:
            table = current_leases(path, time.time())
        except (OSError, ValueError) as e:  # ValueError: LeaseSyntax
            log(remote, raw, f"503 cannot check the lease: {path}: {e}")
            return reply(503, "cannot check the DHCP leases now; try again")
        if not holds_lease(table, remote, mac):
            log(remote, raw, "403 caller does not hold this MAC's lease")
            return reply(403, "only the node holding this MAC's DHCP lease may reset it")
    status, said = disarm(mac)
    if status == REMOVED:
        log(remote, raw, f"200 {said}")
        return reply(200, "OK")
    if status == NO_LINK:
        log(remote, raw, f"404 {said}")
        return reply(404, "no install link for this MAC")
    if status == NOT_A_LINK:
        log(remote, raw, f"403 {said}")
        return reply(403, "not an install link; left alone")
    log(remote, raw, f"500 disarming failed (exit {status}): {said}")
    return reply(500, "could not disarm; see the web server's error log")


if __name__ == "__main__":
    main()
