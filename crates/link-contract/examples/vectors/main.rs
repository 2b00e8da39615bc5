//! Writes `verifiers/vectors.json`, the test vectors the Rust, Python and TypeScript verifiers run:
//!
//! ```text
//! cargo run -p link-contract --example vectors
//! ```
//!
//! The output is deterministic; `tests/vectors.rs` fails when the committed file differs from it.

mod generate;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../verifiers/vectors.json");
    let file = generate::file();
    let (deliveries, reassembly) = (file.deliveries.len(), file.reassembly.len());
    match std::fs::write(&path, generate::render()) {
        Ok(()) => {
            let path = path.canonicalize().unwrap_or(path);
            println!(
                "wrote {} ({deliveries} deliveries, {reassembly} reassembly vectors)",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vectors: could not write {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}
