#!/usr/bin/python3 -IB
"""mkheadnode-disarm MAC: remove one node's install links, and nothing else.

MAC is exactly aa-bb-cc-dd-ee-ff (lower case, dashes). Removes {{pxelinux_cfg}}/01-MAC (BIOS) and
{{uefi_dir}}/01-MAC (UEFI) under {{tftp_root}}, where each is a symbolic link; anything else there is
left alone. Every directory is opened without following a link.

The one thing the web server's user (www-data) may do as root: the boot-default CGI runs it
through sudo (/etc/sudoers.d/mkheadnode allows this program with one MAC argument), because the
link directories are root's, so that the web server can neither arm a node nor touch a boot
file. The TFTP root is fixed here, never taken from the caller. The code that removes the links
is the CGI's own (disarm_links in {{cgi_path}}, root's like this file); `-I` keeps the caller's
environment and the current directory out of Python's module path, and `-B` writes no bytecode.

Exit status: 0 removed, 3 no link, 4 an entry is not a link (left alone), 2 bad usage, 1 failure.
"""

import importlib.machinery
import importlib.util
import sys

TFTP_ROOT = "{{tftp_root}}"
CGI = "{{cgi_path}}"


def main(argv):
    loader = importlib.machinery.SourceFileLoader("boot_default", CGI)
    spec = importlib.util.spec_from_loader("boot_default", loader)
    cgi = importlib.util.module_from_spec(spec)
    loader.exec_module(cgi)
    if len(argv) != 1 or not cgi.MAC.match(argv[0]):
        print("usage: mkheadnode-disarm aa-bb-cc-dd-ee-ff (one MAC, lower case, dashes)", file=sys.stderr)
        return 2
    try:
        status, said = cgi.outcome(*cgi.disarm_links(TFTP_ROOT, argv[0]))
    except OSError as e:
        print(f"mkheadnode-disarm: {e}", file=sys.stderr)
        return 1
    print(said)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
