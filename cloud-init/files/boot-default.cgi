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
parsed as dhcpd reads it, so text that a client chose (a host name with braces, semicolons or
quotes) stays inside its quoted string and cannot make a lease of its own.
"""

import calendar
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


class LeaseSyntax(ValueError):
    """dhcpd.leases does not parse (for one, dhcpd is half-way through writing a lease)."""


# dhcpd.leases as dhcpd's own reader sees it (dhcpd.leases(5), dhcpd's conflex.c): white space;
# `#` comments to the end of the line; strings in double quotes, where a backslash escapes the
# next character (dhcpd writes `\"`, `\\` and octal `\ooo` there), and which hold client-supplied
# text such as client-hostname, braces, semicolons and `#` included; punctuation; and words
# (addresses, dates, keywords) of anything else. ASCII white space only, as dhcpd's.
TOKEN = re.compile(r"""\s+|\#[^\n]*|(?P<string>"(?:[^"\\]|\\.)*")|(?P<punct>[{};])|(?P<word>[^\s{};"\#\\]+)""",
                   re.S | re.A)
NUMBER = re.compile(r"[0-9]+\Z")


def statements(text):
    """The statements of a dhcpd.leases: a list of (words, body), where words are the statement's
    tokens before its `;` or `{` (a string keeps its quotes, so it never equals a keyword), and
    body is the list of statements in its `{ ... }` block, or None. Raises LeaseSyntax."""
    top = []
    blocks, words = [top], [[]]  # the open blocks, innermost last, and each one's unfinished statement
    pos = 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if m is None:
            raise LeaseSyntax(f"unexpected {text[pos]!r} at line {text.count(chr(10), 0, pos) + 1}")
        token, pos = m.group(), m.end()
        if m.group("punct") is None:
            if m.group("word") is not None or m.group("string") is not None:
                words[-1].append(token)
        elif token == ";":
            if words[-1]:
                blocks[-1].append((words[-1], None))
            words[-1] = []
        elif token == "{":
            body = []
            blocks[-1].append((words[-1], body))
            words[-1] = []
            blocks.append(body)
            words.append([])
        elif len(blocks) == 1 or words[-1]:  # a "}" closing nothing, or a statement without its ";"
            raise LeaseSyntax(f"unexpected closing brace at line {text.count(chr(10), 0, pos) + 1}")
        else:
            blocks.pop()
            words.pop()
    if len(blocks) > 1 or words[-1]:
        raise LeaseSyntax("the file ends inside a statement or block")
    return top


def lease_end(words):
    """The end of a lease from its `ends` statement: None for `never`, else seconds since the
    epoch (dhcpd writes `ends <weekday> YYYY/MM/DD HH:MM:SS` in UTC, or `ends epoch <seconds>`
    with `db-time-format local`). Raises ValueError for anything else."""
    if words == ["never"]:
        return None
    if len(words) == 2 and words[0] == "epoch" and NUMBER.match(words[1]):
        return int(words[1])
    if len(words) == 3 and NUMBER.match(words[0]):
        return calendar.timegm(time.strptime(f"{words[1]} {words[2]}", "%Y/%m/%d %H:%M:%S"))
    raise ValueError(f"ends {' '.join(words)}")


def hardware_ethernet(text):
    """A hardware address as dhcpd writes it (aa:bb:cc:dd:ee:ff) in a-b-c form, or None."""
    parts = text.split(":")
    if len(parts) != 6 or not all(re.fullmatch(r"[0-9a-fA-F]{1,2}", p, re.A) for p in parts):
        return None
    return "-".join(f"{int(p, 16):02x}" for p in parts)


def lease(body, now):
    """(hardware address in a-b-c form or None, whether the lease is in force at `now`) of one
    `lease` block: its binding state must be active and its end in the future or never."""
    mac, state, in_force = None, None, False
    for words, sub in body:
        if sub is not None:
            continue
        key, args = words[0], words[1:]
        if key == "binding" and len(args) == 2 and args[0] == "state":
            state = args[1]
        elif key == "hardware" and len(args) == 2 and args[0] == "ethernet":
            mac = hardware_ethernet(args[1])
        elif key == "ends":
            try:
                end = lease_end(args)
            except (ValueError, OverflowError):
                in_force = False
            else:
                in_force = end is None or end > now
    return mac, state == "active" and in_force


def leases(text, now):
    """{address: (hardware address or None, in force)} from each address's last top-level
    `lease` block: dhcpd appends a block whenever a lease changes, so the last one is current."""
    latest = {}
    for words, body in statements(text):
        if body is None or len(words) != 2 or words[0] != "lease":
            continue
        try:
            address = str(ipaddress.IPv4Address(words[1]))
        except ValueError:
            continue
        latest[address] = body
    return {address: lease(body, now) for address, body in latest.items()}


def current_leases(path, now):
    """leases() of the lease file at `path`, read a second time shortly after a read that does not
    parse, in case dhcpd was half-way through appending a lease. Raises OSError or LeaseSyntax."""

    def read():
        with open(path, encoding="latin-1") as f:
            return f.read()

    try:
        return leases(read(), now)
    except LeaseSyntax:
        time.sleep(0.2)
        return leases(read(), now)


def holds_lease(table, remote, mac):
    """Whether the caller at address `remote` holds a lease in force for `mac` (a-b-c form), by a
    table from leases()."""
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
        except (OSError, LeaseSyntax) as e:
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
