//! Replays every input kept under fuzz/regressions/<target>/ (crashes the fuzzers found, and seeds)
//! through the same checks the fuzz targets run.

#[path = "../fuzz/checks.rs"]
mod checks;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        check(&std::fs::read(&path).unwrap());
        n += 1;
    }
    n
}

#[test]
fn parse_event_regressions() {
    assert!(replay("parse_event", checks::parse_event) > 0);
}

#[test]
fn verify_signature_regressions() {
    assert!(replay("verify_signature", checks::verify_signature) > 0);
}

#[test]
fn check_event_regressions() {
    assert!(replay("check_event", checks::check_event) > 0);
}
