//! The `sgnode` binary: parses arguments, sets up logging, runs the command
//! from the library and maps failures to exit codes.

use clap::Parser;

fn main() {
    let cli = sgnode::cli::Cli::parse();
    let default_level =
        if matches!(cli.command, sgnode::cli::CliCommand::Serve { .. }) { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default_level},openraft=warn")));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(error) = runtime.block_on(sgnode::cli::run(cli)) {
        eprintln!("error: {error:#}");
        std::process::exit(sgnode::cli::exit_code(&error));
    }
}
