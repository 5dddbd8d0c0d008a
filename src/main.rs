//! The `mkheadnode` command: parse, run, map the outcome to an exit status.

use clap::Parser;
use mkheadnode::cli::app;
use mkheadnode::cli::args::Cli;
use mkheadnode::error::kind_of;
use std::process::ExitCode;

fn main() -> ExitCode {
    match app::run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let kind = kind_of(&err);
            // Bulk runs have already printed each VLAN's error; print the summary error only.
            eprintln!("mkheadnode: {err:#}");
            ExitCode::from(kind.exit_code())
        }
    }
}
