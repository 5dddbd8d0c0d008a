#!/usr/bin/python3
"""mkheadnode-link: put machines into an install profile and power-cycle them (the 2013 linky).

For every machine in /etc/moc/machines.txt (or only the MACs given), arm it for the profile's
loaders: BIOS, {{pxelinux_cfg}}/01-<mac> -> ../<profile>/pxelinux.cfg; UEFI, {{uefi_dir}}/01-<mac> ->
../{{efi_dir}}/profiles/<profile> (shim, GRUB and the profile's grub.cfg). Then set the next boot to the
network where the driver can, and power-cycle the machine through its BMC. Runs only when asked.

Drivers: ipmi (ipmitool lanplus), redfish (ComputerSystem.Reset), amt (Intel AMT's web form,
as the 2013 power_cycle did), none. Credentials come from an INI file on the share that must not
be world-readable:

    [default]
    driver = ipmi
    username = admin
    password = secret
    [10.0.0.7]          ; per-BMC overrides
    driver = redfish
    port = 8443

Exit status: 0 all machines done, 1 some failed, 2 bad usage or set-up (nothing was done).
"""

import argparse
import base64
import configparser
import ipaddress
import json
import os
import re
import ssl
import stat
import subprocess
import sys
import urllib.error
import urllib.request

MAC = re.compile(r"\A([0-9a-f]{2}[:-]){5}[0-9a-f]{2}\Z", re.I)
TFTP_ROOT = "{{tftp_root}}"
PXELINUX_CFG = "{{pxelinux_cfg}}"
UEFI_DIR = "{{uefi_dir}}"
EFI_DIR = "{{efi_dir}}"
LOADER_CONFIG = {PXELINUX_CFG: "pxelinux.cfg", UEFI_DIR: "grub.cfg"}
# Names under the TFTP root that are boot files or directories, never a profile.
RESERVED = {{reserved_names_py}}
DRIVERS = ("ipmi", "redfish", "amt", "none")


class Fail(Exception):
    """A machine-level failure, reported and counted, never fatal to the others."""


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
    st = os.stat(path)
    if st.st_mode & stat.S_IROTH:
        raise SystemExit(f"mkheadnode-link: {path} is world-readable; on the host run `chmod o-r` on it (and keep it readable by libvirt-qemu)")
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(path, encoding="utf-8")
    return cp


def settings_for(creds, bmc, default_driver):
    s = {"driver": default_driver}
    if creds is not None:
        if creds.has_section("default"):
            s.update(creds["default"])
        if creds.has_section(bmc):
            s.update(creds[bmc])
    if s["driver"] not in DRIVERS:
        raise Fail(f"unknown driver {s['driver']!r} (use one of {', '.join(DRIVERS)})")
    return s


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


def link(root, mac, profile, dry_run):
    """Arm `mac` for every loader of `profile`; a loader the profile lacks is disarmed, so that
    the node never installs an older profile through it."""
    name = "01-" + mac.replace(":", "-")
    done = []
    for sub, target in loaders(root, profile):
        path = os.path.join(root, sub, name)
        if os.path.lexists(path) and not os.path.islink(path):
            raise Fail(f"{path} exists and is not a link; left alone")
        if target is None:
            if os.path.lexists(path):
                if not dry_run:
                    os.unlink(path)
                done.append(f"{'would remove' if dry_run else 'removed'} {sub}/{name} (profile has no {LOADER_CONFIG[sub]})")
            continue
        if dry_run:
            done.append(f"would link {sub}/{name} -> {target}")
            continue
        tmp = path + ".new"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, path)
        done.append(f"linked {sub}/{name} -> {target}")
    return "; ".join(done)


def ipmi(bmc, s, timeout):
    base = ["ipmitool", "-I", "lanplus", "-H", bmc, "-p", str(s.get("port", "623")),
            "-U", s.get("username", ""), "-E", "-N", "1", "-R", "2"]
    env = dict(os.environ, IPMI_PASSWORD=s.get("password", ""))

    def run(*args):
        try:
            r = subprocess.run(base + list(args), env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Fail(f"ipmi {' '.join(args)}: no answer within {timeout} s")
        if r.returncode != 0:
            raise Fail(f"ipmi {' '.join(args)}: {(r.stderr or r.stdout).strip().splitlines()[-1:] or ['failed']}"[:300])
        return r.stdout

    notes = []
    try:
        run("chassis", "bootdev", "pxe")
    except Fail as e:
        notes.append(f"warning: next boot not set to PXE ({e})")
    on = "on" in run("chassis", "power", "status").lower().split()
    # `power reset` rather than `power cycle`: many BMCs refuse a cycle, and a reset is what
    # the 2013 AMT call did.
    run("chassis", "power", "reset" if on else "on")
    return "; ".join(notes + ["power-cycled" if on else "powered on"])


def http(method, url, s, timeout, body=None, digest=False):
    data = None if body is None else (json.dumps(body).encode() if isinstance(body, dict) else body.encode())
    req = urllib.request.Request(url, data=data, method=method)
    if isinstance(body, dict):
        req.add_header("Content-Type", "application/json")
    handlers = []
    if url.startswith("https:") and s.get("verify_tls", "yes").lower() in ("no", "false", "0"):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        handlers.append(urllib.request.HTTPSHandler(context=ctx))
    if digest:
        pm = urllib.request.HTTPPasswordMgrWithDefaultRealm()
        pm.add_password(None, url, s.get("username", ""), s.get("password", ""))
        handlers.append(urllib.request.HTTPDigestAuthHandler(pm))
    else:
        token = base64.b64encode(f"{s.get('username', '')}:{s.get('password', '')}".encode()).decode()
        req.add_header("Authorization", "Basic " + token)
    try:
        with urllib.request.build_opener(*handlers).open(req, timeout=timeout) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        raise Fail(f"{method} {url}: HTTP {e.code} {e.reason}")
    except (urllib.error.URLError, OSError) as e:
        raise Fail(f"{method} {url}: {getattr(e, 'reason', e)}")


def redfish(bmc, s, timeout):
    base = f"{s.get('scheme', 'https')}://{bmc}:{s.get('port', '443')}"
    members = json.loads(http("GET", base + "/redfish/v1/Systems", s, timeout)).get("Members", [])
    if not members:
        raise Fail("redfish: the BMC lists no system")
    system = base + members[0]["@odata.id"]
    state = json.loads(http("GET", system, s, timeout)).get("PowerState", "On")
    notes = []
    try:
        http("PATCH", system, s, timeout, {"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}})
    except Fail as e:
        notes.append(f"warning: next boot not set to PXE ({e})")
    reset = "ForceRestart" if state == "On" else "On"
    http("POST", system + "/Actions/ComputerSystem.Reset", s, timeout, {"ResetType": reset})
    return "; ".join(notes + ["power-cycled" if state == "On" else "powered on"])


def amt(bmc, s, timeout):
    url = f"http://{bmc}:{s.get('port', '16992')}/remoteform"
    http("POST", url, s, timeout, "amt_html_rc_boot_special=1&amt_html_rc_radio_group=3", digest=True)
    return "power-cycled"


POWER = {"ipmi": ipmi, "redfish": redfish, "amt": amt}


def power_state(bmc, s, timeout):
    """The machine's power state as its BMC reports it (`on`, `off`, or the BMC's own word),
    read through the same driver and settings as a power cycle; nothing is changed."""
    driver = s["driver"]
    if driver == "ipmi":
        cmd = ["ipmitool", "-I", "lanplus", "-H", bmc, "-p", str(s.get("port", "623")), "-U",
               s.get("username", ""), "-E", "-N", "1", "-R", "2", "chassis", "power", "status"]
        env = dict(os.environ, IPMI_PASSWORD=s.get("password", ""))
        try:
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Fail(f"ipmi chassis power status: no answer within {timeout} s")
        words = r.stdout.lower().split()
        if r.returncode != 0 or not words:
            raise Fail(f"ipmi chassis power status: {(r.stderr or r.stdout).strip()[-200:] or 'failed'}")
        return words[-1]
    if driver == "redfish":
        base = f"{s.get('scheme', 'https')}://{bmc}:{s.get('port', '443')}"
        systems = json.loads(http("GET", base + "/redfish/v1/Systems", s, timeout)).get("Members", [])
        if not systems:
            raise Fail("redfish: the BMC lists no system")
        state = json.loads(http("GET", base + systems[0]["@odata.id"], s, timeout)).get("PowerState")
        return str(state or "unknown").lower()
    return f"unknown (the {driver} driver cannot read it)"


def power_status(argv):
    """`--power-status`: print each machine's power state, one line each; change nothing."""
    from concurrent.futures import ThreadPoolExecutor
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
    creds = load_credentials(a.credentials) if os.path.exists(a.credentials) else None

    def one(machine):
        mac, bmc = machine
        try:
            return f"ok     {mac} ({bmc}): power {power_state(bmc, settings_for(creds, bmc, a.driver), a.timeout)}"
        except (Fail, OSError, ValueError, KeyError) as e:
            return f"FAILED {mac} ({bmc}): {e}"

    with ThreadPoolExecutor(max_workers=8) as pool:
        lines = list(pool.map(one, machines))
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
    ap.add_argument("--machines", default="/etc/moc/machines.txt")
    ap.add_argument("--credentials", default="/etc/moc/bmc.conf")
    ap.add_argument("--tftp-root", default=TFTP_ROOT)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per BMC call")
    a = ap.parse_args(argv)

    if not re.match(r"\A[A-Za-z0-9_-][A-Za-z0-9._-]*\Z", a.profile) or a.profile in RESERVED:
        ap.error(f"bad profile name {a.profile!r}: letters, digits, '.', '_', '-', and not one of {', '.join(sorted(RESERVED))}")
    if all(target is None for _, target in loaders(a.tftp_root, a.profile)):
        ap.error(f"profile {a.profile!r} has neither {os.path.join(a.tftp_root, a.profile, 'pxelinux.cfg')} "
                 f"nor a published grub.cfg (mkheadnode-publish-profiles publishes the share's profiles)")
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
    creds = None
    if not a.no_power and a.driver != "none" or os.path.exists(a.credentials):
        try:
            creds = load_credentials(a.credentials)
        except FileNotFoundError:
            ap.error(f"no credentials file {a.credentials} (or use --driver none / --no-power)")

    failed = len(errors)
    for e in errors:
        print(f"FAILED {e}")
    for mac, bmc in machines:
        try:
            s = settings_for(creds, bmc, a.driver)
            done = [link(a.tftp_root, mac, a.profile, a.dry_run)]
            if a.no_power or s["driver"] == "none":
                done.append("power left alone")
            elif a.dry_run:
                done.append(f"would power-cycle via {s['driver']}")
            else:
                done.append(POWER[s["driver"]](bmc, s, a.timeout) + f" via {s['driver']}")
            print(f"ok     {mac} ({bmc}): {'; '.join(done)}")
        except (Fail, OSError) as e:
            failed += 1
            print(f"FAILED {mac} ({bmc}): {e}")
    total = len(machines) + len(errors)
    print(f"{total - failed} of {total} machines done" + (" (dry run)" if a.dry_run else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
