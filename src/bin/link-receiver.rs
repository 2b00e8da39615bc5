//! Reference receiver for providers: verifies Standard Webhooks signatures on account-link events and
//! writes each accepted event as one JSON line.
//!
//!   link-receiver [--listen ADDR] [--secret whsec_...]... [--out FILE|-] [--tolerance SECONDS]
//!
//! Environment: LINK_RECEIVER_LISTEN, PROVIDER_SIGNING_SECRET (space-separated for rotation),
//! LINK_RECEIVER_OUT. Flags win over the environment.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use account_link::receiver::Receiver;
use account_link::signing::{SigningSecret, DEFAULT_TOLERANCE_SECS};

const USAGE: &str = "usage: link-receiver [--listen ADDR] [--secret whsec_...]... [--out FILE|-] [--tolerance SECONDS]
  --listen     address to listen on (env LINK_RECEIVER_LISTEN, default 127.0.0.1:8080; port 0 picks one)
  --secret     a signing secret, repeat for rotation (env PROVIDER_SIGNING_SECRET, space-separated)
  --out        file to append accepted events to, one JSON line each, or - for stdout (env LINK_RECEIVER_OUT)
  --tolerance  accepted clock skew in seconds (default 300)";

struct Args {
    listen: String,
    secrets: String,
    out: String,
    tolerance: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: std::env::var("LINK_RECEIVER_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into()),
        secrets: String::new(),
        out: std::env::var("LINK_RECEIVER_OUT").unwrap_or_else(|_| "-".into()),
        tolerance: DEFAULT_TOLERANCE_SECS,
    };
    let mut flag_secrets = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = value()?,
            "--secret" => flag_secrets.push(value()?),
            "--out" => args.out = value()?,
            "--tolerance" => {
                args.tolerance = value()?
                    .parse()
                    .map_err(|_| "--tolerance takes whole seconds".to_string())?
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    args.secrets = if flag_secrets.is_empty() {
        std::env::var("PROVIDER_SIGNING_SECRET").unwrap_or_default()
    } else {
        flag_secrets.join(" ")
    };
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    lambda_runtime::tracing::init_default_subscriber();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("link-receiver: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let secrets = match SigningSecret::parse_list(&args.secrets) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("link-receiver: the signing secret {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let out: Box<dyn Write + Send> = if args.out == "-" {
        Box::new(std::io::stdout())
    } else {
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&args.out)
        {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("link-receiver: cannot open {}: {e}", args.out);
                return ExitCode::from(2);
            }
        }
    };
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("link-receiver: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(2);
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    // One parseable line on stderr, so scripts that ask for port 0 learn the port.
    eprintln!("link-receiver listening on http://{addr}");
    let receiver = Arc::new(Receiver::new(secrets, args.tolerance, out));
    tokio::select! {
        () = receiver.serve(listener) => {}
        _ = shutdown() => {}
    }
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
