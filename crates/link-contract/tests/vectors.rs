//! `verifiers/vectors.json`: that it is what the generator writes now (so a change to the contract that
//! changes the vectors fails here until they are regenerated), that every reason word has a vector, and
//! that link-contract reassembles the reassembly vectors as they expect. The delivery vectors run
//! through link-contract and the registry's `ProofVerifier` in `crates/link-registry/tests/vectors.rs`.

#[path = "../examples/vectors/generate.rs"]
#[allow(dead_code)]
mod generate;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use link_contract::event::LinkEvent;
use link_contract::parts::{self, check_part, envelope_difference, MAX_SET_BYTES};
use link_contract::reason;
use serde_json::Value;

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../verifiers/vectors.json")
}

fn committed() -> Value {
    let text = std::fs::read_to_string(path()).expect("verifiers/vectors.json exists");
    serde_json::from_str(&text).expect("verifiers/vectors.json is JSON")
}

#[test]
fn the_committed_vectors_are_what_the_generator_writes() {
    let committed = std::fs::read_to_string(path()).expect("verifiers/vectors.json exists");
    let fresh = generate::render();
    if committed != fresh {
        let first = committed
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .map_or("its length".to_string(), |i| format!("line {}", i + 1));
        panic!(
            "verifiers/vectors.json is stale (it differs at {first}): run `cargo run -p link-contract --example vectors` \
             and commit the result"
        );
    }
}

#[test]
fn every_reason_has_a_hostile_vector() {
    let v = committed();
    let mut seen = BTreeSet::new();
    for d in v["deliveries"].as_array().expect("deliveries") {
        if let Some(r) = d["expect"]["reason"].as_str() {
            seen.insert(r.to_string());
        }
    }
    for d in v["reassembly"].as_array().expect("reassembly") {
        if let Some(r) = d["expect"]["reason"].as_str() {
            seen.insert(r.to_string());
        }
    }
    let all: BTreeSet<String> = reason::ALL.iter().map(|(w, _)| w.to_string()).collect();
    assert!(
        seen.is_subset(&all),
        "unknown reasons: {:?}",
        seen.difference(&all)
    );
    // These two depend on load, not on a delivery: each verifier's own tests provoke them.
    let by_load: BTreeSet<String> = [reason::BUSY, reason::REASSEMBLY_FULL]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let missing: Vec<&String> = all
        .difference(&seen)
        .filter(|w| !by_load.contains(*w))
        .collect();
    assert!(missing.is_empty(), "reasons without a vector: {missing:?}");
}

/// Every accepted delivery's event holds together, and every vector refused for a claim is refused by
/// `LinkData::check_claims` with that reason (its first failing claim), whatever the order around it.
#[test]
fn the_claim_vectors_are_check_claims_own() {
    let v = committed();
    let claim_words = [
        reason::STACK_ID,
        reason::STACK_MISMATCH,
        reason::LINK_ID,
        reason::LOGICAL_RESOURCE_ID,
        reason::ROLE,
        reason::EXTERNAL_ID,
        reason::VPC_ID,
        reason::REGION,
    ];
    let (mut genuine, mut claims) = (0, 0);
    for d in v["deliveries"].as_array().expect("deliveries") {
        let name = d["name"].as_str().expect("name");
        let expected = d["expect"]["reason"].as_str();
        let ok = d["expect"]["ok"] == true;
        if !ok && !expected.is_some_and(|r| claim_words.contains(&r)) {
            continue;
        }
        let e: LinkEvent = serde_json::from_str(d["body"].as_str().expect("a text body"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = e.data.check_claims().err();
        if ok {
            genuine += 1;
            assert_eq!(got, None, "{name}");
        } else {
            claims += 1;
            let got = got.unwrap_or_else(|| panic!("{name}: its claims hold"));
            assert_eq!(Some(got.reason()), expected, "{name}: {got}");
            assert_eq!(got.is_conflict(), reason::CONFLICTS.contains(&got.reason()));
        }
    }
    assert!(
        genuine >= 25 && claims >= 25,
        "{genuine} genuine, {claims} refused for a claim"
    );
}

/// What a reassembler does with one more part (the rules the Python and TypeScript reassemblers
/// implement): bounds, the split's envelope, duplicates ignored, at most 16 MiB per split, and the whole
/// event once every part has arrived.
#[derive(Default)]
struct Reference {
    open: BTreeMap<(String, String), Split>,
}

/// An incomplete split: its first part (whose envelope the others must carry), the parts by index, their bytes.
struct Split {
    first: LinkEvent,
    held: BTreeMap<usize, LinkEvent>,
    bytes: usize,
}

impl Reference {
    fn add(&mut self, e: LinkEvent, size: usize) -> Result<Option<LinkEvent>, &'static str> {
        let Some(part) = e.data.part.clone() else {
            return Ok(Some(e));
        };
        check_part(&part).map_err(|e| e.reason())?;
        let key = (e.data.event_id.clone(), part.set.clone());
        let split = self.open.entry(key.clone()).or_insert_with(|| Split {
            first: e.clone(),
            held: BTreeMap::new(),
            bytes: 0,
        });
        if envelope_difference(&split.first, &e).is_some() {
            return Err(reason::PART_ENVELOPE);
        }
        if split.held.contains_key(&part.index) {
            return Ok(None);
        }
        split.bytes += size;
        if split.bytes > MAX_SET_BYTES {
            self.open.remove(&key);
            return Err(reason::PART_SET_SIZE);
        }
        split.held.insert(part.index, e);
        if split.held.len() < part.count {
            return Ok(None);
        }
        let split = self.open.remove(&key).expect("just used");
        parts::reassemble(split.held.into_values().collect())
            .map(Some)
            .map_err(|e| e.reason())
    }
}

#[test]
fn link_contract_reassembles_the_reassembly_vectors() {
    let v = committed();
    let vectors = v["reassembly"].as_array().expect("reassembly");
    assert!(vectors.len() >= 15);
    for vector in vectors {
        let name = vector["name"].as_str().expect("name");
        let expect = &vector["expect"];
        let parts = vector["parts"].as_array().expect("parts");
        let ok = expect["ok"].as_bool() == Some(true);
        let refused_at = expect["at"].as_u64().map(|i| i as usize);
        let mut r = Reference::default();
        let mut last = None;
        for (i, p) in parts.iter().enumerate() {
            let e: LinkEvent =
                serde_json::from_str(p["body"].as_str().expect("body")).expect("a part");
            let size = p["size"].as_u64().expect("size") as usize;
            let got = r.add(e, size);
            if !ok && refused_at == Some(i) {
                assert_eq!(got.err(), expect["reason"].as_str(), "{name}: part {i}");
                break;
            }
            let done = got.unwrap_or_else(|reason| panic!("{name}: part {i} refused: {reason}"));
            assert!(
                done.is_none() || i + 1 == parts.len(),
                "{name}: part {i} completed early"
            );
            last = done;
        }
        if ok {
            match last {
                Some(e) => assert_eq!(
                    serde_json::to_value(e).expect("serializes"),
                    expect["whole"],
                    "{name}"
                ),
                None => assert!(expect["whole"].is_null(), "{name}: nothing completed"),
            }
        } else {
            assert!(refused_at.is_some_and(|i| i < parts.len()), "{name}");
        }
    }
}
