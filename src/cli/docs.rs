/*!
What the command line says about itself: shell completion scripts (clap_complete) and man pages
(clap_mangen), both made from the same clap definition as the parser, so they cannot drift
from it. `make deb` writes them with `mkheadnode completions <shell>` and the hidden
`mkheadnode __man <dir>`.
*/

use crate::cli::args::Cli;
use anyhow::Context as _;
use clap::{Command, CommandFactory};
use clap_complete::Shell;
use std::io::Write;
use std::path::Path;

/// The name the completion scripts complete: the installed command.
const BIN_NAME: &str = "mkheadnode";

/// The completion script of `shell`, as text.
pub fn completion_script(shell: Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut completion_command(), BIN_NAME, &mut script);
    script
}

/// The command line as the completions should offer it. clap_complete's generators offer
/// hidden subcommands too (clap issue 1335), unlike clap_mangen and `--help`, and clap cannot
/// remove a subcommand: so the root is put together again from the parser's own arguments,
/// groups and visible subcommands, which leaves out only what completions never show.
fn completion_command() -> Command {
    let parser = Cli::command();
    Command::new(BIN_NAME)
        .version(env!("CARGO_PKG_VERSION"))
        .args(parser.get_arguments().cloned())
        .groups(parser.get_groups().cloned())
        .subcommands(
            parser
                .get_subcommands()
                .filter(|s| !s.is_hide_set())
                .cloned(),
        )
}

/// `mkheadnode completions <shell>`: print the script.
pub fn print_completions(shell: Shell) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(&completion_script(shell))
        .and_then(|()| out.flush())
        .context("writing the completion script to stdout")
}

/// `mkheadnode __man <dir>`: `mkheadnode.1` and a `mkheadnode-<command>.1` for every visible
/// subcommand, in `dir` (made if absent).
pub fn write_man_pages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("making {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("writing the man pages into {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_know_the_subcommands_but_not_the_hidden_ones() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = String::from_utf8(completion_script(shell)).unwrap();
            for sub in [
                "teardown",
                "rebuild",
                "list",
                "status",
                "check",
                "completions",
            ] {
                assert!(script.contains(sub), "{shell}: no {sub}");
            }
            for arg in Cli::command().get_arguments() {
                if let Some(long) = arg.get_long() {
                    assert!(script.contains(long), "{shell}: no --{long}");
                }
            }
            for hidden in ["__man", "__kvm-probe"] {
                assert!(!script.contains(hidden), "{shell} offers {hidden}");
            }
        }
    }

    #[test]
    fn a_man_page_per_visible_command() {
        let dir = tempfile::tempdir().unwrap();
        write_man_pages(dir.path()).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        // A page per visible command, and one per visible subcommand of those (profile add ...).
        let mut expected = vec!["mkheadnode.1".to_string()];
        for c in Cli::command()
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
        {
            expected.push(format!("mkheadnode-{}.1", c.get_name()));
            for sub in c.get_subcommands().filter(|s| !s.is_hide_set()) {
                expected.push(format!("mkheadnode-{}-{}.1", c.get_name(), sub.get_name()));
            }
        }
        expected.sort();
        assert_eq!(names, expected);
        for page in ["mkheadnode-create.1", "mkheadnode-completions.1"] {
            assert!(names.iter().any(|n| n == page), "no {page}");
        }
        let main = std::fs::read_to_string(dir.path().join("mkheadnode.1")).unwrap();
        assert!(main.contains(".TH mkheadnode 1"), "{main}");
        assert!(main.contains("6 refused"), "the exit statuses are missing");
    }
}
