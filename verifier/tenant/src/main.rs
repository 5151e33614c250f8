//! `dait-tenant`: parse the command line, set up logging, run. The commands and exit codes are in the
//! library's `cli` module.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = dait_tenant::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    dait_tenant::cli::run(cli)
}
