//! `link-receiver`: see `link-receiver --help` and the crate docs.

use std::process::ExitCode;

use clap::Parser;
use link_registry::config::{Cli, LogFormat};
use link_registry::Registry;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Written by a thread of their own: a log line per delivery costs the request no write to stderr.
    let (writer, _flush_on_exit) = tracing_appender::non_blocking(std::io::stderr());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
    let settings = match cli.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("link-receiver: {e}");
            return ExitCode::from(2);
        }
    };
    let registry = match Registry::start(settings).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("link-receiver: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(addr) = registry.local_addr() {
        // One parseable line, so scripts that ask for port 0 learn the port.
        eprintln!("link-receiver listening on http://{addr}");
    }
    registry.serve(shutdown()).await;
    ExitCode::SUCCESS
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
