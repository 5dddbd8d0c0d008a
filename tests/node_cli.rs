//! The node commands' input checks, through the built binary and with no hypervisor: `nodes`
//! checks a MAC before connecting.

use crate::support::{mkheadnode, run};

#[test]
fn nodes_checks_its_input_before_connecting() {
    // `.invalid` never resolves: this must fail before any attempt to connect.
    let uri = "qemu+ssh://root@hv1.invalid/system";
    let (code, _, err) =
        run(mkheadnode().args(["--connect", uri, "nodes", "42", "--events", "zz"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`zz` is not a MAC"), "{err}");
}

#[test]
fn help_names_the_node_commands() {
    let (code, out, _) = run(mkheadnode().arg("--help"));
    assert_eq!(code, 0);
    assert!(out.contains("nodes"), "help lacks nodes:\n{out}");
}
