use clap::Parser;

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
