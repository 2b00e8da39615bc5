//! `link-receiver`: see `link-receiver --help` and the crate docs.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use link_registry::config::{Cli, Command, LogFormat};
use link_registry::{healthcheck, Registry};
use tracing_appender::non_blocking::WorkerGuard;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        // No logging set up: its answer is the exit code and at most one line.
        Some(Command::Healthcheck(h)) => {
            let addr = healthcheck::target(h.listen);
            match healthcheck::check(addr, Duration::from_secs(h.timeout.max(1))) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(1, e),
            }
        }
        Some(Command::Migrate(db)) => {
            let _flush_on_exit = init_logs(cli.log_format);
            let url = match db.url() {
                Ok(u) => u,
                Err(e) => return fail(2, e),
            };
            match link_registry::migrate(&url).await {
                Ok(applied) if applied.is_empty() => {
                    eprintln!("link-receiver: the database schema is current; nothing to apply");
                    ExitCode::SUCCESS
                }
                Ok(applied) => {
                    eprintln!("link-receiver: applied migrations {applied:?}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(1, e),
            }
        }
        None => serve(cli).await,
    }
}

async fn serve(cli: Cli) -> ExitCode {
    let _flush_on_exit = init_logs(cli.log_format);
    let settings = match cli.settings() {
        Ok(s) => s,
        Err(e) => return fail(2, e),
    };
    let registry = match Registry::start(settings).await {
        Ok(r) => r,
        Err(e) => return fail(1, e),
    };
    if let Some(addr) = registry.local_addr() {
        // One parseable line, so scripts that ask for port 0 learn the port.
        eprintln!("link-receiver listening on http://{addr}");
    }
    registry.serve(shutdown()).await;
    ExitCode::SUCCESS
}

/// Logs to stderr; keep the guard until the end (it flushes what is still queued).
fn init_logs(format: LogFormat) -> WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Written by a thread of their own: a log line per delivery costs the request no write to stderr.
    let (writer, flush_on_exit) = tracing_appender::non_blocking(std::io::stderr());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
    flush_on_exit
}

fn fail(code: u8, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("link-receiver: {e}");
    ExitCode::from(code)
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
