//! `dait-audit`: parse the command line and run. The commands and exit codes are in the library's `cli` module.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    dait_audit::cli::run(dait_audit::cli::Cli::parse())
}
