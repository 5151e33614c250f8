//! `dait-measure`: see the library's `cli` module for the commands and exit codes.

use clap::Parser;

fn main() -> std::process::ExitCode {
    dait_measure::cli::run(dait_measure::cli::Cli::parse())
}
