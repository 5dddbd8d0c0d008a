//! The node commands' input checks, through the built binary and with no hypervisor: `install`
//! and `nodes` check MACs and names before connecting.

use crate::support::{mkheadnode, run};

#[test]
fn install_and_nodes_check_their_input_before_connecting() {
    // `.invalid` never resolves: each of these must fail before any attempt to connect.
    let uri = "qemu+ssh://root@hv1.invalid/system";
    for (args, want) in [
        (
            vec!["install", "42", "-p", "deb", "aa:bb:cc:dd:ee"],
            "`aa:bb:cc:dd:ee` is not a MAC",
        ),
        (
            vec!["install", "42", "-p", "x;reboot", "--all"],
            "not a profile name",
        ),
        (
            vec!["install", "42", "-p", "grub", "--all"],
            "boot file or directory",
        ),
        (vec!["install", "0", "-p", "deb", "--all"], "`0`"),
        (vec!["nodes", "42", "--events", "zz"], "`zz` is not a MAC"),
    ] {
        let (code, _, err) = run(mkheadnode().args(["--connect", uri]).args(&args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // Neither --all nor a MAC, or both: clap's usage error.
    for args in [
        vec!["install", "42", "-p", "deb"],
        vec!["install", "42", "-p", "deb", "--all", "aa:bb:cc:dd:ee:ff"],
    ] {
        let (code, _, err) = run(mkheadnode().args(&args));
        assert_eq!(code, 2, "{args:?}: {err}");
    }
}

#[test]
fn help_names_the_node_commands() {
    let (code, out, _) = run(mkheadnode().arg("--help"));
    assert_eq!(code, 0);
    for sub in ["install", "nodes"] {
        assert!(out.contains(sub), "help lacks {sub}:\n{out}");
    }
}
