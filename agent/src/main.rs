//! `dait-host`: parse the command line, set up logging, run. Exit codes: 0 success, 1 runtime
//! failure (TEE device missing, I/O, keys, receipt log), 2 usage or configuration error.

use clap::Parser;

fn main() {
    let cli = dait_agent::config::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DAIT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dait-host: cannot start runtime: {e}");
            std::process::exit(dait_agent::EXIT_FAILURE);
        }
    };
    match rt.block_on(dait_agent::run(cli.command)) {
        Ok(()) => std::process::exit(dait_agent::EXIT_OK),
        Err(e) => {
            let code = e.exit_code();
            eprintln!("dait-host: {:#}", anyhow::Error::new(e));
            std::process::exit(code);
        }
    }
}
