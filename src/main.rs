//! The `rill` binary: reads broker.toml (and the command line) and runs the broker until
//! SIGTERM or SIGINT. See README.md for the two commands a newcomer needs.

use std::process::ExitCode;

use clap::Parser;

// Measured against glibc malloc (interleaved A/B, bench/RESULTS.md): +5 % single-record and
// +8 % 1,000-record requests/s; the produce path allocates per request across threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = rill::config::Cli::parse();
    let config = match rill::config::load(&cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("rill: {e}");
            return ExitCode::FAILURE;
        }
    };
    log::info!(
        "configuration loaded from {}: bind {}, data dir {}, {} configured topic(s)",
        cli.config.display(),
        config.server.bind,
        config.storage.data_dir.display(),
        config.topics.len()
    );
    let system = actix_rt::System::new();
    match system.block_on(rill::app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rill: {e}");
            ExitCode::FAILURE
        }
    }
}
