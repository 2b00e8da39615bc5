//! Turns one link event into the deliveries the function would send for it: split with
//! [`parts::split`] at the callback's body limit, each message signed with [`signing::sign`].
//!
//! Used by `bench/console_bench.py` to load large accounts into `link-receiver` exactly as the function
//! delivers them. It lives here, not in link-registry, because an example builds its crate's
//! dev-dependencies, and link-registry's pull in the whole function and the AWS SDK.
//!
//! ```text
//! PROVIDER_SIGNING_SECRET=whsec_... cargo run --release -p link-contract --example split_and_sign \
//!     -- [MAX_BODY_BYTES] < event.json > deliveries.jsonl
//! ```
//!
//! Each output line: `{"id", "timestamp", "signature", "part": [index, count] | null, "body"}`.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use link_contract::event::LinkEvent;
use link_contract::parts;
use link_contract::signing::{sign, SigningSecret};

/// The function's default `PROVIDER_MAX_BODY_BYTES`.
const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("split_and_sign: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let max_bytes = match std::env::args().nth(1) {
        None => DEFAULT_MAX_BODY_BYTES,
        Some(n) => n
            .parse()
            .map_err(|_| format!("MAX_BODY_BYTES must be a number of bytes, got '{n}'"))?,
    };
    let raw = std::env::var("PROVIDER_SIGNING_SECRET").map_err(|_| {
        "set PROVIDER_SIGNING_SECRET to the receiver's whsec_... secret".to_string()
    })?;
    let secrets =
        SigningSecret::parse_list(&raw).map_err(|e| format!("PROVIDER_SIGNING_SECRET {e}"))?;
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| format!("could not read the event on stdin: {e}"))?;
    let event: LinkEvent =
        serde_json::from_str(&input).map_err(|e| format!("stdin is not a link event: {e}"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for m in parts::split(&event, max_bytes) {
        let line = serde_json::json!({
            "id": m.delivery_id,
            "timestamp": now,
            "signature": sign(&secrets, &m.delivery_id, now, m.json.as_bytes()),
            "part": m.part,
            "body": m.json,
        });
        writeln!(out, "{line}").map_err(|e| format!("could not write: {e}"))?;
    }
    out.flush().map_err(|e| format!("could not write: {e}"))
}
