#!/usr/bin/python3
"""mkheadnode-link: put machines into an install profile and power-cycle them (the 2013 linky).

For every machine in /etc/moc/machines.txt (or only the MACs given), arm it for the profile's
loaders: BIOS, {{pxelinux_cfg}}/01-<mac> -> ../<profile>/pxelinux.cfg; UEFI, {{uefi_dir}}/01-<mac> ->
../{{efi_dir}}/profiles/<profile> (shim, GRUB and the profile's grub.cfg). Then power-cycle it through
its BMC, carefully, as far as the driver allows: next boot to the network, power off, wait until
the BMC reports off (off_timeout), next boot to the network again (UEFI firmware may have
rewritten it), power on, wait until it reports on (on_timeout), asking every poll_interval. A
machine already off is only powered on; one its BMC never reports off is not powered on again.
Runs only when asked. A machine whose power-cycle fails is disarmed again (an armed node
reinstalls, wiping its disk, at its next network boot), unless --keep-armed is given.

Drivers: ipmi (ipmitool lanplus), redfish (boot override, ComputerSystem.Reset, PowerState),
amt (Intel AMT's web form, as the 2013 power_cycle did: one power cycle, which cannot set the
next boot or report the power state, so nothing is verified), none. Credentials come from an
INI file on the share that must not be world-readable:

    [default]
    driver = ipmi
    username = admin
    password = secret
    ; per-BMC overrides (a comment takes a line of its own)
    [10.0.0.7]
    driver = redfish
    port = 8443
    ; the BMC's own (self-signed) certificate; or ca_file = bmc-ca.pem, a CA (or the
    ; certificate itself) beside bmc.conf
    tls_fingerprint = sha256:9f:86:d0:...
    ; a BMC slow to report off
    off_timeout = 120

Keys: driver, username, password, port, scheme (http, https), verify_tls (yes, no), ca_file,
tls_fingerprint, off_timeout (seconds, 60), on_timeout (30), poll_interval (2). Credentials go
to the BMC's own address only: a redirect elsewhere is not followed. Each BMC call (one HTTP
request with its redirects and authentication, or one ipmitool command) has one deadline,
--timeout, and a reply is at most 1 MiB; a BMC that hangs or answers garbage fails its machine,
with the reason and how far the sequence got, and the others go on.

Exit status: 0 all machines done, 1 some failed, 2 bad usage or set-up (nothing was done).
"""

import argparse
import base64
import configparser
import contextlib
import hashlib
import hmac
import http.client
import ipaddress
import json
import os
import pwd
import re
import secrets
import signal
import ssl
import stat
import subprocess
import sys
import time
import urllib.parse

MAC = re.compile(r"\A([0-9a-f]{2}[:-]){5}[0-9a-f]{2}\Z", re.I)
TFTP_ROOT = "{{tftp_root}}"
PXELINUX_CFG = "{{pxelinux_cfg}}"
UEFI_DIR = "{{uefi_dir}}"
EFI_DIR = "{{efi_dir}}"
LOADER_CONFIG = {PXELINUX_CFG: "pxelinux.cfg", UEFI_DIR: "grub.cfg"}
# Names under the TFTP root that are boot files or directories, never a profile.
RESERVED = {{reserved_names_py}}
DRIVERS = ("ipmi", "redfish", "amt", "none")
KEYS = ("driver", "username", "password", "port", "scheme", "verify_tls", "ca_file", "tls_fingerprint",
        "off_timeout", "on_timeout", "poll_interval")
# The power sequence's waits, in seconds: (default, most).
WAITS = {"off_timeout": (60.0, 600.0), "on_timeout": (30.0, 600.0), "poll_interval": (2.0, 60.0)}
SECONDS = re.compile(r"\A[0-9]{1,3}(\.[0-9]{1,3})?\Z")
BOOLEANS = {"yes": True, "true": True, "on": True, "1": True, "no": False, "false": False, "off": False, "0": False}
FINGERPRINT = re.compile(r"\Asha256:((?:[0-9a-f]{2}:?){31}[0-9a-f]{2})\Z", re.I)
# Each driver's scheme, and port by scheme, unless bmc.conf says otherwise.
DEFAULT_SCHEME = {"ipmi": None, "redfish": "https", "amt": "http", "none": None}
DEFAULT_PORT = {("ipmi", None): 623, ("redfish", "https"): 443, ("redfish", "http"): 80,
                ("amt", "http"): 16992, ("amt", "https"): 16993}
MAX_REPLY = 1 << 20  # bytes; a Redfish answer is a few KiB
MAX_REDIRECTS = 3
# A path on the BMC as a Redfish reply names it: absolute, printable, no white space.
BMC_PATH = re.compile(r"\A/[!-~]*\Z")
# `ipmitool chassis power status`'s whole answer.
IPMI_POWER = re.compile(r"\AChassis Power is (on|off)\n?\Z")
# Redfish's PowerState values, as the report says them.
REDFISH_POWER = {"On": "on", "Off": "off", "PoweringOn": "powering on", "PoweringOff": "powering off",
                 "Paused": "paused"}


class Fail(Exception):
    """A machine-level failure, reported and counted, never fatal to the others."""


class SetUp(Exception):
    """A set-up error: nothing is done (exit 2)."""


def parse_machines(path):
    """Return ([(mac, bmc)], [error lines]) from a machines.txt."""
    machines, errors = [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            fields = line.split()
            if len(fields) != 2 or not MAC.match(fields[0]):
                errors.append(f"{path} line {n}: expected `<mac> <bmc-ipv4>`, got {line!r}")
                continue
            try:
                bmc = str(ipaddress.IPv4Address(fields[1]))
            except ValueError:
                errors.append(f"{path} line {n}: {fields[1]!r} is not an IPv4 address")
                continue
            machines.append((fields[0].lower().replace("-", ":"), bmc))
    return machines, errors


def load_credentials(path):
    """bmc.conf as {section: {key: value}}, every section checked. Raises SetUp when the file
    cannot be read, is world-readable, or says anything we do not understand: no machine is
    touched with credentials half read."""
    try:
        with open(path, encoding="utf-8") as f:
            if os.fstat(f.fileno()).st_mode & stat.S_IROTH:
                raise SetUp(f"{path} is world-readable; on the host run `chmod o-r` on it "
                            f"(and keep it readable by libvirt-qemu)")
            text = f.read()
    except OSError as e:
        raise SetUp(f"cannot read the credentials file {path}: {e.strerror or e}")
    except UnicodeDecodeError as e:
        raise SetUp(f"cannot read the credentials file {path}: not UTF-8 ({e.reason} at byte {e.start})")
    # No special [DEFAULT] section: every section is as written.
    cp = configparser.ConfigParser(interpolation=None, default_section="\0")
    try:
        cp.read_string(text, source=path)
    except configparser.Error as e:
        raise SetUp(f"{path}: {e}".replace("\n", " "))
    sections = {name: dict(cp[name]) for name in cp.sections()}
    errors = [e for name, values in sections.items() for e in check_section(name, values, os.path.dirname(path))]
    if errors:
        raise SetUp(f"{path}: " + "; ".join(errors))
    return sections


def check_section(name, values, base):
    """What is wrong with one bmc.conf section; a relative ca_file is made absolute (from the
    credentials file's directory) in place."""
    errors = []
    if name != "default":
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            errors.append(f"[{name}]: a section is [default] or a BMC's IPv4 address")
    for key, value in values.items():
        where = f"[{name}] {key}"
        if key not in KEYS:
            errors.append(f"{where}: unknown key (known: {', '.join(KEYS)})")
        elif key == "driver" and value not in DRIVERS:
            errors.append(f"{where}: {value!r} is not one of {', '.join(DRIVERS)}")
        elif key == "port" and not (value.isdigit() and 1 <= int(value) <= 65535):
            errors.append(f"{where}: {value!r} is not a port number")
        elif key == "scheme" and value not in ("http", "https"):
            errors.append(f"{where}: {value!r} is not http or https")
        elif key == "verify_tls" and value.lower() not in BOOLEANS:
            errors.append(f"{where}: {value!r} is not yes or no")
        elif key == "tls_fingerprint" and not FINGERPRINT.match(value):
            errors.append(f"{where}: expected sha256: and the certificate's 32 bytes in hex "
                          f"(`openssl x509 -noout -fingerprint -sha256`)")
        elif key in WAITS and not (SECONDS.match(value) and 0 < float(value) <= WAITS[key][1]):
            errors.append(f"{where}: {value!r} is not a number of seconds (more than 0, at most {WAITS[key][1]:g})")
        elif key == "ca_file":
            values[key] = os.path.join(base, value)
            if not os.path.isfile(values[key]):
                errors.append(f"{where}: no file {values[key]}")
    return errors


def settings_for(creds, bmc, default_driver):
    """The settings for one BMC, typed: [default], then its own section, over the defaults."""
    raw = {"driver": default_driver}
    raw.update(creds.get("default", {}))
    raw.update(creds.get(bmc, {}))
    driver = raw["driver"]
    scheme = raw.get("scheme", DEFAULT_SCHEME[driver]) if DEFAULT_SCHEME[driver] else None
    fingerprint = FINGERPRINT.match(raw.get("tls_fingerprint", ""))
    return {
        "driver": driver,
        "username": raw.get("username", ""),
        "password": raw.get("password", ""),
        "scheme": scheme,
        "port": int(raw["port"]) if "port" in raw else DEFAULT_PORT.get((driver, scheme)),
        "verify_tls": BOOLEANS[raw.get("verify_tls", "yes").lower()],
        "ca_file": raw.get("ca_file"),
        "tls_fingerprint": bytes.fromhex(fingerprint.group(1).replace(":", "")) if fingerprint else None,
        **{key: float(raw.get(key, default)) for key, (default, _) in WAITS.items()},
    }


def loaders(root, profile):
    """The (link directory, link target) of each loader the profile serves, and of each it does
    not (target None): BIOS through pxelinux.cfg, UEFI through grub.cfg and its published chain."""
    bios = os.path.isfile(os.path.join(root, profile, "pxelinux.cfg"))
    uefi = os.path.isfile(os.path.join(root, profile, "grub.cfg")) and os.path.isdir(
        os.path.join(root, EFI_DIR, "profiles", profile))
    return [
        (PXELINUX_CFG, f"../{profile}/pxelinux.cfg" if bios else None),
        (UEFI_DIR, f"../{EFI_DIR}/profiles/{profile}" if uefi else None),
    ]


def open_link_dir(root, sub):
    """A loader's link directory under the TFTP root, opened without following a link, or None
    where there is none. Refused (SetUp) unless it is ours alone: the links, and the temporary
    names they are made under, must not live where another user can write."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(os.path.join(root, sub), flags)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SetUp(f"cannot open {os.path.join(root, sub)}: {e.strerror} (a link there is refused)")
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        os.close(fd)
        raise SetUp(f"{os.path.join(root, sub)} must be {pwd_name(os.geteuid())}'s and writable by no one else "
                    f"(it is uid {st.st_uid}'s, mode {stat.S_IMODE(st.st_mode):04o}): run mkheadnode-setup again "
                    f"(or `chown root:root` and `chmod 0755` it), and this as root")
    return fd


def pwd_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def set_links(root, mac, targets, dry_run):
    """Make `mac`'s link in each (link directory, target); a None target removes the link. Each
    link is made under a new random name in its own directory, then renamed over the old one;
    only links are ever replaced or removed. Returns [(link directory, link, target or None)]
    for each link made or removed (or that would be, in a dry run)."""
    name = "01-" + mac.replace(":", "-")
    done = []
    for sub, target in targets:
        fd = open_link_dir(root, sub)
        if fd is None:
            if target is None:
                continue
            raise Fail(f"no directory {os.path.join(root, sub)} for the links")
        try:
            try:
                st = os.lstat(name, dir_fd=fd)
            except FileNotFoundError:
                st = None
            if st is not None and not stat.S_ISLNK(st.st_mode):
                raise Fail(f"{os.path.join(root, sub, name)} exists and is not a link; left alone")
            if target is None:
                if st is not None:
                    if not dry_run:
                        os.unlink(name, dir_fd=fd)
                    done.append((sub, f"{sub}/{name}", None))
                continue
            if not dry_run:
                tmp = f".{name}.{secrets.token_hex(8)}.new"
                os.symlink(target, tmp, dir_fd=fd)
                try:
                    os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
                except OSError:
                    os.unlink(tmp, dir_fd=fd)
                    raise
            done.append((sub, f"{sub}/{name}", target))
        finally:
            os.close(fd)
    return done


def link(root, mac, profile, dry_run):
    """Arm `mac` for every loader of `profile`; a loader the profile lacks is disarmed, so that
    the node never installs an older profile through it."""
    done = []
    for sub, path, target in set_links(root, mac, loaders(root, profile), dry_run):
        if target is None:
            done.append(f"{'would remove' if dry_run else 'removed'} {path} (profile has no {LOADER_CONFIG[sub]})")
        else:
            done.append(f"{'would link' if dry_run else 'linked'} {path} -> {target}")
    return "; ".join(done)


def disarm(root, mac):
    """Remove `mac`'s install links for both loaders: what was removed, for the report."""
    removed = [path for _, path, _ in set_links(root, mac, [(sub, None) for sub in LOADER_CONFIG], False)]
    return ", ".join(removed) or "no links"


@contextlib.contextmanager
def deadline(seconds):
    """Raise Fail when the block has not finished within `seconds`: one deadline for a whole
    BMC call (connect, TLS, request, every redirect and the whole reply, however slowly a BMC
    drips it), where socket timeouts would only bound each wait."""
    def expire(signum, frame):
        raise Fail(f"no complete answer within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def tls_context(s):
    """The BMC's own CA (ca_file) where it has one, else the system's; no verification of the
    chain only where its certificate is pinned (tls_fingerprint, checked after the handshake
    and before anything is sent) or verify_tls = no."""
    if s["ca_file"]:
        return ssl.create_default_context(cafile=s["ca_file"])
    ctx = ssl.create_default_context()
    if s["tls_fingerprint"] or not s["verify_tls"]:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def exchange(bmc, s, timeout, method, path, body, headers):
    """One request and its reply on a new connection to the BMC: (status, reason, headers,
    body of at most MAX_REPLY bytes)."""
    if s["scheme"] == "https":
        conn = http.client.HTTPSConnection(bmc, s["port"], timeout=timeout, context=tls_context(s))
    else:
        conn = http.client.HTTPConnection(bmc, s["port"], timeout=timeout)
    try:
        conn.connect()
        if s["scheme"] == "https" and s["tls_fingerprint"]:
            seen = hashlib.sha256(conn.sock.getpeercert(binary_form=True)).digest()
            if not hmac.compare_digest(seen, s["tls_fingerprint"]):
                raise Fail(f"its TLS certificate is sha256:{seen.hex(':')}, not the tls_fingerprint in bmc.conf; "
                           f"nothing was sent")
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read(MAX_REPLY + 1)
        if len(data) > MAX_REPLY:
            raise Fail(f"the reply is larger than {MAX_REPLY >> 10} KiB; not read")
        return r.status, r.reason, r.headers, data
    finally:
        conn.close()


def same_origin(location, bmc, s, path):
    """The path to follow a redirect to, which must stay on the BMC's own scheme, address and
    port: credentials are never sent anywhere else."""
    if not location:
        raise Fail("a redirect without a Location")
    refused = Fail(f"redirected to {location[:100]!r}: not followed (credentials go to the BMC's own address only)")
    try:
        u = urllib.parse.urlsplit(urllib.parse.urljoin(f"{s['scheme']}://{bmc}:{s['port']}{path}", location))
        port = u.port or {"http": 80, "https": 443}.get(u.scheme)
    except ValueError:
        raise refused
    if (u.scheme, u.hostname, port) != (s["scheme"], bmc, s["port"]):
        raise refused
    return (u.path or "/") + (f"?{u.query}" if u.query else "")


def quoted(value):
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def digest_challenge(headers):
    """The parameters of the Digest challenge among a 401's WWW-Authenticate headers, or None."""
    for value in headers.get_all("WWW-Authenticate") or []:
        scheme, _, params = value.strip().partition(" ")
        if scheme.lower() == "digest":
            fields = {k.lower(): re.sub(r"\\(.)", r"\1", inner) if v.startswith('"') else v
                      for k, v, inner in re.findall(r'(\w+)\s*=\s*("((?:[^"\\]|\\.)*)"|[^,\s]*)', params)}
            if "nonce" in fields and "realm" in fields:
                return dict(fields, nc=0)
    return None


def digest_authorization(s, method, path, ch):
    """An Authorization header answering Digest challenge `ch` (RFC 7616: MD5 or SHA-256, with
    qop=auth or none)."""
    algorithm = ch.get("algorithm", "MD5").upper()
    if algorithm not in ("MD5", "SHA-256"):
        raise Fail(f"digest algorithm {algorithm} is not supported")

    def h(text):
        return hashlib.new(algorithm.replace("-", "").lower(), text.encode()).hexdigest()

    ha1 = h(f"{s['username']}:{ch['realm']}:{s['password']}")
    ha2 = h(f"{method}:{path}")
    fields = [f"username={quoted(s['username'])}", f"realm={quoted(ch['realm'])}", f"nonce={quoted(ch['nonce'])}",
              f"uri={quoted(path)}", f"algorithm={algorithm}"]
    qops = [q.strip() for q in ch.get("qop", "").split(",") if q.strip()]
    if "auth" in qops:
        ch["nc"] += 1
        nc, cnonce = f"{ch['nc']:08x}", secrets.token_hex(8)
        response = h(f"{ha1}:{ch['nonce']}:{nc}:{cnonce}:auth:{ha2}")
        fields += ["qop=auth", f"nc={nc}", f"cnonce={quoted(cnonce)}"]
    elif not qops:
        response = h(f"{ha1}:{ch['nonce']}:{ha2}")
    else:
        raise Fail(f"digest qop {ch['qop']!r} is not supported")
    fields.append(f"response={quoted(response)}")
    if "opaque" in ch:
        fields.append(f"opaque={quoted(ch['opaque'])}")
    return "Digest " + ", ".join(fields)


def describe(bmc, s, method, path):
    return f"{method} {s['scheme']}://{bmc}:{s['port']}{path}"


def call(bmc, s, timeout, method, path, body=None, digest=False):
    """One BMC call: `method` on `path` at the BMC's own scheme, address and port, with Basic or
    Digest credentials; its reply's body. Same-origin redirects are followed; everything,
    redirects and the digest exchange included, within one deadline of `timeout` seconds."""
    what = describe(bmc, s, method, path)
    data, headers = None, {"Accept": "application/json"}
    if isinstance(body, dict):
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    elif body is not None:
        data, headers["Content-Type"] = body.encode(), "application/x-www-form-urlencoded"
    challenge, redirects = None, 0
    try:
        with deadline(timeout):
            while True:
                if not digest:
                    token = base64.b64encode(f"{s['username']}:{s['password']}".encode()).decode()
                    headers["Authorization"] = "Basic " + token
                elif challenge is not None:
                    headers["Authorization"] = digest_authorization(s, method, path, challenge)
                status, reason, reply_headers, reply = exchange(bmc, s, timeout, method, path, data, headers)
                if status == 401 and digest and challenge is None:
                    challenge = digest_challenge(reply_headers)
                    if challenge is None:
                        raise Fail("HTTP 401 without a Digest challenge")
                elif status in (301, 302, 303, 307, 308):
                    redirects += 1
                    if redirects > MAX_REDIRECTS:
                        raise Fail(f"more than {MAX_REDIRECTS} redirects")
                    path = same_origin(reply_headers.get("Location"), bmc, s, path)
                elif status >= 300:
                    raise Fail(f"HTTP {status} {reason}")
                else:
                    return reply
    except Fail as e:
        raise Fail(f"{what}: {e}")
    except ssl.SSLCertVerificationError as e:
        raise Fail(f"{what}: TLS certificate not trusted ({e.verify_message}); give this BMC a ca_file or "
                   f"tls_fingerprint in bmc.conf")
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise Fail(f"{what}: {str(e) or type(e).__name__}"[:300])


def call_json(bmc, s, timeout, path):
    """GET `path` and its reply as a JSON object."""
    reply = call(bmc, s, timeout, "GET", path)
    try:
        value = json.loads(reply)
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise Fail(f"{describe(bmc, s, 'GET', path)}: the reply is not JSON, or not an object (it begins {reply[:40]!r})")
    return value


class Ipmi:
    """IPMI through ipmitool lanplus: every step of the careful sequence. The password goes
    through the environment, never the command line."""

    reads_state = True

    def __init__(self, bmc, s, timeout):
        self.base = ["ipmitool", "-I", "lanplus", "-H", bmc, "-p", str(s["port"]),
                     "-U", s["username"], "-E", "-N", "1", "-R", "2"]
        self.env = dict(os.environ, IPMI_PASSWORD=s["password"])
        self.timeout = timeout

    def run(self, *args):
        what = f"ipmi {' '.join(args)}"
        try:
            r = subprocess.run(self.base + list(args), env=self.env, capture_output=True, text=True,
                               errors="replace", timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise Fail(f"{what}: no answer within {self.timeout:g} s")
        if r.returncode != 0:
            said = (r.stderr or r.stdout).strip().splitlines()
            raise Fail(f"{what}: {said[-1][:200] if said else 'failed'}")
        return r.stdout

    def state(self):
        out = self.run("chassis", "power", "status")
        m = IPMI_POWER.match(out)
        if not m:
            raise Fail(f"ipmi chassis power status: not an answer it knows ({out[:80]!r})")
        return m.group(1)

    def set_pxe(self):
        self.run("chassis", "bootdev", "pxe")

    def off(self):
        self.run("chassis", "power", "off")

    def on(self):
        self.run("chassis", "power", "on")


class Redfish:
    """Redfish: the first system the BMC lists, its PowerState, a one-time boot override and
    ComputerSystem.Reset (ForceOff, On)."""

    reads_state = True

    def __init__(self, bmc, s, timeout):
        self.bmc, self.s, self.timeout = bmc, s, timeout
        self.path = None

    def system(self):
        if self.path is None:
            members = call_json(self.bmc, self.s, self.timeout, "/redfish/v1/Systems").get("Members")
            first = members[0] if isinstance(members, list) and members else None
            path = first.get("@odata.id") if isinstance(first, dict) else None
            if not isinstance(path, str) or not BMC_PATH.match(path):
                raise Fail(f"redfish: the BMC lists no system (Members: {str(members)[:80]})")
            self.path = path
        return self.path

    def state(self):
        system = self.system()
        value = call_json(self.bmc, self.s, self.timeout, system).get("PowerState")
        if not isinstance(value, str) or value not in REDFISH_POWER:
            raise Fail(f"{describe(self.bmc, self.s, 'GET', system)}: PowerState {str(value)[:40]!r} "
                       f"is not a Redfish power state ({', '.join(REDFISH_POWER)})")
        return REDFISH_POWER[value]

    def set_pxe(self):
        boot = {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}
        call(self.bmc, self.s, self.timeout, "PATCH", self.system(), {"Boot": boot})

    def reset(self, kind):
        call(self.bmc, self.s, self.timeout, "POST", self.system() + "/Actions/ComputerSystem.Reset",
             {"ResetType": kind})

    def off(self):
        self.reset("ForceOff")

    def on(self):
        self.reset("On")


class Amt:
    """Intel AMT's web form, as the 2013 power_cycle posted it: one power cycle with a normal
    start-up. The form can neither set the next boot nor report the power state."""

    reads_state = False

    def __init__(self, bmc, s, timeout):
        self.bmc, self.s, self.timeout = bmc, s, timeout

    def cycle(self):
        call(self.bmc, self.s, self.timeout, "POST", "/remoteform",
             "amt_html_rc_boot_special=1&amt_html_rc_radio_group=3", digest=True)


POWER = {"ipmi": Ipmi, "redfish": Redfish, "amt": Amt}


def wait_for(bmc, want, limit, interval):
    """Ask the BMC for the power state every `interval` seconds until it reports `want` or
    `limit` seconds have passed: (whether it did, the last state it reported, seconds taken)."""
    start = time.monotonic()
    while True:
        state = bmc.state()
        took = time.monotonic() - start
        if state == want or took >= limit:
            return state == want, state, took
        time.sleep(min(interval, limit - took))


def set_pxe(bmc, again):
    """Set the next boot to the network: the step as the report says it. A BMC that refuses is
    a warning, not a failure: the machine may boot from the network first anyway."""
    try:
        bmc.set_pxe()
    except Fail as e:
        return f"warning: next boot not set to PXE ({e})"
    return "next boot PXE again" if again else "next boot PXE"


def power_cycle(bmc_ip, s, timeout):
    """The careful power sequence, as far as the driver allows: next boot to the network, power
    off, wait (up to off_timeout) until the BMC reports off, next boot again (UEFI firmware may
    have rewritten it), power on, wait (up to on_timeout) until it reports on. A machine already
    off skips the off step. What was done, for the report; raises Fail saying how far it got,
    and never powers on a machine its BMC did not report off."""
    driver = s["driver"]
    bmc = POWER[driver](bmc_ip, s, timeout)
    if not bmc.reads_state:
        bmc.cycle()
        return (f"power cycle sent via {driver} (its web form can neither set the next boot nor report "
                f"the power state: not verified)")
    steps = []
    try:
        was = bmc.state()
        if was != "off":
            steps.append(set_pxe(bmc, again=False))
            bmc.off()
            steps.append(f"power off sent (it was {was})")
            off, state, took = wait_for(bmc, "off", s["off_timeout"], s["poll_interval"])
            if not off:
                raise Fail(f"did not power off within {s['off_timeout']:g} s (the BMC still reports {state}); "
                           f"not powered on again")
            steps[-1] = f"off after {took:.1f} s" + ("" if was == "on" else f" (it was {was})")
        else:
            steps.append("it was off")
        steps.append(set_pxe(bmc, again=was != "off"))
        bmc.on()
        steps.append("power on sent")
        on, state, took = wait_for(bmc, "on", s["on_timeout"], s["poll_interval"])
        if not on:
            raise Fail(f"not verified on: the BMC reported {state} after power on, for {s['on_timeout']:g} s")
        steps[-1] = f"on after {took:.1f} s"
    except Fail as e:
        raise Fail("; ".join([f"{driver}: " + steps[0]] + steps[1:] + [str(e)]) if steps else e)
    return f"{'power-cycled' if was != 'off' else 'powered on'} via {driver} ({'; '.join(steps)})"


def install(a, creds, mac, bmc):
    """Arm one machine and power-cycle it: what was done. Raises Fail."""
    s = settings_for(creds, bmc, a.driver)
    done = [link(a.tftp_root, mac, a.profile, a.dry_run)]
    if a.no_power or s["driver"] == "none":
        done.append("power left alone")
    elif a.dry_run:
        done.append(f"would power-cycle via {s['driver']}")
    else:
        done.append(power_cycle(bmc, s, a.timeout))
    return "; ".join(done)


def power_state(bmc, s, timeout):
    """The machine's power state as its BMC reports it (`on`, `off`, or Redfish's `powering on`,
    `powering off`, `paused`), read through the same driver and settings as a power cycle;
    nothing is changed."""
    driver = s["driver"]
    if driver in POWER and POWER[driver].reads_state:
        return POWER[driver](bmc, s, timeout).state()
    return f"unknown (the {driver} driver cannot read it)"


def power_status(argv):
    """`--power-status`: print each machine's power state, one line each; change nothing."""
    ap = argparse.ArgumentParser(prog="mkheadnode-link --power-status",
                                 description="print each machine's power state as its BMC reports it")
    ap.add_argument("--power-status", action="store_true", required=True)
    ap.add_argument("macs", nargs="*", metavar="MAC", help="only these machines")
    ap.add_argument("--driver", choices=DRIVERS, default="ipmi")
    ap.add_argument("--machines", default="/etc/moc/machines.txt")
    ap.add_argument("--credentials", default="/etc/moc/bmc.conf")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per BMC call")
    a = ap.parse_args(argv)
    try:
        machines, errors = parse_machines(a.machines)
    except OSError as e:
        ap.error(f"cannot read {a.machines}: {e.strerror}")
    wanted = {m.lower().replace("-", ":") for m in a.macs}
    machines = [(mac, bmc) for mac, bmc in machines if not wanted or mac in wanted]
    try:
        creds = load_credentials(a.credentials) if os.path.exists(a.credentials) else {}
    except SetUp as e:
        ap.error(str(e))

    def one(machine):
        mac, bmc = machine
        try:
            return f"ok     {mac} ({bmc}): power {power_state(bmc, settings_for(creds, bmc, a.driver), a.timeout)}"
        except (Fail, OSError, ValueError, KeyError) as e:
            return f"FAILED {mac} ({bmc}): {e}"

    # One machine after another: each BMC call's deadline is a SIGALRM, which only the main
    # thread can take.
    lines = [one(machine) for machine in machines]
    for line in [f"FAILED {e}" for e in errors] + lines:
        print(line)
    return 1 if errors or any(line.startswith("FAILED") for line in lines) else 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--power-status" in argv:
        return power_status(argv)
    ap = argparse.ArgumentParser(prog="mkheadnode-link", description=__doc__.split("\n\n")[0])
    ap.add_argument("macs", nargs="*", metavar="MAC", help="only these machines (default: all in the machines file)")
    ap.add_argument("-p", "--profile", required=True, help="install profile: a directory under the TFTP root")
    ap.add_argument("-n", "--dry-run", action="store_true", help="say what would be done; change nothing")
    ap.add_argument("--driver", choices=DRIVERS, default="ipmi", help="power driver when the credentials file names none")
    ap.add_argument("--no-power", action="store_true", help="only make the links")
    ap.add_argument("--keep-armed", action="store_true",
                    help="keep a machine's install links when its power-cycle fails (it installs at its next network boot)")
    ap.add_argument("--machines", default="/etc/moc/machines.txt")
    ap.add_argument("--credentials", default="/etc/moc/bmc.conf")
    ap.add_argument("--tftp-root", default=TFTP_ROOT)
    ap.add_argument("--timeout", type=float, default=20.0,
                    help="seconds for each BMC call, start to end (one HTTP request with its redirects, or one ipmitool command)")
    a = ap.parse_args(argv)

    if not re.match(r"\A[A-Za-z0-9_-][A-Za-z0-9._-]*\Z", a.profile) or a.profile in RESERVED:
        ap.error(f"bad profile name {a.profile!r}: letters, digits, '.', '_', '-', and not one of {', '.join(sorted(RESERVED))}")
    if all(target is None for _, target in loaders(a.tftp_root, a.profile)):
        ap.error(f"profile {a.profile!r} has neither {os.path.join(a.tftp_root, a.profile, 'pxelinux.cfg')} "
                 f"nor a published grub.cfg (mkheadnode-publish-profiles publishes the share's profiles)")
    if not 0 < a.timeout <= 3600:
        ap.error("--timeout takes seconds, more than 0 and at most 3600")
    creds = {}
    try:
        if not a.no_power and a.driver != "none" or os.path.lexists(a.credentials):
            if not os.path.lexists(a.credentials):
                raise SetUp(f"no credentials file {a.credentials} (or use --driver none / --no-power)")
            creds = load_credentials(a.credentials)
        for sub in LOADER_CONFIG:
            fd = open_link_dir(a.tftp_root, sub)
            if fd is not None:
                os.close(fd)
    except SetUp as e:
        ap.error(str(e))
    try:
        machines, errors = parse_machines(a.machines)
    except OSError as e:
        ap.error(f"cannot read {a.machines}: {e.strerror}")
    wanted = [m.lower().replace("-", ":") for m in a.macs]
    for m in wanted:
        if not MAC.match(m):
            ap.error(f"{m!r} is not a MAC address")
        if m not in (mac for mac, _ in machines):
            errors.append(f"{m}: not listed in {a.machines}")
    if wanted:
        machines = [(mac, bmc) for mac, bmc in machines if mac in wanted]

    failed = len(errors)
    for e in errors:
        print(f"FAILED {e}")
    for mac, bmc in machines:
        try:
            print(f"ok     {mac} ({bmc}): {install(a, creds, mac, bmc)}", flush=True)
        except Exception as e:  # one machine's failure, whatever its BMC answered, is its own
            failed += 1
            reason = str(e) if isinstance(e, (Fail, SetUp, OSError)) else f"unexpected {type(e).__name__}: {e}"
            if not a.dry_run and not a.keep_armed:
                try:
                    reason += f"; disarmed again: {disarm(a.tftp_root, mac)} (--keep-armed keeps a failed machine armed)"
                except (Fail, SetUp, OSError) as e2:
                    reason += f"; STILL ARMED, could not remove its install links: {e2}"
            print(f"FAILED {mac} ({bmc}): {reason}", flush=True)
    total = len(machines) + len(errors)
    print(f"{total - failed} of {total} machines done" + (" (dry run)" if a.dry_run else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
