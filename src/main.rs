#![forbid(unsafe_code)]

use clap::Parser;

/// mimalloc: a login allocates many small short-lived objects across threads,
/// where it measurably beats the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = ssogate::config::Cli::parse();
    match ssogate::server::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ssogate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
