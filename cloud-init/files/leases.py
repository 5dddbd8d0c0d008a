"""dhcpd.leases as dhcpd's own reader sees it: the one parser of the boot-default CGI (whether a
caller holds a MAC's lease) and mkheadnode-nodes (each machine's lease, for its report).
Installed as {{leases_module}}, root's; both load it from there by its path.

The file is tokenized as dhcpd.leases(5) and dhcpd's conflex.c read it, so text that a client
chose (a host name with braces, semicolons or quotes) stays inside its quoted string and cannot
make a lease of its own. Each address's last top-level `lease` block is its lease: dhcpd
appends a block whenever a lease changes.
"""

import calendar
import ipaddress
import re
import time


class LeaseSyntax(ValueError):
    """dhcpd.leases does not parse (for one, dhcpd is half-way through writing a lease). Carries
    `complete`, the top-level statements that ended before the problem, and `position`, the
    offset in the text where the statement it is in began."""

    def __init__(self, message, complete, position):
        super().__init__(message)
        self.complete, self.position = complete, position


# White space; `#` comments to the end of the line; strings in double quotes, where a backslash
# escapes the next character (dhcpd writes `\"`, `\\` and octal `\ooo` there), and which hold
# client-supplied text such as client-hostname, braces, semicolons and `#` included; punctuation;
# and words (addresses, dates, keywords) of anything else. ASCII white space only, as dhcpd's.
TOKEN = re.compile(r"""\s+|\#[^\n]*|(?P<string>"(?:[^"\\]|\\.)*")|(?P<punct>[{};])|(?P<word>[^\s{};"\#\\]+)""",
                   re.S | re.A)
NUMBER = re.compile(r"[0-9]+\Z")
HEX_BYTE = re.compile(r"[0-9a-fA-F]{1,2}\Z", re.A)
ESCAPE = re.compile(r"\\([0-7]{1,3}|x[0-9a-fA-F]{1,2}|.)", re.S)
ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "b": "\b"}


def statements(text, begin=0):
    """The statements of a dhcpd.leases from offset `begin` on: a list of (words, body), where
    words are the statement's tokens before its `;` or `{` (a string keeps its quotes, so it never
    equals a keyword), and body is the list of statements in its `{ ... }` block, or None. Raises
    LeaseSyntax, which counts lines from the start of `text`."""
    top = []
    blocks, words = [top], [[]]  # the open blocks, innermost last, and each one's unfinished statement
    pos = start = begin  # start: where the top-level statement being read began

    def problem(message):
        complete = top[:-1] if len(blocks) > 1 else top
        return LeaseSyntax(message, complete, start)

    while pos < len(text):
        m = TOKEN.match(text, pos)
        if m is None:
            raise problem(f"unexpected {text[pos]!r} at line {text.count(chr(10), 0, pos) + 1}")
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
            raise problem(f"unexpected closing brace at line {text.count(chr(10), 0, pos) + 1}")
        else:
            blocks.pop()
            words.pop()
        if len(blocks) == 1 and not words[-1]:
            start = pos
    if len(blocks) > 1 or words[-1]:
        raise problem("the file ends inside a statement or block")
    return top


def is_string(token):
    return token.startswith('"')


def unquote(token):
    """A string token's text, its escapes decoded as dhcpd writes them: \\" \\\\ \\t \\n \\r \\b,
    octal \\ooo (a byte, as latin-1) and hex \\xHH."""

    def one(m):
        e = m.group(1)
        if e[0] in "01234567":
            return chr(int(e, 8) & 0xff)
        if e[0] == "x" and len(e) > 1:
            return chr(int(e[1:], 16))
        return ESCAPES.get(e, e)

    return ESCAPE.sub(one, token[1:-1])


def lease_time(words):
    """A `starts` or `ends` time: "never", or seconds since the epoch (dhcpd writes `<weekday>
    YYYY/MM/DD HH:MM:SS` in UTC, or `epoch <seconds>` with `db-time-format local`). Raises
    ValueError (or OverflowError) for anything else."""
    if words == ["never"]:
        return "never"
    if len(words) == 2 and words[0] == "epoch" and NUMBER.match(words[1]):
        return int(words[1])
    if len(words) == 3 and NUMBER.match(words[0]):
        return calendar.timegm(time.strptime(f"{words[1]} {words[2]}", "%Y/%m/%d %H:%M:%S"))
    raise ValueError(f"not a lease time: {' '.join(words)[:80]}")


def hardware_ethernet(word):
    """A hardware address as dhcpd writes it as aa:bb:cc:dd:ee:ff (any case, a digit a byte or
    two), or None."""
    parts = word.split(":")
    if len(parts) != 6 or not all(HEX_BYTE.match(p) for p in parts):
        return None
    return ":".join(f"{int(p, 16):02x}" for p in parts)


def lease(address, body):
    """One `lease` block's record: ip; mac (aa:bb:cc:dd:ee:ff, or None); state, its binding
    state (a word, or None); starts and ends (seconds, "never", or None where absent or not
    understood); hostname and vendor_class, the client's own strings (or None). Statements in
    nested blocks (`on expiry { ... }`) are not the lease's own and are left out."""
    record = {"ip": address, "mac": None, "state": None, "starts": None, "ends": None,
              "hostname": None, "vendor_class": None}
    for words, sub in body:
        if sub is not None or not words:
            continue
        key, args = words[0], words[1:]
        if key in ("starts", "ends"):
            try:
                record[key] = lease_time(args)
            except (ValueError, OverflowError):
                record[key] = None
        elif key == "binding" and len(args) == 2 and args[0] == "state" and not is_string(args[1]):
            record["state"] = args[1]
        elif key == "hardware" and len(args) == 2 and args[0] == "ethernet":
            record["mac"] = hardware_ethernet(args[1])
        elif key == "client-hostname" and len(args) == 1 and is_string(args[0]):
            record["hostname"] = unquote(args[0])
        elif args[:2] == ["vendor-class-identifier", "="] and key == "set" and len(args) == 3 and is_string(args[2]):
            record["vendor_class"] = unquote(args[2])
    return record


def leases(tree):
    """{address: record} of each address's last top-level `lease` block among `statements()`,
    in the order of those blocks."""
    latest = {}
    for words, body in tree:
        if body is None or len(words) != 2 or words[0] != "lease":
            continue
        try:
            address = str(ipaddress.IPv4Address(words[1]))
        except ValueError:
            continue
        latest.pop(address, None)
        latest[address] = body
    return {address: lease(address, body) for address, body in latest.items()}


def in_force(record, now):
    """Whether a lease record is held at `now`: its binding state is active and it ends in the
    future, or never."""
    ends = record["ends"]
    return record["state"] == "active" and (ends == "never" or isinstance(ends, int) and ends > now)
