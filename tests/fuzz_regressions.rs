//! Every input kept in `fuzz/regressions/<target>/` (crashes the fuzzers found once, fixed
//! since) and every seed in `fuzz/seeds/<target>/`, replayed through the fuzz targets' own
//! checks, so that a plain `cargo test` fails if one comes back.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::Path;

/// The files in `dir`, but for dot files (`.keep`).
fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    out.sort();
    out
}

#[test]
fn kept_inputs_pass_the_fuzz_targets_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut seeds = 0;
    for (name, check) in harness::TARGETS {
        for kind in ["regressions", "seeds"] {
            for input in inputs(&root.join(kind).join(name)) {
                let data = std::fs::read(&input).unwrap();
                let outcome = std::panic::catch_unwind(|| check(&data));
                assert!(
                    outcome.is_ok(),
                    "{name}: {} fails the target's checks",
                    input.display()
                );
                seeds += usize::from(kind == "seeds");
            }
        }
    }
    assert!(seeds >= 4, "the seeds are gone ({seeds})");
}
