//! `dait-host-settle`: the agent's steps on the settlement contract (feature `settlement`). Exit codes: 0
//! success, 1 runtime failure (a revert, the chain, the TEE, I/O), 2 usage or configuration error.

use clap::Parser;

fn main() {
    let cli = dait_agent::settlement::Cli::parse();
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
            eprintln!("dait-host-settle: cannot start runtime: {e}");
            std::process::exit(dait_agent::EXIT_FAILURE);
        }
    };
    match rt.block_on(dait_agent::settlement::run(cli.command)) {
        Ok(()) => std::process::exit(dait_agent::EXIT_OK),
        Err(e) => {
            let code = e.exit_code();
            eprintln!("dait-host-settle: {:#}", anyhow::Error::new(e));
            std::process::exit(code);
        }
    }
}
