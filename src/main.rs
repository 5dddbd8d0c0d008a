//! The `mkheadnode` command: parse, run, map the outcome to an exit status.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = mkheadnode::cli::args::Cli::parse();
    match mkheadnode::cli::app::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let kind = mkheadnode::error::kind_of(&err);
            // Bulk runs have already printed each VLAN's error; print the summary error only.
            eprintln!("mkheadnode: {err:#}");
            ExitCode::from(kind.exit_code())
        }
    }
}
