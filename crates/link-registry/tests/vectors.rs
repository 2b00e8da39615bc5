//! Every delivery of `verifiers/vectors.json` through the Rust verification: link-contract's checks in
//! the order link-receiver makes them (`receiver.rs`: signature, event, delivery id, a timestamp not
//! ahead of the clock, the part's bounds, the event's claims; the proof; last the claims that name
//! another stack's link), and the proof through [`ProofVerifier`] against a local fake STS that serves
//! each vector's answer (and refuses, as STS does, a request that is not the one signed).
//! The Python and TypeScript verifiers run the same file (`verifiers/python`, `verifiers/typescript`);
//! `crates/link-contract/tests/vectors.rs` fails when the file is stale.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use base64::Engine;
use link_contract::event::{LinkEvent, SCHEMA_VERSION};
use link_contract::parts::check_part;
use link_contract::proof::{Expected, HEADER, SNS_ATTRIBUTE};
use link_contract::reason as r;
use link_contract::signing::{self, SigningSecret, WebhookHeaders};
use link_registry::proof::{ProofError, ProofVerifier, VerifierOptions};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Why a delivery was refused: the reason word and whether to retry.
type Refusal = (&'static str, bool);

fn refused(reason: &'static str) -> Refusal {
    (reason, false)
}

fn vectors() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../verifiers/vectors.json");
    let text = std::fs::read_to_string(&path).expect("verifiers/vectors.json exists");
    serde_json::from_str(&text).expect("verifiers/vectors.json is JSON")
}

/// A fake STS: answers `POST /` carrying the expected headers and body with the current vector's answer,
/// anything else with SignatureDoesNotMatch; counts requests.
struct FakeSts {
    url: String,
    answer: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
}

impl FakeSts {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let url = format!("http://{}/", listener.local_addr().expect("bound"));
        let answer = Arc::new(Mutex::new(Value::Null));
        let hits = Arc::new(AtomicUsize::new(0));
        let (a, h) = (answer.clone(), hits.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                h.fetch_add(1, Ordering::SeqCst);
                let sts = a.lock().expect("not poisoned").clone();
                tokio::spawn(async move {
                    let Some((method, path, headers, body)) = read_request(&mut stream).await
                    else {
                        return;
                    };
                    let _ = stream
                        .write_all(respond(&sts, &method, &path, &headers, &body).as_bytes())
                        .await;
                });
            }
        });
        Self { url, answer, hits }
    }
}

type Request = (String, String, BTreeMap<String, String>, Vec<u8>);

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((method, path, headers, body))
}

fn respond(
    sts: &Value,
    method: &str,
    path: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
) -> String {
    let expected = &sts["request"];
    let as_signed = method == "POST"
        && path == "/"
        && expected["body"].as_str().map(str::as_bytes) == Some(body)
        && expected["headers"].as_object().is_some_and(|want| {
            want.iter()
                .all(|(k, v)| headers.get(k).map(String::as_str) == v.as_str())
        });
    let (status, extra, text) = if as_signed {
        let extra: String = sts["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}: {}\r\n", v.as_str().unwrap_or_default()))
            .collect();
        (
            sts["status"].as_u64().unwrap_or(500),
            extra,
            sts["body"].as_str().unwrap_or_default().to_string(),
        )
    } else {
        (
            403,
            "content-type: text/xml\r\n".to_string(),
            "<ErrorResponse><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code><Message>not the request that was signed</Message></Error></ErrorResponse>".to_string(),
        )
    };
    format!(
        "HTTP/1.1 {status} Fake\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{text}",
        text.len()
    )
}

fn body(v: &Value) -> Vec<u8> {
    match (v["body"].as_str(), v["bodyBase64"].as_str()) {
        (Some(text), _) => text.as_bytes().to_vec(),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("bodyBase64 is base64"),
        _ => panic!("{}: no body", v["name"]),
    }
}

/// The event checks after the signature: JSON, schema version first (another version may have
/// another shape), then the whole event, its timestamp and link id, and the part's bounds.
fn event(body: &[u8]) -> Result<LinkEvent, Refusal> {
    let text = std::str::from_utf8(body).map_err(|_| refused(r::EVENT))?;
    let value: Value = serde_json::from_str(text).map_err(|_| refused(r::EVENT))?;
    match value["data"]["schemaVersion"].as_str() {
        None => return Err(refused(r::EVENT)),
        Some(v) if v != SCHEMA_VERSION => return Err(refused(r::SCHEMA_VERSION)),
        Some(_) => {}
    }
    let event: LinkEvent = serde_json::from_str(text).map_err(|_| refused(r::EVENT))?;
    if humantime::parse_rfc3339(&event.timestamp).is_err()
        || event.data.physical_resource_id.is_empty()
        || event.data.physical_resource_id.len() > 1024
    {
        return Err(refused(r::EVENT));
    }
    Ok(event)
}

fn part(event: &LinkEvent) -> Result<(), Refusal> {
    match &event.data.part {
        Some(p) => check_part(p).map_err(|e| refused(e.reason())),
        None => Ok(()),
    }
}

/// A timestamp from the future would win the ordering against every real event: at most `tolerance`
/// seconds ahead of `now` (link-receiver compares milliseconds).
fn not_ahead(event: &LinkEvent, now: u64, tolerance: u64) -> Result<(), Refusal> {
    let at = humantime::parse_rfc3339(&event.timestamp).map_err(|_| refused(r::EVENT))?;
    let at_ms = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    if at_ms > (u128::from(now) + u128::from(tolerance)) * 1000 {
        return Err(refused(r::TIMESTAMP_AHEAD));
    }
    Ok(())
}

/// The event's claims about itself: refused now, or, for a claim on another stack's link, once the proof
/// said who sent it (the reason to give then).
fn claims(event: &LinkEvent) -> Result<Option<&'static str>, Refusal> {
    match event.data.check_claims() {
        Ok(()) => Ok(None),
        Err(e) if e.is_conflict() => Ok(Some(e.reason())),
        Err(e) => Err(refused(e.reason())),
    }
}

/// The reason word of the registry's proof errors (I/O included).
fn proof_reason(e: &ProofError) -> &'static str {
    e.reason()
}

async fn prove(
    verifier: &ProofVerifier,
    proof: &str,
    audience: &str,
    delivery_id: &str,
    body: &[u8],
    event: &LinkEvent,
    now: u64,
) -> Result<String, Refusal> {
    let expected = Expected {
        audience,
        event_id: delivery_id,
        body,
        partition: &event.data.partition,
        account_id: &event.data.account_id,
    };
    match verifier.verify_at(proof, &expected, now).await {
        Ok(caller) => Ok(caller.arn),
        Err(e) => {
            let reason = proof_reason(&e);
            assert_eq!(e.is_retryable(), r::RETRYABLE.contains(&reason), "{e}");
            Err((reason, e.is_retryable()))
        }
    }
}

/// `(delivery id, caller)` of an accepted delivery.
type Accepted = (String, Option<String>);

async fn callback(v: &Value, verifier: &ProofVerifier) -> Result<Accepted, Refusal> {
    let config = &v["config"];
    let mode = config["mode"].as_str().expect("mode");
    let (hmac, proven) = (mode != "proof-only", mode != "hmac-only");
    let now = v["now"].as_u64().expect("now");
    let tolerance = config["tolerance"].as_u64().expect("tolerance");
    let headers: BTreeMap<String, String> = v["headers"]
        .as_object()
        .expect("headers")
        .iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                v.as_str().expect("a string").to_string(),
            )
        })
        .collect();
    let h = |name: &str| headers.get(name).map(String::as_str);
    // Headers first: nothing of the body is read for a delivery refused here.
    let checked = if hmac {
        WebhookHeaders::parse(
            h(signing::HEADER_ID),
            h(signing::HEADER_TIMESTAMP),
            h(signing::HEADER_SIGNATURE),
            now,
            tolerance,
        )
    } else {
        WebhookHeaders::parse_unsigned(
            h(signing::HEADER_ID),
            h(signing::HEADER_TIMESTAMP),
            now,
            tolerance,
        )
    }
    .map_err(|e| refused(e.reason()))?;
    let proof = if proven {
        Some(h(HEADER).ok_or(refused(r::PROOF_MISSING))?)
    } else {
        None
    };
    let body = body(v);
    std::str::from_utf8(&body).map_err(|_| refused(r::EVENT))?;
    if hmac {
        let secrets: Vec<&str> = config["secrets"]
            .as_array()
            .expect("secrets")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let secrets =
            SigningSecret::parse_list(&secrets.join(" ")).expect("the vector's secrets parse");
        checked
            .verify(&secrets, &body)
            .map_err(|e| refused(e.reason()))?;
    }
    let event = event(&body)?;
    if event.data.delivery_id() != checked.id {
        return Err(refused(r::WEBHOOK_ID));
    }
    not_ahead(&event, now, tolerance)?;
    part(&event)?;
    let conflict = claims(&event)?;
    let caller = match proof {
        Some(proof) => {
            let audience = config["audience"].as_str().expect("an audience");
            Some(prove(verifier, proof, audience, &checked.id, &body, &event, now).await?)
        }
        None => None,
    };
    if let Some(reason) = conflict {
        return Err(refused(reason));
    }
    Ok((checked.id, caller))
}

async fn sns(v: &Value, verifier: &ProofVerifier) -> Result<Accepted, Refusal> {
    let now = v["now"].as_u64().expect("now");
    let proof = v["attributes"][SNS_ATTRIBUTE]
        .as_str()
        .ok_or(refused(r::PROOF_MISSING))?;
    let tolerance = v["config"]["tolerance"].as_u64().expect("tolerance");
    let body = body(v);
    let event = event(&body)?;
    not_ahead(&event, now, tolerance)?;
    part(&event)?;
    let conflict = claims(&event)?;
    let id = event.data.delivery_id();
    let audience = v["config"]["audience"].as_str().expect("an audience");
    let caller = prove(verifier, proof, audience, &id, &body, &event, now).await?;
    if let Some(reason) = conflict {
        return Err(refused(reason));
    }
    Ok((id, Some(caller)))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rust_verification_gives_every_vector_its_expected_outcome() {
    let file = vectors();
    let fake = FakeSts::start().await;
    let verifier = ProofVerifier::with_options(VerifierOptions {
        endpoint_override: Some(fake.url.clone()),
        ..VerifierOptions::default()
    })
    .expect("a loopback override");
    let deliveries = file["deliveries"].as_array().expect("deliveries");
    assert!(deliveries.len() >= 100, "{}", deliveries.len());
    let mut failures = Vec::new();
    let (mut accepted, mut refusals) = (0, 0);
    for v in deliveries {
        let name = v["name"].as_str().expect("name");
        *fake.answer.lock().expect("not poisoned") = v["sts"].clone();
        fake.hits.store(0, Ordering::SeqCst);
        let got = match v["channel"].as_str() {
            Some("callback") => callback(v, &verifier).await,
            Some("sns") => sns(v, &verifier).await,
            other => panic!("{name}: channel {other:?}"),
        };
        let expect = &v["expect"];
        let matches = match &got {
            Ok((id, caller)) => {
                accepted += 1;
                expect["ok"] == true
                    && expect["deliveryId"].as_str() == Some(id.as_str())
                    && expect["caller"].as_str() == caller.as_deref()
            }
            Err((reason, retryable)) => {
                refusals += 1;
                expect["ok"] == false
                    && expect["reason"].as_str() == Some(*reason)
                    && expect["retryable"].as_bool() == Some(*retryable)
            }
        };
        let hits = fake.hits.load(Ordering::SeqCst);
        let want_hits = usize::from(!v["sts"].is_null());
        if !matches || hits != want_hits {
            failures.push(format!(
                "{name}: got {got:?} with {hits} STS requests, expected {expect} with {want_hits}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors:\n{}",
        failures.len(),
        deliveries.len(),
        failures.join("\n")
    );
    assert!(
        accepted >= 20 && refusals >= 80,
        "{accepted} accepted, {refusals} refused"
    );
}
