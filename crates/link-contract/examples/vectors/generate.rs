//! The test vectors every verifier runs (`verifiers/vectors.json`): genuine deliveries and one hostile
//! variant per check, each with the reason it must be refused with. Deterministic: fixed secrets, fixed
//! test credentials, fixed times (each vector carries the `now` to verify at), the examples of
//! `docs/examples/`. Shared by the example (which writes the file) and the test that fails when the file
//! is stale (`tests/vectors.rs`).
//!
//! The proofs are real SigV4 signatures, made here with fixed test credentials (compared with botocore's
//! by `tests/contract/test_vectors.py`). What STS answers is part of each vector: the verifiers' tests
//! serve it from a local fake STS, which answers `SignatureDoesNotMatch` as the real one would when the
//! request it receives is not the one signed.

use std::collections::BTreeMap;

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use link_contract::event::{link_id, LinkEvent};
use link_contract::partition::{sts_endpoint, Partition};
use link_contract::parts::{self, envelope_fields, MAX_PARTS, MAX_SET_BYTES, SET_LEN};
use link_contract::proof::{
    self, sha256_hex, Binding, SignedRequest, CONTENT_TYPE, MAX_AGE_SECS, MAX_PROOF_LEN, STS_BODY,
};
use link_contract::reason::{self as r, RETRYABLE};
use link_contract::signing::{
    self, SigningSecret, DEFAULT_TOLERANCE_SECS, MAX_ID_LEN, MAX_SIGNATURE_CANDIDATES,
    MAX_SIGNATURE_ENTRIES,
};

/// 2026-11-23T12:00:00Z, the time of the documentation's examples.
pub(crate) const NOW: u64 = 1_795_435_200;
const AUDIENCE: &str = "https://hooks.provider.example";
const ACCOUNT: &str = "123456789012";
const ACCESS_KEY_ID: &str = "ASIAVECTORSEXAMPLE01";
const SECRET_ACCESS_KEY: &str = "vectorsEXAMPLEsecretACCESSkeyNOTreal0123";
const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLE/vectors+session/token==";
const ROLE: &str = "account-link-FunctionRole-1A2B3C4D5E6F";
const SESSION: &str = "account-link-Function-7G8H9I0J1K2L";

const LINKED: &str = include_str!("../../../../docs/examples/account.linked.json");
const UPDATED: &str = include_str!("../../../../docs/examples/account.updated.json");
const UNLINKED: &str = include_str!("../../../../docs/examples/account.unlinked.json");

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct File {
    about: &'static str,
    generator: &'static str,
    test_credentials: Credentials,
    limits: Limits,
    reasons: Vec<Reason>,
    envelope_fields: Vec<&'static str>,
    sts_endpoints: Vec<StsHost>,
    /// Hosts shaped like STS endpoints that are none: a verifier must refuse every one (`proof-host`).
    sts_hosts_refused: Vec<String>,
    fake_sts: &'static str,
    pub deliveries: Vec<Delivery>,
    pub reassembly: Vec<ReassemblyVector>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Credentials {
    access_key_id: &'static str,
    secret_access_key: &'static str,
    session_token: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Limits {
    tolerance_secs: u64,
    max_id_len: usize,
    max_signature_candidates: usize,
    max_signature_entries: usize,
    max_proof_len: usize,
    max_proof_age_secs: u64,
    max_parts: usize,
    max_set_bytes: usize,
    set_len: usize,
}

/// An STS endpoint a proof may name: every one there is (`sts_endpoint` refuses all other hosts).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StsHost {
    host: String,
    partition: &'static str,
    signing_region: String,
}

#[derive(Serialize)]
struct Reason {
    word: &'static str,
    meaning: &'static str,
    retryable: bool,
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Delivery {
    pub name: String,
    about: String,
    /// `callback` (HTTP headers and body) or `sns` (message attributes and `Message`).
    channel: &'static str,
    config: Config,
    now: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<BTreeMap<String, String>>,
    /// The body as text, or `bodyBase64` when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
    /// What STS answers to the signed request; null when the verifier must not call STS.
    sts: Option<Sts>,
    expect: Expect,
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Config {
    mode: &'static str,
    secrets: Vec<String>,
    audience: Option<&'static str>,
    tolerance: u64,
}

#[derive(Serialize, Clone)]
struct Sts {
    /// The request the fake expects (`POST /`): these headers with these values, and this body.
    request: StsRequest,
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

#[derive(Serialize, Clone)]
struct StsRequest {
    headers: BTreeMap<String, String>,
    body: &'static str,
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Expect {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivery_id: Option<String>,
    /// The caller STS names (null when the mode checks no proof).
    #[serde(skip_serializing_if = "Option::is_none")]
    caller: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retryable: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReassemblyVector {
    pub name: String,
    about: &'static str,
    /// Fed one at a time to a fresh reassembler; `size` is the delivery's body length in bytes.
    pub parts: Vec<PartInput>,
    pub expect: ReassemblyExpect,
}

#[derive(Serialize)]
pub(crate) struct PartInput {
    pub body: String,
    pub size: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReassemblyExpect {
    pub ok: bool,
    /// The event the last part completes, or null when none is complete (every add returns nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whole: Option<Option<LinkEvent>>,
    /// The refused part (0-based) and why; the ones before it return nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// The file's text.
pub(crate) fn render() -> String {
    let mut text = serde_json::to_string_pretty(&file()).expect("vectors serialize");
    text.push('\n');
    text
}

pub(crate) fn file() -> File {
    File {
        about: "Test vectors for account-link delivery verifiers: genuine deliveries and one hostile variant per check, \
                with the reason each must be refused with. Verify each delivery at its `now` with its `config`; serve `sts` \
                from a local fake STS (see fakeSts). Reassembly vectors feed parts, one at a time, to a fresh reassembler.",
        generator: "cargo run -p link-contract --example vectors (do not edit by hand)",
        test_credentials: Credentials {
            access_key_id: ACCESS_KEY_ID,
            secret_access_key: SECRET_ACCESS_KEY,
            session_token: SESSION_TOKEN,
        },
        limits: Limits {
            tolerance_secs: DEFAULT_TOLERANCE_SECS,
            max_id_len: MAX_ID_LEN,
            max_signature_candidates: MAX_SIGNATURE_CANDIDATES,
            max_signature_entries: MAX_SIGNATURE_ENTRIES,
            max_proof_len: MAX_PROOF_LEN,
            max_proof_age_secs: MAX_AGE_SECS,
            max_parts: MAX_PARTS,
            max_set_bytes: MAX_SET_BYTES,
            set_len: SET_LEN,
        },
        reasons: r::ALL
            .iter()
            .map(|(word, meaning)| Reason {
                word,
                meaning,
                retryable: RETRYABLE.contains(word),
            })
            .collect(),
        envelope_fields: envelope_fields(&linked()).iter().map(|(n, _)| *n).collect(),
        sts_endpoints: sts_endpoints(),
        sts_hosts_refused: sts_hosts_refused(),
        fake_sts: "Answer a POST to / whose body is sts.request.body and which carries every header of sts.request.headers \
                   with that exact value with sts.status, sts.headers and sts.body; answer any other request with 403 and \
                   an ErrorResponse whose Code is SignatureDoesNotMatch, as STS does. Count the requests: none when sts is \
                   null, exactly one otherwise (redirects are never followed).",
        deliveries: deliveries(),
        reassembly: reassembly(),
    }
}

/// Every host `sts_endpoint` accepts: the global, regional and FIPS names of each partition's regions.
fn sts_endpoints() -> Vec<StsHost> {
    let mut out = Vec::new();
    for p in Partition::all() {
        let mut candidates = vec![format!("sts.{}", p.dns_suffix)];
        for r in p.regions() {
            candidates.push(format!("sts.{r}.{}", p.dns_suffix));
            candidates.push(format!("sts-fips.{r}.{}", p.dns_suffix));
        }
        for host in candidates {
            if let Some(e) = sts_endpoint(&host) {
                out.push(StsHost {
                    host,
                    partition: e.partition.name,
                    signing_region: e.signing_region,
                });
            }
        }
    }
    out.sort_by(|a, b| a.host.cmp(&b.host));
    out.dedup_by(|a, b| a.host == b.host);
    out
}

/// The regional and FIPS names of every region (and of a few that do not exist) under every partition's
/// DNS suffix, and FIPS names without a region, that `sts_endpoint` refuses: FIPS in a partition without
/// FIPS endpoints, a region under another partition's suffix, a region no partition has.
fn sts_hosts_refused() -> Vec<String> {
    let mut regions: Vec<&str> = Partition::all()
        .iter()
        .flat_map(|p| p.regions())
        .copied()
        .collect();
    regions.extend([
        "zz-fake-9",
        "us-east-9",
        "us-gov-north-7",
        "cn-south-5",
        "us-isof-south-1",
    ]);
    let mut out = Vec::new();
    for suffix in Partition::dns_suffixes() {
        out.push(format!("sts-fips.{suffix}"));
        out.push(format!("sts.{suffix}"));
        for r in &regions {
            out.push(format!("sts.{r}.{suffix}"));
            out.push(format!("sts-fips.{r}.{suffix}"));
        }
    }
    out.retain(|h| sts_endpoint(h).is_none());
    out.sort();
    out.dedup();
    out
}

// ---------------------------------------------------------------------------------------------------
// Fixed inputs.

fn secret_a() -> SigningSecret {
    SigningSecret::from_bytes((0u8..32).collect())
}

fn secret_b() -> SigningSecret {
    SigningSecret::from_bytes((0u8..32).map(|b| 0xa0 ^ b).collect())
}

fn event(text: &str) -> LinkEvent {
    serde_json::from_str(text).expect("the documentation's example is a link event")
}

fn linked() -> LinkEvent {
    event(LINKED)
}

/// The linked example in the China partition (its STS endpoint, ARNs and regions).
fn linked_cn() -> LinkEvent {
    linked_in(
        "aws-cn",
        ["cn-north-1", "cnn1-az", "cn-northwest-1"],
        "msg_3c6e0b8a5f1d4e2a9b7c0d1e2f3a4b5c",
    )
}

/// The linked example in AWS GovCloud (US).
fn linked_gov() -> LinkEvent {
    linked_in(
        "aws-us-gov",
        ["us-gov-west-1", "usgw1-az", "us-gov-east-1"],
        "msg_5d8f2c1e7a9b4c3d8e6f0a1b2c3d4e5f",
    )
}

/// The linked example in another partition: `[stack region, its AZ id prefix, the other listed region]`
/// replace us-west-2, usw2-az and us-east-1.
fn linked_in(partition: &str, [region, az, other]: [&str; 3], event_id: &str) -> LinkEvent {
    let text = LINKED
        .replace("arn:aws:", &format!("arn:{partition}:"))
        .replace(
            "\"partition\": \"aws\"",
            &format!("\"partition\": \"{partition}\""),
        )
        .replace("us-west-2", region)
        .replace("usw2-az", az)
        .replace("us-east-1", other);
    let mut e = event(&text);
    e.data.event_id = event_id.into();
    // Another stack ARN is another link: the id the function derives for it.
    e.data.physical_resource_id = link_id(&e.data.stack_id, &e.data.logical_resource_id);
    e
}

fn json(e: &LinkEvent) -> String {
    serde_json::to_string(e).expect("an event serializes")
}

/// The linked example split into three parts: at the smallest body limit that gives three (the
/// function's limit is 1 MiB, the format the same).
fn split() -> Vec<parts::Message> {
    split_in_three(&linked())
}

fn split_in_three(e: &LinkEvent) -> Vec<parts::Message> {
    (500..8000)
        .step_by(10)
        .map(|limit| parts::split(e, limit))
        .find(|messages| messages.len() == 3)
        .expect("some body limit splits the example in three")
}

/// Unix seconds of an RFC 3339 UTC time without fraction (`2026-11-23T12:30:00Z`, the examples').
fn unix_seconds(t: &str) -> u64 {
    let n = |range: std::ops::Range<usize>| -> u64 {
        t.get(range)
            .and_then(|s| s.parse().ok())
            .expect("an RFC 3339 UTC time")
    };
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Howard Hinnant's days_from_civil, for dates after 1970.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    assert_eq!(
        amz_date(secs),
        t.replace(['-', ':'], ""),
        "{t} is YYYY-MM-DDTHH:MM:SSZ"
    );
    secs
}

/// `YYYYMMDDTHHMMSSZ` of Unix seconds.
fn amz_date(t: u64) -> String {
    let (days, secs) = (t / 86_400, t % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

// ---------------------------------------------------------------------------------------------------
// Proofs: SigV4 over the GetCallerIdentity request, as the function signs it.

struct ProofParams {
    host: String,
    region: String,
    signed_at: u64,
    audience: String,
    event_id: String,
    body: Vec<u8>,
}

impl ProofParams {
    fn new(event_id: &str, body: &[u8]) -> Self {
        Self {
            host: "sts.us-west-2.amazonaws.com".into(),
            region: "us-west-2".into(),
            signed_at: NOW,
            audience: AUDIENCE.into(),
            event_id: event_id.into(),
            body: body.to_vec(),
        }
    }

    fn sign(&self) -> SignedRequest {
        let date = amz_date(self.signed_at);
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        headers.insert("content-type".into(), CONTENT_TYPE.into());
        headers.insert("host".into(), self.host.clone());
        headers.insert("x-amz-date".into(), date.clone());
        headers.insert("x-amz-security-token".into(), SESSION_TOKEN.into());
        let binding = Binding {
            audience: &self.audience,
            event_id: &self.event_id,
            body: &self.body,
        };
        for (name, value) in binding.headers() {
            headers.insert(name.into(), value);
        }
        let authorization = sigv4(&headers, &date, &self.region);
        headers.insert("authorization".into(), authorization);
        SignedRequest {
            method: "POST".into(),
            url: format!("https://{}/", self.host),
            headers,
            body: STS_BODY.into(),
        }
    }
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The `authorization` header of a SigV4 signature of `POST /` with `headers` (lowercase names, all
/// signed) and the GetCallerIdentity body.
fn sigv4(headers: &BTreeMap<String, String>, amz: &str, region: &str) -> String {
    let signed: Vec<&str> = headers.keys().map(String::as_str).collect();
    let canonical_headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let canonical = format!(
        "POST\n/\n\n{canonical_headers}\n{}\n{}",
        signed.join(";"),
        sha256_hex(STS_BODY.as_bytes())
    );
    let scope = format!("{}/{region}/sts/aws4_request", &amz[..8]);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let mut key = format!("AWS4{SECRET_ACCESS_KEY}").into_bytes();
    for part in [&amz[..8], region, "sts", "aws4_request"] {
        key = hmac(&key, part);
    }
    let signature = link_contract::hex::encode(&hmac(&key, &to_sign));
    format!(
        "AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/{scope}, SignedHeaders={}, Signature={signature}",
        signed.join(";")
    )
}

/// The proof with one change made after signing.
fn edited(req: &SignedRequest, f: impl FnOnce(&mut SignedRequest)) -> SignedRequest {
    let mut req = req.clone();
    f(&mut req);
    req
}

fn set_header(req: &mut SignedRequest, name: &str, value: &str) {
    req.headers.insert(name.into(), value.into());
}

/// Replaces `from` by `to` in the authorization header.
fn edit_authorization(req: &mut SignedRequest, from: &str, to: &str) {
    let a = req.headers["authorization"].replacen(from, to, 1);
    assert_ne!(
        a, req.headers["authorization"],
        "{from} is in the authorization"
    );
    set_header(req, "authorization", &a);
}

/// A proof whose JSON text is edited (for what no [`SignedRequest`] can hold). Text, not a
/// `serde_json::Value`: the order of a `Value`'s keys depends on the features the build unifies.
fn raw_proof(req: &SignedRequest, from: &str, to: &str) -> String {
    let text = serde_json::to_string(req).expect("a proof serializes");
    format!("v1.{}", B64URL.encode(replaced(&text, from, to)))
}

/// `text` with the first `from` replaced by `to`; `from` must be there.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from} is not in the text");
    text.replacen(from, to, 1)
}

// ---------------------------------------------------------------------------------------------------
// STS's answers.

fn caller_arn(partition: &str) -> String {
    format!("arn:{partition}:sts::{ACCOUNT}:assumed-role/{ROLE}/{SESSION}")
}

fn identity_xml(account: &str, arn: &str) -> String {
    format!(
        "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <GetCallerIdentityResult>\n    \
         <Arn>{arn}</Arn>\n    <UserId>AROAVECTORSEXAMPLE02:{SESSION}</UserId>\n    <Account>{account}</Account>\n  \
         </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>4f7c1a52-3b8e-4d0c-9a6f-2e1b5c8d7a90</RequestId>\n  \
         </ResponseMetadata>\n</GetCallerIdentityResponse>\n"
    )
}

fn error_xml(kind: &str, code: &str, message: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <Error>\n    <Type>{kind}</Type>\n    \
         <Code>{code}</Code>\n    <Message>{message}</Message>\n  </Error>\n  \
         <RequestId>9b2d6e4f-0a1c-4e8b-b3d5-7f6a8c9e0d12</RequestId>\n</ErrorResponse>\n"
    )
}

fn answer(req: &SignedRequest, status: u16, body: String) -> Sts {
    let mut headers = BTreeMap::new();
    if !body.is_empty() {
        headers.insert("content-type".into(), "text/xml".into());
    }
    Sts {
        request: StsRequest {
            headers: req
                .headers
                .iter()
                .filter(|(n, _)| *n != "host")
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect(),
            body: STS_BODY,
        },
        status,
        headers,
        body,
    }
}

fn genuine_answer(req: &SignedRequest, partition: &str) -> Sts {
    answer(req, 200, identity_xml(ACCOUNT, &caller_arn(partition)))
}

// ---------------------------------------------------------------------------------------------------
// Deliveries.

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    HmacAndProof,
    ProofOnly,
    HmacOnly,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::HmacAndProof => "hmac-and-proof",
            Self::ProofOnly => "proof-only",
            Self::HmacOnly => "hmac-only",
        }
    }
    fn hmac(self) -> bool {
        self != Self::ProofOnly
    }
    fn proof(self) -> bool {
        self != Self::HmacOnly
    }
}

/// The reasons given after STS answered; every other refusal comes before STS is called. The claims that
/// name another stack's link ([`r::CONFLICTS`]) come after the proof, as in link-receiver, which records
/// who attempted them.
const STS_STAGE: &[&str] = &[
    r::STS_REDIRECT,
    r::STS_REFUSED,
    r::STS_UNAVAILABLE,
    r::STS_ANSWER,
    r::PROOF_ACCOUNT,
    r::PROOF_CALLER,
    r::STACK_MISMATCH,
    r::LINK_ID,
];

/// A delivery under construction: genuine until edited.
#[derive(Clone)]
struct Builder {
    d: Delivery,
    mode: Mode,
    id: String,
    timestamp: u64,
    body: Vec<u8>,
    /// The proof as signed, when it is a [`SignedRequest`].
    proof: Option<SignedRequest>,
    partition: &'static str,
    /// When it is sent (and verified): `now`, webhook-timestamp and the proof's date.
    at: u64,
}

impl Builder {
    /// A genuine callback delivery of `body` with delivery id `id`, signed with secret A.
    fn callback(mode: Mode, id: &str, body: &[u8], partition: &'static str) -> Self {
        Self::callback_at(mode, id, body, partition, NOW)
    }

    /// [`Self::callback`], sent and verified at `at` (an event built later than the examples' `NOW`).
    fn callback_at(mode: Mode, id: &str, body: &[u8], partition: &'static str, at: u64) -> Self {
        let mut b = Self {
            d: Delivery {
                name: String::new(),
                about: String::new(),
                channel: "callback",
                config: Config {
                    mode: mode.name(),
                    secrets: if mode.hmac() {
                        vec![secret_a().to_whsec()]
                    } else {
                        vec![]
                    },
                    audience: mode.proof().then_some(AUDIENCE),
                    tolerance: DEFAULT_TOLERANCE_SECS,
                },
                now: at,
                headers: Some(BTreeMap::new()),
                attributes: None,
                body: None,
                body_base64: None,
                sts: None,
                expect: Expect {
                    ok: true,
                    delivery_id: Some(id.into()),
                    caller: Some(None),
                    reason: None,
                    retryable: None,
                },
            },
            mode,
            id: id.into(),
            timestamp: at,
            body: body.to_vec(),
            proof: None,
            partition,
            at,
        };
        b.header("content-type", "application/json");
        b.header("user-agent", "account-link/0.1.0");
        b.header(signing::HEADER_ID, id);
        b.header(signing::HEADER_TIMESTAMP, &at.to_string());
        if mode.hmac() {
            b.sign(&[secret_a()]);
        }
        if mode.proof() {
            let req = ProofParams {
                signed_at: at,
                ..ProofParams::new(id, body)
            }
            .sign();
            b.set_proof(req);
        }
        b
    }

    /// A genuine SNS message of `body` (its delivery id `id`), with its proof.
    fn sns(id: &str, body: &[u8], part: Option<(usize, usize)>) -> Self {
        let e: LinkEvent = serde_json::from_slice(body).expect("an event");
        let mut b = Self::callback(Mode::ProofOnly, id, body, "aws");
        b.d.channel = "sns";
        b.d.headers = None;
        let mut attributes = BTreeMap::new();
        attributes.insert("eventType".to_string(), e.event_type.as_str().to_string());
        attributes.insert("eventId".into(), e.data.event_id.clone());
        if let Some((i, n)) = part {
            attributes.insert("part".into(), format!("{i}/{n}"));
        }
        attributes.insert(proof::SNS_ATTRIBUTE.into(), b.signed_proof().encode());
        b.d.attributes = Some(attributes);
        b
    }

    fn header(&mut self, name: &str, value: &str) -> &mut Self {
        self.d
            .headers
            .as_mut()
            .expect("a callback")
            .insert(name.into(), value.into());
        self
    }

    fn remove_header(&mut self, name: &str) -> &mut Self {
        self.d.headers.as_mut().expect("a callback").remove(name);
        self
    }

    /// Signs id, timestamp and body with `secrets` (what the sender holds).
    fn sign(&mut self, secrets: &[SigningSecret]) -> &mut Self {
        let sig = signing::sign(secrets, &self.id, self.timestamp, &self.body);
        self.header(signing::HEADER_SIGNATURE, &sig)
    }

    /// Carries `req` as the proof; STS answers it genuinely.
    fn set_proof(&mut self, req: SignedRequest) -> &mut Self {
        self.set_raw_proof(&req.encode());
        self.d.sts = Some(genuine_answer(&req, self.partition));
        self.d.expect.caller = Some(Some(caller_arn(self.partition)));
        self.proof = Some(req);
        self
    }

    /// Carries `text` as the proof, whatever it is; STS is not to be called.
    fn set_raw_proof(&mut self, text: &str) -> &mut Self {
        if let Some(h) = self.d.headers.as_mut() {
            h.insert(proof::HEADER.into(), text.into());
        } else if let Some(a) = self.d.attributes.as_mut() {
            a.insert(proof::SNS_ATTRIBUTE.into(), text.into());
        }
        self.d.sts = None;
        self
    }

    fn signed_proof(&self) -> &SignedRequest {
        self.proof.as_ref().expect("a signed proof")
    }

    /// Re-signs the proof from `params`.
    fn reprove(&mut self, params: ProofParams) -> &mut Self {
        let req = params.sign();
        self.set_proof(req)
    }

    /// The body, re-signed (and re-proven when the proof was bound to it).
    fn body(&mut self, body: &[u8]) -> &mut Self {
        self.body = body.to_vec();
        if self.mode.hmac() && self.d.headers.is_some() {
            self.sign(&[secret_a()]);
        }
        if self.mode.proof() {
            self.reprove(ProofParams {
                signed_at: self.at,
                ..ProofParams::new(&self.id, body)
            });
        }
        self
    }

    /// Another delivery id, signed and proven for it.
    fn id(&mut self, id: &str) -> &mut Self {
        self.id = id.into();
        self.header(signing::HEADER_ID, id);
        let body = self.body.clone();
        self.body(&body)
    }

    fn sts(&mut self, sts: Sts) -> &mut Self {
        self.d.sts = Some(sts);
        self
    }

    fn no_sts(&mut self) -> &mut Self {
        self.d.sts = None;
        self
    }

    fn fails(&mut self, reason: &'static str) -> &mut Self {
        if !STS_STAGE.contains(&reason) {
            // Refused before anything is sent to STS.
            self.d.sts = None;
        }
        self.d.expect = Expect {
            ok: false,
            delivery_id: None,
            caller: None,
            reason: Some(reason),
            retryable: Some(RETRYABLE.contains(&reason)),
        };
        self
    }

    fn named(&self, name: &str, about: &str) -> Delivery {
        let mut d = self.d.clone();
        d.name = name.into();
        d.about = about.into();
        match String::from_utf8(self.body.clone()) {
            Ok(text) => d.body = Some(text),
            Err(_) => d.body_base64 = Some(B64.encode(&self.body)),
        }
        if !d.expect.ok {
            // A refused delivery's proof that was refused before STS is not sent there.
            d.expect.caller = None;
        }
        if !self.mode.proof() {
            d.sts = None;
        }
        d
    }
}

fn deliveries() -> Vec<Delivery> {
    let mut out = Vec::new();
    genuine(&mut out);
    headers_and_signature(&mut out);
    events_and_parts(&mut out);
    claims(&mut out);
    proofs(&mut out);
    sts(&mut out);
    sns(&mut out);
    out
}

fn base(mode: Mode) -> Builder {
    let e = linked();
    Builder::callback(mode, &e.data.event_id, json(&e).as_bytes(), "aws")
}

fn genuine(out: &mut Vec<Delivery>) {
    for mode in [Mode::HmacAndProof, Mode::ProofOnly, Mode::HmacOnly] {
        out.push(base(mode).named(
            &format!("callback/{}/genuine", mode.name()),
            "the linked example as the function delivers it",
        ));
    }
    out.push(base(Mode::HmacOnly).set_raw_proof("v1.not-a-proof").named(
        "callback/hmac-only/proof-is-ignored",
        "hmac-only checks no proof, whatever the header holds",
    ));
    out.push(
        base(Mode::ProofOnly)
            .header(
                signing::HEADER_SIGNATURE,
                "v1,bm90IGEgc2lnbmF0dXJlIG9mIDMyIGJ5dGVzISEhIQ==",
            )
            .named(
                "callback/proof-only/signature-is-ignored",
                "proof-only checks no signature, whatever the header holds",
            ),
    );
    let mut rotated = base(Mode::HmacAndProof);
    rotated.d.config.secrets = vec![secret_b().to_whsec(), secret_a().to_whsec()];
    out.push(rotated.named(
        "callback/hmac-and-proof/receiver-holds-two-secrets",
        "during a rotation the receiver holds the new and the old secret; the sender signs with the old one",
    ));
    let mut both = base(Mode::HmacAndProof);
    both.sign(&[secret_a(), secret_b()]);
    both.d.config.secrets = vec![secret_b().to_whsec()];
    out.push(both.named(
        "callback/hmac-and-proof/sender-signs-with-two-secrets",
        "the sender signs with both secrets of a rotation; the receiver holds only the new one",
    ));
    let mut edge = base(Mode::HmacAndProof);
    edge.timestamp = NOW - DEFAULT_TOLERANCE_SECS;
    edge.header(signing::HEADER_TIMESTAMP, &edge.timestamp.to_string())
        .sign(&[secret_a()]);
    out.push(edge.named(
        "callback/hmac-and-proof/timestamp-at-the-tolerance",
        "signed exactly 300 s before now: still accepted",
    ));
    let mut old_proof = base(Mode::HmacAndProof);
    let e = linked();
    let body = json(&e);
    old_proof.reprove(ProofParams {
        signed_at: NOW - 14 * 60,
        ..ProofParams::new(&e.data.event_id, body.as_bytes())
    });
    out.push(old_proof.named(
        "callback/hmac-and-proof/proof-signed-14-minutes-ago",
        "a proof signed 14 minutes ago is still fresh (15 are allowed)",
    ));
    for (name, host, region, what) in [
        (
            "global",
            "sts.amazonaws.com",
            "us-east-1",
            "the global STS endpoint, signed for us-east-1",
        ),
        (
            "fips",
            "sts-fips.us-west-2.amazonaws.com",
            "us-west-2",
            "a FIPS STS endpoint",
        ),
    ] {
        let mut b = base(Mode::HmacAndProof);
        b.reprove(ProofParams {
            host: host.into(),
            region: region.into(),
            ..ProofParams::new(&e.data.event_id, body.as_bytes())
        });
        out.push(b.named(
            &format!("callback/hmac-and-proof/endpoint-{name}"),
            &format!("a proof for {what}"),
        ));
    }
    let cn = linked_cn();
    let cn_body = json(&cn);
    let mut b = Builder::callback(
        Mode::HmacAndProof,
        &cn.data.event_id,
        cn_body.as_bytes(),
        "aws-cn",
    );
    b.reprove(ProofParams {
        host: "sts.cn-north-1.amazonaws.com.cn".into(),
        region: "cn-north-1".into(),
        ..ProofParams::new(&cn.data.event_id, cn_body.as_bytes())
    });
    out.push(b.named(
        "callback/hmac-and-proof/partition-aws-cn",
        "a link in the China partition: its STS endpoint and an aws-cn caller",
    ));
    let gov = linked_gov();
    let gov_body = json(&gov);
    let mut b = Builder::callback(
        Mode::HmacAndProof,
        &gov.data.event_id,
        gov_body.as_bytes(),
        "aws-us-gov",
    );
    b.reprove(ProofParams {
        host: "sts.us-gov-west-1.amazonaws.com".into(),
        region: "us-gov-west-1".into(),
        ..ProofParams::new(&gov.data.event_id, gov_body.as_bytes())
    });
    out.push(b.named(
        "callback/hmac-and-proof/partition-aws-us-gov",
        "a link in AWS GovCloud (US), proven through its regional STS endpoint (FIPS there): an aws-us-gov caller",
    ));
    for (text, what) in [(UPDATED, "updated"), (UNLINKED, "unlinked")] {
        // Sent when it was built (its timestamp is later than the linked example's).
        let e = event(text);
        out.push(
            Builder::callback_at(
                Mode::HmacAndProof,
                &e.data.event_id,
                json(&e).as_bytes(),
                "aws",
                unix_seconds(&e.timestamp),
            )
            .named(
                &format!("callback/hmac-and-proof/account-{what}"),
                &format!("the {what} example (changes, peering, an incomplete inventory)"),
            ),
        );
    }
    for m in split() {
        let (i, n) = m.part.expect("a part");
        for mode in [Mode::HmacAndProof, Mode::ProofOnly] {
            out.push(
                Builder::callback(mode, &m.delivery_id, m.json.as_bytes(), "aws").named(
                    &format!("callback/{}/part-{i}-of-{n}", mode.name()),
                    "one part of a split event: its own delivery, with its own id and proof",
                ),
            );
        }
    }
}

fn headers_and_signature(out: &mut Vec<Delivery>) {
    let e = linked();
    let id = e.data.event_id.clone();
    let mode = Mode::HmacAndProof;
    let push = |out: &mut Vec<Delivery>, b: &mut Builder, reason, name: &str, about: &str| {
        out.push(b.fails(reason).named(name, about));
    };

    push(
        out,
        base(mode).remove_header(signing::HEADER_ID),
        r::WEBHOOK_ID,
        "callback/hmac-and-proof/webhook-id-missing",
        "no webhook-id header",
    );
    push(
        out,
        base(mode).id(&format!("msg_{}", "0".repeat(MAX_ID_LEN))),
        r::WEBHOOK_ID,
        "callback/hmac-and-proof/webhook-id-too-long",
        "a webhook-id of 260 characters, signed and proven",
    );
    for m in [Mode::HmacAndProof, Mode::ProofOnly, Mode::HmacOnly] {
        push(out, base(m).id("msg_00000000000000000000000000000000"), r::WEBHOOK_ID, &format!("callback/{}/webhook-id-is-not-the-event-id", m.name()),
             "signed and proven for another delivery id than the event's data.eventId (a replayed body under a fresh id)");
    }
    push(
        out,
        base(mode).remove_header(signing::HEADER_TIMESTAMP),
        r::TIMESTAMP,
        "callback/hmac-and-proof/timestamp-missing",
        "no webhook-timestamp header",
    );
    for (t, what) in [
        (NOW - DEFAULT_TOLERANCE_SECS - 1, "too-old"),
        (NOW + DEFAULT_TOLERANCE_SECS + 1, "too-new"),
    ] {
        for m in [Mode::HmacAndProof, Mode::ProofOnly] {
            let mut b = base(m);
            b.timestamp = t;
            b.header(signing::HEADER_TIMESTAMP, &t.to_string());
            if m.hmac() {
                b.sign(&[secret_a()]);
            }
            push(
                out,
                &mut b,
                r::TIMESTAMP,
                &format!("callback/{}/timestamp-{what}", m.name()),
                "signed 301 s away from now (a replay, or a clock far off)",
            );
        }
    }
    let mut b = base(mode);
    b.header(signing::HEADER_TIMESTAMP, &format!("{NOW}.0"));
    push(
        out,
        &mut b,
        r::TIMESTAMP,
        "callback/hmac-and-proof/timestamp-not-integer",
        "webhook-timestamp with a fraction",
    );
    for m in [Mode::HmacAndProof, Mode::HmacOnly] {
        push(
            out,
            base(m).remove_header(signing::HEADER_SIGNATURE),
            r::SIGNATURE,
            &format!("callback/{}/signature-missing", m.name()),
            "no webhook-signature header",
        );
    }
    let mut b = base(mode);
    b.sign(&[secret_b()]);
    push(
        out,
        &mut b,
        r::SIGNATURE,
        "callback/hmac-and-proof/signature-other-secret",
        "signed with a secret the receiver does not hold",
    );
    let mut b = base(mode);
    let tampered = replaced(
        &json(&e),
        "\"accountId\":\"123456789012\"",
        "\"accountId\":\"210987654321\"",
    );
    b.body = tampered.into_bytes();
    push(
        out,
        &mut b,
        r::SIGNATURE,
        "callback/hmac-and-proof/signature-body-tampered",
        "the body was changed after signing (another accountId)",
    );
    let mut b = base(mode);
    let sig =
        b.d.headers.as_ref().expect("headers")[signing::HEADER_SIGNATURE].replace("v1,", "v2,");
    b.header(signing::HEADER_SIGNATURE, &sig);
    push(
        out,
        &mut b,
        r::SIGNATURE,
        "callback/hmac-and-proof/signature-not-v1",
        "the right signature, labelled v2",
    );
    let mut b = base(mode);
    b.header(
        signing::HEADER_SIGNATURE,
        &format!("v1,{}", B64.encode([7u8; 31])),
    );
    push(
        out,
        &mut b,
        r::SIGNATURE,
        "callback/hmac-and-proof/signature-31-bytes",
        "a v1 candidate that is not 32 bytes",
    );
    let right = signing::sign(&[secret_a()], &id, NOW, json(&e).as_bytes());
    let wrong = format!("v1,{}", B64.encode([0u8; 32]));
    let mut b = base(mode);
    b.header(
        signing::HEADER_SIGNATURE,
        &format!(
            "{} {right}",
            [wrong.as_str(); MAX_SIGNATURE_CANDIDATES].join(" ")
        ),
    );
    push(out, &mut b, r::SIGNATURE, "callback/hmac-and-proof/signature-after-8-candidates",
         "the right signature after 8 well-formed wrong ones: only the first 8 candidates are compared");
    let mut b = base(mode);
    b.header(
        signing::HEADER_SIGNATURE,
        &format!(
            "{} {right}",
            ["v1,bm90aXQ="; MAX_SIGNATURE_ENTRIES].join(" ")
        ),
    );
    push(out, &mut b, r::SIGNATURE, "callback/hmac-and-proof/signature-after-64-entries",
         "the right signature after 64 entries that are not candidates: entries past the 64th are not read");
    let mut b = base(mode);
    b.header(
        signing::HEADER_SIGNATURE,
        &format!(
            "{} {right}",
            ["v1,bm90aXQ="; MAX_SIGNATURE_ENTRIES - 1].join(" ")
        ),
    );
    out.push(b.named(
        "callback/hmac-and-proof/signature-after-63-entries",
        "the right signature as the 64th entry is still read",
    ));
    for m in [Mode::HmacAndProof, Mode::ProofOnly] {
        push(
            out,
            base(m).remove_header(proof::HEADER),
            r::PROOF_MISSING,
            &format!("callback/{}/proof-missing", m.name()),
            "no account-link-proof header",
        );
    }
}

fn events_and_parts(out: &mut Vec<Delivery>) {
    let mode = Mode::HmacAndProof;
    let e = linked();
    let text = json(&e);
    let mut cases: Vec<(&str, Vec<u8>, &'static str, &str)> = vec![
        (
            "event-not-json",
            b"{\"type\":\"account.linked\",".to_vec(),
            r::EVENT,
            "a body that is not JSON",
        ),
        (
            "event-not-utf8",
            b"{\"type\":\"account.linked\",\"timestamp\":\"\xff\xfe\"}".to_vec(),
            r::EVENT,
            "a body that is not UTF-8",
        ),
        (
            "event-json-array",
            b"[]".to_vec(),
            r::EVENT,
            "JSON, not an object",
        ),
        (
            "event-unknown-type",
            replaced(&text, "account.linked", "account.moved").into_bytes(),
            r::EVENT,
            "a type that is not one of the three",
        ),
        (
            "event-missing-account-id",
            replaced(&text, "\"accountId\":\"123456789012\",", "").into_bytes(),
            r::EVENT,
            "no data.accountId",
        ),
        (
            "event-subnet-without-id",
            replaced(&text, "\"subnetId\":\"subnet-01a1b2c3d4e5f6a7b8\",", "").into_bytes(),
            r::EVENT,
            "a subnet without subnetId deep in the inventory",
        ),
        (
            "event-count-not-integer",
            replaced(
                &text,
                "\"availableIpAddressCount\":251",
                "\"availableIpAddressCount\":\"251\"",
            )
            .into_bytes(),
            r::EVENT,
            "a subnet's availableIpAddressCount as a string",
        ),
        (
            "event-timestamp-not-rfc3339",
            replaced(
                &text,
                "\"timestamp\":\"2026-11-23T12:00:00Z\"",
                "\"timestamp\":\"23/11/2026 12:00\"",
            )
            .into_bytes(),
            r::EVENT,
            "a timestamp that is not RFC 3339 UTC",
        ),
        (
            "event-physical-resource-id-empty",
            replaced(
                &text,
                "\"physicalResourceId\":\"link-0db000940c03d4ff693e45fe7cd81351\"",
                "\"physicalResourceId\":\"\"",
            )
            .into_bytes(),
            r::EVENT,
            "an empty data.physicalResourceId",
        ),
        (
            "event-repeated-field",
            replaced(
                &text,
                "\"accountId\":\"123456789012\"",
                "\"accountId\":\"210987654321\",\"accountId\":\"123456789012\"",
            )
            .into_bytes(),
            r::EVENT,
            "data.accountId twice (a parser that keeps the first would read another account): serde refuses a field twice",
        ),
        (
            "event-lone-surrogate",
            replaced(&text, "\"name\":\"prod\"", "\"name\":\"\\ud800prod\"").into_bytes(),
            r::EVENT,
            "a VPC name with a lone UTF-16 surrogate escape: JSON's syntax, not Unicode text",
        ),
        (
            "event-schema-version-2",
            replaced(&text, "\"schemaVersion\":\"1\"", "\"schemaVersion\":\"2\"").into_bytes(),
            r::SCHEMA_VERSION,
            "data.schemaVersion 2",
        ),
        (
            "event-account-id-not-12-digits",
            replaced(
                &text,
                "\"accountId\":\"123456789012\"",
                "\"accountId\":\"12345\"",
            )
            .into_bytes(),
            r::ACCOUNT_ID,
            "data.accountId of 5 digits: no proof can name it",
        ),
    ];
    for (name, body, reason, about) in cases.drain(..) {
        let mut b = base(mode);
        b.body(&body);
        out.push(
            b.fails(reason)
                .named(&format!("callback/hmac-and-proof/{name}"), about),
        );
    }
    // What may repeat: a key of a map (roles) and an unknown field; the last one counts, as serde reads them.
    let repeated = replaced(
        &text,
        "\"RemoteRole\":",
        "\"RemoteRole\":\"arn:aws:iam::210987654321:role/victims-role\",\"RemoteRole\":",
    );
    let repeated = replaced(&repeated, "{\"type\":", "{\"x\":1,\"x\":2,\"type\":");
    let mut b = base(mode);
    b.body(repeated.as_bytes());
    out.push(b.named(
        "callback/hmac-and-proof/event-repeated-map-key-and-unknown-field",
        "a data.roles key and an unknown field twice: accepted, the last of each counts (as serde_json and JSON parsers read them)",
    ));
    // Parts whose bounds are wrong: each signed and proven for the delivery id it names.
    let m = &split()[0];
    let first: LinkEvent = serde_json::from_str(&m.json).expect("a part");
    let set = first.data.part.as_ref().expect("a part").set.clone();
    for (name, index, count, set, reason, about) in [
        (
            "part-count-65",
            1,
            65,
            set.as_str(),
            r::PART_COUNT,
            "data.part.count above 64",
        ),
        (
            "part-count-0",
            0,
            0,
            set.as_str(),
            r::PART_COUNT,
            "data.part.count 0",
        ),
        (
            "part-index-0",
            0,
            3,
            set.as_str(),
            r::PART_INDEX,
            "data.part.index 0",
        ),
        (
            "part-index-above-count",
            4,
            3,
            set.as_str(),
            r::PART_INDEX,
            "data.part.index 4 of 3",
        ),
        (
            "part-set-not-hex",
            1,
            3,
            "../../etc/passwd",
            r::PART_SET,
            "data.part.set that is not 16 lowercase hex digits",
        ),
    ] {
        let mut p = first.clone();
        if let Some(part) = p.data.part.as_mut() {
            part.index = index;
            part.count = count;
            part.set = set.into();
        }
        let mut b = Builder::callback(mode, &p.data.delivery_id(), json(&p).as_bytes(), "aws");
        out.push(
            b.fails(reason)
                .named(&format!("callback/hmac-and-proof/{name}"), about),
        );
    }
}

/// A stack of another account (whose link an attacker would take over).
const VICTIM_STACK: &str = "arn:aws:cloudformation:us-west-2:210987654321:stack/victim/1";
const OTHER_ACCOUNT: &str = "210987654321";

/// What a receiver checks of an event's own claims after its signature, id and part: its timestamp (not
/// ahead of the clock) and `LinkData::check_claims`. Each edit is signed and proven as the sender would;
/// the claims that name another stack's link are refused after STS answered (link-receiver's order).
fn claims(out: &mut Vec<Delivery>) {
    type Edit = fn(&mut LinkEvent);
    let cases: Vec<(&str, Edit, &'static str, &str)> = vec![
        ("event-timestamp-ahead", |e| e.timestamp = "2026-11-23T12:05:00.001Z".into(), r::TIMESTAMP_AHEAD,
         "the event's timestamp 300.001 s ahead of now (its webhook-timestamp is now)"),
        ("event-timestamp-year-9999", |e| e.timestamp = "9999-12-31T23:59:59.999Z".into(), r::TIMESTAMP_AHEAD,
         "a timestamp that would win the ordering against every real event of the link"),
        ("claim-stack-id-not-an-arn", |e| e.data.stack_id = "not-an-arn".into(), r::STACK_ID, "data.stackId that is not an ARN"),
        ("claim-stack-id-a-role", |e| e.data.stack_id = "arn:aws:iam::123456789012:role/x".into(), r::STACK_ID,
         "data.stackId that is an ARN, but not a stack's"),
        ("claim-stack-id-without-stack-id", |e| e.data.stack_id = "arn:aws:cloudformation:us-west-2:123456789012:stack/account-link".into(),
         r::STACK_ID, "a stack ARN without the stack's id"),
        ("claim-region-not-the-stacks", |e| e.data.region = "eu-west-1".into(), r::STACK_MISMATCH,
         "data.region is not the stack's region (refused after the proof: it contradicts its own stack)"),
        ("claim-link-id-of-another-stack", |e| e.data.physical_resource_id = link_id(VICTIM_STACK, "AccountLink"), r::LINK_ID,
         "the link id of another account's stack: a takeover (refused after the proof, which says who tried)"),
        ("claim-link-id-of-another-resource", |e| e.data.logical_resource_id = "Other".into(), r::LINK_ID,
         "another logicalResourceId than the one the link id was derived from"),
        ("claim-link-id-before-role", |e| {
            e.data.physical_resource_id = link_id(VICTIM_STACK, "AccountLink");
            e.data.roles.insert("RemoteRole".into(), "arn:aws:iam::210987654321:role/victims-role".into());
        }, r::LINK_ID, "another stack's link id and another account's role: the link id is checked first, after the proof"),
        ("claim-logical-resource-id-not-alphanumeric", |e| e.data.logical_resource_id = "a/b".into(), r::LOGICAL_RESOURCE_ID,
         "data.logicalResourceId with a slash"),
        ("claim-logical-resource-id-256", |e| e.data.logical_resource_id = "L".repeat(256), r::LOGICAL_RESOURCE_ID,
         "data.logicalResourceId of 256 characters"),
        ("claim-role-of-another-account", |e| {
            e.data.roles.insert("RemoteRole".into(), "arn:aws:iam::210987654321:role/victims-role".into());
        }, r::ROLE, "a role of another account (shown to operators as the customer's)"),
        ("claim-role-of-another-partition", |e| {
            e.data.roles.insert("RemoteRole".into(), "arn:aws-cn:iam::123456789012:role/r".into());
        }, r::ROLE, "a role ARN of another partition"),
        ("claim-role-a-user", |e| {
            e.data.roles.insert("RemoteRole".into(), "arn:aws:iam::123456789012:user/not-a-role".into());
        }, r::ROLE, "an IAM user, not a role"),
        ("claim-role-name-with-space", |e| {
            e.data.roles.insert("RemoteRole".into(), "arn:aws:iam::123456789012:role/a b".into());
        }, r::ROLE, "a role name IAM does not allow"),
        ("claim-role-key-not-alphanumeric", |e| {
            e.data.roles.insert("Remote-Role".into(), "arn:aws:iam::123456789012:role/r".into());
        }, r::ROLE, "a data.roles key with a hyphen"),
        ("claim-roles-17", |e| {
            for i in 0..14 {
                e.data.roles.insert(format!("Extra{i}"), format!("arn:aws:iam::123456789012:role/extra-{i}"));
            }
        }, r::ROLE, "17 roles (at most 16)"),
        ("claim-external-id-nul", |e| e.data.external_id = Some("ext\u{0}id".into()), r::EXTERNAL_ID,
         "data.externalId with a NUL character"),
        ("claim-external-id-one-character", |e| e.data.external_id = Some("x".into()), r::EXTERNAL_ID,
         "data.externalId of 1 character (IAM needs 2)"),
        ("claim-external-id-1225", |e| e.data.external_id = Some("x".repeat(1225)), r::EXTERNAL_ID,
         "data.externalId of 1225 characters (IAM accepts 1224)"),
        ("claim-vpc-id-injection", |e| e.data.vpc_id = Some("vpc-'; DROP TABLE links".into()), r::VPC_ID,
         "data.vpcId that is not a VPC id"),
        ("claim-vpc-id-uppercase", |e| e.data.vpc_id = Some("vpc-0A1B2C3D".into()), r::VPC_ID,
         "data.vpcId with uppercase hex digits"),
        ("claim-region-of-another-partition", |e| e.data.regions[1] = "cn-north-1".into(), r::REGION,
         "a listed region of another partition"),
        ("claim-region-not-a-region-name", |e| e.data.regions[1] = "us-east-1a".into(), r::REGION,
         "a listed region that is an availability zone's name"),
        ("claim-regions-65", |e| e.data.regions = vec!["us-west-2".into(); 65], r::REGION, "65 listed regions (at most 64)"),
    ];
    for (name, edit, reason, about) in cases {
        let mut e = linked();
        edit(&mut e);
        let mut b = Builder::callback(
            Mode::HmacAndProof,
            &e.data.event_id,
            json(&e).as_bytes(),
            "aws",
        );
        out.push(
            b.fails(reason)
                .named(&format!("callback/hmac-and-proof/{name}"), about),
        );
    }

    // The same refusals in the other modes, and the order: a conflict waits for the proof, whatever else.
    let mut e = linked();
    e.data.physical_resource_id = link_id(VICTIM_STACK, "AccountLink");
    for mode in [Mode::ProofOnly, Mode::HmacOnly] {
        let mut b = Builder::callback(mode, &e.data.event_id, json(&e).as_bytes(), "aws");
        out.push(b.fails(r::LINK_ID).named(
            &format!("callback/{}/claim-link-id-of-another-stack", mode.name()),
            "the link id of another account's stack",
        ));
    }
    let mut b = Builder::callback(
        Mode::HmacAndProof,
        &e.data.event_id,
        json(&e).as_bytes(),
        "aws",
    );
    let elsewhere = edited(b.signed_proof(), |r| {
        r.url = "https://hooks.evil.example/".into();
        set_header(r, "host", "hooks.evil.example");
    });
    b.set_raw_proof(&elsewhere.encode());
    out.push(b.fails(r::PROOF_HOST).named(
        "callback/hmac-and-proof/claim-link-id-with-a-bad-proof",
        "another stack's link id with a proof for another host: the proof is refused first (before STS)",
    ));
    let mut e = linked();
    e.data.roles.insert(
        "RemoteRole".into(),
        "arn:aws:iam::210987654321:role/victims-role".into(),
    );
    let mut b = Builder::callback(
        Mode::ProofOnly,
        &e.data.event_id,
        json(&e).as_bytes(),
        "aws",
    );
    out.push(b.fails(r::ROLE).named(
        "callback/proof-only/claim-role-of-another-account",
        "a role of another account: refused before anything is sent to STS",
    ));
    let mut e = linked();
    e.timestamp = "9999-12-31T23:59:59.999Z".into();
    let mut b = Builder::callback(
        Mode::ProofOnly,
        &e.data.event_id,
        json(&e).as_bytes(),
        "aws",
    );
    out.push(b.fails(r::TIMESTAMP_AHEAD).named(
        "callback/proof-only/event-timestamp-year-9999",
        "a timestamp far in the future: refused before anything is sent to STS",
    ));

    // Account B names account A's stack and link, with B's own proof: B's accountId contradicts the stack.
    let mut e = linked();
    e.data.account_id = OTHER_ACCOUNT.into();
    let mut b = Builder::callback(
        Mode::HmacAndProof,
        &e.data.event_id,
        json(&e).as_bytes(),
        "aws",
    );
    let req = b.signed_proof().clone();
    b.sts(answer(
        &req,
        200,
        identity_xml(
            OTHER_ACCOUNT,
            &caller_arn("aws").replace(ACCOUNT, OTHER_ACCOUNT),
        ),
    ));
    out.push(b.fails(r::STACK_MISMATCH).named(
        "callback/hmac-and-proof/claim-account-not-the-stacks",
        "account 210987654321 proves itself and names account 123456789012's stack and link: a takeover",
    ));

    // What holds: limits reached, not passed.
    let mut e = linked();
    e.timestamp = "2026-11-23T12:05:00Z".into();
    out.push(
        Builder::callback(
            Mode::HmacAndProof,
            &e.data.event_id,
            json(&e).as_bytes(),
            "aws",
        )
        .named(
            "callback/hmac-and-proof/event-timestamp-at-the-tolerance-ahead",
            "the event's timestamp exactly 300 s ahead of now: still accepted",
        ),
    );
    let mut e = linked();
    e.timestamp = "2026-11-23T12:05:00.0009Z".into();
    out.push(Builder::callback(Mode::HmacAndProof, &e.data.event_id, json(&e).as_bytes(), "aws").named(
        "callback/hmac-and-proof/event-timestamp-ahead-by-less-than-a-millisecond",
        "300.0009 s ahead: the timestamp is compared in whole milliseconds (as link-receiver stores it), still accepted",
    ));
    let mut e = linked();
    e.timestamp = "2026-11-20T08:00:00.123Z".into();
    out.push(Builder::callback(Mode::HmacAndProof, &e.data.event_id, json(&e).as_bytes(), "aws").named(
        "callback/hmac-and-proof/event-timestamp-days-ago",
        "an event built days before its delivery (a retried request): its timestamp orders it, nothing refuses it",
    ));
    let mut e = linked();
    e.data.roles.clear();
    for i in 0..16 {
        e.data.roles.insert(
            format!("{}{i:02}", "R".repeat(62)),
            format!("arn:aws:iam::123456789012:role/path/to/role-{i}"),
        );
    }
    e.data.regions = (0..64).map(|i| format!("ap-future-{}", i + 1)).collect();
    e.data.external_id = Some(format!("{}_+=,.@:/-", "x".repeat(1224 - 9)));
    e.data.vpc_id = Some("vpc-0a1b2c3d4e5f6a7b8".into());
    e.data.logical_resource_id = "L".repeat(255);
    e.data.physical_resource_id = link_id(&e.data.stack_id, &e.data.logical_resource_id);
    out.push(Builder::callback(Mode::HmacAndProof, &e.data.event_id, json(&e).as_bytes(), "aws").named(
        "callback/hmac-and-proof/claims-at-their-limits",
        "16 roles with keys of 64 characters and paths, 64 regions (named like the partition's, if not yet in its table), \
         an external id of 1224 characters with every punctuation IAM allows, a VPC id of 17 digits, a logical id of 255",
    ));
}

fn proofs(out: &mut Vec<Delivery>) {
    let e = linked();
    let body = json(&e);
    let good = ProofParams::new(&e.data.event_id, body.as_bytes()).sign();
    let mut cases: Vec<(&str, String, &'static str, &str)> = Vec::new();
    let mut case =
        |name, req: SignedRequest, reason, about| cases.push((name, req.encode(), reason, about));

    case(
        "proof-method-get",
        edited(&good, |r| r.method = "GET".into()),
        r::PROOF_METHOD,
        "method GET",
    );
    case(
        "proof-scheme-http",
        edited(&good, |r| {
            r.url = "http://sts.us-west-2.amazonaws.com/".into()
        }),
        r::PROOF_SCHEME,
        "an http URL",
    );
    case(
        "proof-url-no-scheme",
        edited(&good, |r| r.url = "sts.us-west-2.amazonaws.com/".into()),
        r::PROOF_URL,
        "a URL without scheme",
    );
    case(
        "proof-url-port",
        edited(&good, |r| {
            r.url = "https://sts.us-west-2.amazonaws.com:8443/".into()
        }),
        r::PROOF_URL,
        "a URL with a port",
    );
    case(
        "proof-url-path-and-query",
        edited(&good, |r| {
            r.url = "https://sts.us-west-2.amazonaws.com/x?Action=AssumeRole".into()
        }),
        r::PROOF_URL,
        "a URL with a path and a query",
    );
    case(
        "proof-url-userinfo",
        edited(&good, |r| {
            r.url = "https://user@sts.us-west-2.amazonaws.com/".into()
        }),
        r::PROOF_URL,
        "a URL with user info",
    );
    case(
        "proof-url-uppercase-host",
        edited(&good, |r| {
            r.url = "https://STS.us-west-2.amazonaws.com/".into()
        }),
        r::PROOF_URL,
        "an uppercase host",
    );
    for (name, host, about) in [
        (
            "proof-host-not-sts",
            "hooks.evil.example",
            "a host that is not STS (the receiver would call it)",
        ),
        (
            "proof-host-metadata-address",
            "169.254.169.254",
            "the instance metadata address",
        ),
        (
            "proof-host-region-that-does-not-exist",
            "sts.zz-fake-9.amazonaws.com",
            "a well-formed STS name of a region that does not exist",
        ),
        (
            "proof-host-lookalike",
            "sts.us-west-2.amazonaws.com.evil.example",
            "an STS name under another domain",
        ),
        ("proof-host-iam", "iam.amazonaws.com", "another AWS service"),
        (
            "proof-host-fips-of-a-partition-without-fips",
            "sts-fips.cn-north-1.amazonaws.com.cn",
            "a FIPS STS name in aws-cn, which has no FIPS endpoints",
        ),
        (
            "proof-host-fips-region-that-does-not-exist",
            "sts-fips.us-west-9.amazonaws.com",
            "a FIPS STS name of a region that does not exist",
        ),
        (
            "proof-host-fips-global",
            "sts-fips.amazonaws.com",
            "a FIPS name without a region (the global endpoint has none)",
        ),
    ] {
        case(
            name,
            edited(&good, |r| {
                r.url = format!("https://{host}/");
                set_header(r, "host", host);
            }),
            r::PROOF_HOST,
            about,
        );
    }
    case(
        "proof-partition-cn-for-an-aws-event",
        ProofParams {
            host: "sts.cn-north-1.amazonaws.com.cn".into(),
            region: "cn-north-1".into(),
            ..ProofParams::new(&e.data.event_id, body.as_bytes())
        }
        .sign(),
        r::PROOF_PARTITION,
        "an STS endpoint of aws-cn for an event of partition aws",
    );
    case(
        "proof-body-assume-role",
        edited(&good, |r| {
            r.body = "Action=AssumeRole&Version=2011-06-15".into()
        }),
        r::PROOF_BODY,
        "another STS action",
    );
    case(
        "proof-header-not-allowed",
        edited(&good, |r| {
            set_header(r, "transfer-encoding", "chunked");
            edit_authorization(r, "SignedHeaders=", "SignedHeaders=transfer-encoding;");
        }),
        r::PROOF_HEADER,
        "a header a GetCallerIdentity proof may not carry (signed)",
    );
    case(
        "proof-header-value-crlf",
        edited(&good, |r| {
            set_header(r, "x-amz-security-token", "a\r\nX-Injected: 1")
        }),
        r::PROOF_HEADER_VALUE,
        "a header value with CR LF",
    );
    case(
        "proof-header-value-empty",
        edited(&good, |r| set_header(r, "x-amz-security-token", "")),
        r::PROOF_HEADER_VALUE,
        "an empty header value",
    );
    case(
        "proof-header-repeated",
        edited(&good, |r| {
            set_header(r, "Host", "sts.us-west-2.amazonaws.com")
        }),
        r::PROOF_HEADER_VALUE,
        "host twice, in two cases",
    );
    case(
        "proof-authorization-missing",
        edited(&good, |r| {
            r.headers.remove("authorization");
        }),
        r::PROOF_HEADER_MISSING,
        "no authorization header",
    );
    case(
        "proof-audience-header-missing",
        edited(&good, |r| {
            r.headers.remove(proof::AUDIENCE_HEADER);
            edit_authorization(r, "x-account-link-audience;", "");
        }),
        r::PROOF_HEADER_MISSING,
        "no audience binding header (and not signed)",
    );
    case(
        "proof-date-header-missing",
        edited(&good, |r| {
            r.headers.remove("x-amz-date");
            edit_authorization(r, "x-amz-date;", "");
        }),
        r::PROOF_HEADER_MISSING,
        "no x-amz-date",
    );
    case(
        "proof-event-id-unsigned",
        edited(&good, |r| {
            edit_authorization(r, "x-account-link-event-id;", "")
        }),
        r::PROOF_UNSIGNED_HEADER,
        "the event id binding header is not signed",
    );
    case(
        "proof-security-token-unsigned",
        edited(&good, |r| {
            edit_authorization(r, ";x-amz-security-token", "")
        }),
        r::PROOF_UNSIGNED_HEADER,
        "the session token is not signed",
    );
    case(
        "proof-signed-header-absent",
        edited(&good, |r| {
            edit_authorization(r, "x-amz-date;", "x-amz-content-sha256;x-amz-date;")
        }),
        r::PROOF_SIGNED_HEADER_ABSENT,
        "SignedHeaders lists x-amz-content-sha256, which the proof does not carry",
    );
    case(
        "proof-host-header-differs",
        edited(&good, |r| {
            set_header(r, "host", "sts.us-east-1.amazonaws.com")
        }),
        r::PROOF_HOST_HEADER,
        "the host header names another STS endpoint than the URL",
    );
    case(
        "proof-content-type-json",
        edited(&good, |r| set_header(r, "content-type", "application/json")),
        r::PROOF_CONTENT_TYPE,
        "content-type application/json",
    );
    case(
        "proof-authorization-bearer",
        edited(&good, |r| set_header(r, "authorization", "Bearer abc")),
        r::PROOF_AUTHORIZATION,
        "not AWS4-HMAC-SHA256",
    );
    case(
        "proof-authorization-short-signature",
        edited(&good, |r| {
            let a = r.headers["authorization"].clone();
            set_header(r, "authorization", &a[..a.len() - 1]);
        }),
        r::PROOF_AUTHORIZATION,
        "a Signature of 63 hex digits",
    );
    case(
        "proof-authorization-repeated-part",
        edited(&good, |r| {
            let a = r.headers["authorization"].clone();
            let cred = a
                .split(", ")
                .next()
                .unwrap_or_default()
                .trim_start_matches("AWS4-HMAC-SHA256 ")
                .to_string();
            set_header(r, "authorization", &format!("{a}, {cred}"));
        }),
        r::PROOF_AUTHORIZATION,
        "Credential twice",
    );
    case(
        "proof-authorization-uppercase-signed-headers",
        edited(&good, |r| {
            edit_authorization(
                r,
                "SignedHeaders=content-type",
                "SignedHeaders=Content-Type",
            )
        }),
        r::PROOF_AUTHORIZATION,
        "SignedHeaders in uppercase",
    );
    case(
        "proof-audience-other",
        ProofParams {
            audience: "https://hooks.other-provider.example".into(),
            ..ProofParams::new(&e.data.event_id, body.as_bytes())
        }
        .sign(),
        r::PROOF_AUDIENCE,
        "a genuine proof made for another receiver",
    );
    case(
        "proof-event-id-other",
        ProofParams::new("msg_00000000000000000000000000000000", body.as_bytes()).sign(),
        r::PROOF_EVENT_ID,
        "a genuine proof of another delivery",
    );
    case(
        "proof-body-sha256-other",
        ProofParams::new(&e.data.event_id, b"{}").sign(),
        r::PROOF_BODY_SHA256,
        "a genuine proof of another body",
    );
    case(
        "proof-date-not-amz",
        edited(&good, |r| {
            set_header(r, "x-amz-date", "2026-11-23T12:00:00Z")
        }),
        r::PROOF_DATE,
        "x-amz-date in ISO 8601 with separators",
    );
    for (name, at, about) in [
        (
            "proof-signed-16-minutes-ago",
            NOW - 16 * 60,
            "a genuine proof signed 16 minutes ago (a captured one, replayed)",
        ),
        (
            "proof-signed-16-minutes-ahead",
            NOW + 16 * 60,
            "a genuine proof dated 16 minutes ahead",
        ),
    ] {
        case(
            name,
            ProofParams {
                signed_at: at,
                ..ProofParams::new(&e.data.event_id, body.as_bytes())
            }
            .sign(),
            r::PROOF_AGE,
            about,
        );
    }
    case(
        "proof-scope-region",
        ProofParams {
            region: "eu-west-1".into(),
            ..ProofParams::new(&e.data.event_id, body.as_bytes())
        }
        .sign(),
        r::PROOF_SCOPE,
        "signed for eu-west-1, sent to us-west-2",
    );
    case(
        "proof-scope-global-endpoint-region",
        ProofParams {
            host: "sts.amazonaws.com".into(),
            ..ProofParams::new(&e.data.event_id, body.as_bytes())
        }
        .sign(),
        r::PROOF_SCOPE,
        "the global endpoint signed for us-west-2 (it takes us-east-1)",
    );
    case(
        "proof-scope-service",
        edited(&good, |r| edit_authorization(r, "/sts/", "/iam/")),
        r::PROOF_SCOPE,
        "a credential scope for iam",
    );
    case(
        "proof-scope-date",
        edited(&good, |r| edit_authorization(r, "/20261123/", "/20261122/")),
        r::PROOF_SCOPE,
        "a credential scope of another day",
    );

    let mut raw: Vec<(&str, String, &'static str, &str)> = vec![
        (
            "proof-too-long",
            format!("v1.{}", "A".repeat(MAX_PROOF_LEN)),
            r::PROOF_LENGTH,
            "a proof over 12 KiB",
        ),
        (
            "proof-not-v1",
            good.encode().replacen("v1.", "v2.", 1),
            r::PROOF_ENCODING,
            "a v2. prefix",
        ),
        (
            "proof-standard-base64",
            standard_base64(&good),
            r::PROOF_ENCODING,
            "standard, padded base64 instead of unpadded base64url",
        ),
        (
            "proof-not-json",
            format!("v1.{}", B64URL.encode(b"not json")),
            r::PROOF_ENCODING,
            "base64url of text that is not JSON",
        ),
        (
            "proof-unknown-field",
            raw_proof(&good, "{\"method\"", "{\"region\":\"us-west-2\",\"method\""),
            r::PROOF_ENCODING,
            "a field besides method, url, headers, body",
        ),
        (
            "proof-header-not-string",
            raw_proof(
                &good,
                "\"x-amz-date\":\"20261123T120000Z\"",
                "\"x-amz-date\":20261123",
            ),
            r::PROOF_ENCODING,
            "a header value that is a number",
        ),
    ];
    cases.append(&mut raw);
    for (name, text, reason, about) in cases {
        let mut b = base(Mode::HmacAndProof);
        b.set_raw_proof(&text);
        out.push(
            b.fails(reason)
                .named(&format!("callback/hmac-and-proof/{name}"), about),
        );
    }
}

/// The proof in standard base64; it must hold a character base64url has not.
fn standard_base64(req: &SignedRequest) -> String {
    let text = B64.encode(serde_json::to_vec(req).expect("a proof serializes"));
    assert!(text.contains(['+', '/', '=']), "{text}");
    format!("v1.{text}")
}

fn sts(out: &mut Vec<Delivery>) {
    let e = linked();
    let body = json(&e);
    let good = ProofParams::new(&e.data.event_id, body.as_bytes()).sign();
    let forged = edited(&good, |r| {
        let a = r.headers["authorization"].clone();
        let last = if a.ends_with('0') { "1" } else { "0" };
        set_header(r, "authorization", &format!("{}{last}", &a[..a.len() - 1]));
    });
    let mismatch = error_xml(
        "Sender",
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
    );
    let cases: Vec<(&str, Mode, SignedRequest, Sts, &'static str, &str)> = vec![
        ("sts-signature-does-not-match", Mode::HmacAndProof, forged.clone(), answer(&forged, 403, mismatch.clone()), r::STS_REFUSED, "a forged proof: STS refuses its signature"),
        ("sts-signature-does-not-match", Mode::ProofOnly, forged.clone(), answer(&forged, 403, mismatch), r::STS_REFUSED, "a forged proof: STS refuses its signature"),
        ("sts-expired-token", Mode::HmacAndProof, good.clone(), answer(&good, 403, error_xml("Sender", "ExpiredToken", "The security token included in the request is expired")), r::STS_REFUSED, "the signing session expired"),
        ("sts-access-denied-no-body", Mode::HmacAndProof, good.clone(), answer(&good, 403, String::new()), r::STS_REFUSED, "a 403 without an error document"),
        ("sts-throttling", Mode::HmacAndProof, good.clone(), answer(&good, 400, error_xml("Sender", "Throttling", "Rate exceeded")), r::STS_UNAVAILABLE, "STS throttles: retry later"),
        ("sts-unavailable", Mode::HmacAndProof, good.clone(), answer(&good, 503, String::new()), r::STS_UNAVAILABLE, "STS fails: retry later"),
        ("sts-answer-not-xml", Mode::HmacAndProof, good.clone(), answer(&good, 200, "{\"Account\": \"123456789012\"}".into()), r::STS_ANSWER, "a 200 that is not XML"),
        ("sts-answer-without-account", Mode::HmacAndProof, good.clone(), answer(&good, 200, identity_xml(ACCOUNT, &caller_arn("aws")).replace("<Account>123456789012</Account>", "")), r::STS_ANSWER, "a GetCallerIdentityResponse without Account"),
        ("sts-other-account", Mode::HmacAndProof, good.clone(), answer(&good, 200, identity_xml("210987654321", &caller_arn("aws").replace(ACCOUNT, "210987654321"))), r::PROOF_ACCOUNT, "STS names another account than data.accountId (the sender claims an account it is not)"),
        ("sts-iam-user", Mode::HmacAndProof, good.clone(), answer(&good, 200, identity_xml(ACCOUNT, "arn:aws:iam::123456789012:user/alice")), r::PROOF_CALLER, "an IAM user's long-term keys signed it, not the function's role"),
        ("sts-root", Mode::HmacAndProof, good.clone(), answer(&good, 200, identity_xml(ACCOUNT, "arn:aws:iam::123456789012:root")), r::PROOF_CALLER, "the account's root user signed it"),
        ("sts-caller-other-partition", Mode::HmacAndProof, good.clone(), answer(&good, 200, identity_xml(ACCOUNT, &caller_arn("aws-us-gov"))), r::PROOF_CALLER, "an assumed role of another partition"),
        ("sts-caller-arn-other-account", Mode::HmacAndProof, good.clone(), answer(&good, 200, identity_xml(ACCOUNT, &caller_arn("aws").replace(ACCOUNT, "210987654321"))), r::PROOF_CALLER, "an Arn of another account than Account"),
    ];
    for (name, mode, req, sts, reason, about) in cases {
        let mut b = base(mode);
        b.set_proof(req).sts(sts);
        out.push(
            b.fails(reason)
                .named(&format!("callback/{}/{name}", mode.name()), about),
        );
    }
    let mut b = base(Mode::HmacAndProof);
    let mut redirect = answer(&good, 307, String::new());
    redirect
        .headers
        .insert("location".into(), "/followed".into());
    b.sts(redirect);
    out.push(b.fails(r::STS_REDIRECT).named(
        "callback/hmac-and-proof/sts-redirect",
        "STS answers 307 to another place: not followed (exactly one request)",
    ));
}

fn sns(out: &mut Vec<Delivery>) {
    let e = linked();
    let body = json(&e);
    let whole = || Builder::sns(&e.data.event_id, body.as_bytes(), None);
    out.push(whole().named(
        "sns/genuine",
        "the linked example as an SNS message, its proof in the accountLinkProof attribute",
    ));
    for m in split() {
        let (i, n) = m.part.expect("a part");
        out.push(
            Builder::sns(&m.delivery_id, m.json.as_bytes(), m.part).named(
                &format!("sns/part-{i}-of-{n}"),
                "one part of a split event as its own SNS message, bound to its delivery id",
            ),
        );
    }
    let mut b = whole();
    b.d.attributes
        .as_mut()
        .expect("attributes")
        .remove(proof::SNS_ATTRIBUTE);
    out.push(
        b.no_sts()
            .fails(r::PROOF_MISSING)
            .named("sns/proof-missing", "no accountLinkProof attribute"),
    );
    let mut b = whole();
    b.body = replaced(
        &body,
        "\"externalId\":\"provider-ext-7f3a9c\"",
        "\"externalId\":\"provider-ext-000000\"",
    )
    .into_bytes();
    out.push(b.no_sts().fails(r::PROOF_BODY_SHA256).named(
        "sns/message-tampered",
        "the Message was changed after the proof was made",
    ));
    let mut b = whole();
    let first = split().remove(0);
    let other = ProofParams::new(&first.delivery_id, body.as_bytes())
        .sign()
        .encode();
    b.set_raw_proof(&other);
    out.push(b.fails(r::PROOF_EVENT_ID).named(
        "sns/proof-of-another-delivery",
        "a proof bound to another delivery id (a part's)",
    ));
    let mut b = whole();
    b.body(b"not json");
    out.push(
        b.fails(r::EVENT)
            .named("sns/event-not-json", "a Message that is not an event"),
    );
    let mut b = whole();
    let good = ProofParams::new(&e.data.event_id, body.as_bytes()).sign();
    b.sts(answer(
        &good,
        200,
        identity_xml(
            "210987654321",
            &caller_arn("aws").replace(ACCOUNT, "210987654321"),
        ),
    ));
    out.push(
        b.fails(r::PROOF_ACCOUNT)
            .named("sns/sts-other-account", "STS names another account"),
    );
    // The event's own claims, as on the callback: a conflict after STS, the rest before.
    type Edit = fn(&mut LinkEvent);
    let cases: [(&str, Edit, &'static str, &str); 3] = [
        (
            "sns/claim-link-id-of-another-stack",
            |e| e.data.physical_resource_id = link_id(VICTIM_STACK, "AccountLink"),
            r::LINK_ID,
            "the link id of another account's stack (refused after the proof)",
        ),
        (
            "sns/claim-role-of-another-account",
            |e| {
                e.data.roles.insert(
                    "RemoteRole".into(),
                    "arn:aws:iam::210987654321:role/victims-role".into(),
                );
            },
            r::ROLE,
            "a role of another account (refused before STS)",
        ),
        (
            "sns/event-timestamp-ahead",
            |e| e.timestamp = "2026-11-23T12:05:01Z".into(),
            r::TIMESTAMP_AHEAD,
            "a timestamp 301 s ahead of now (refused before STS)",
        ),
    ];
    for (name, edit, reason, about) in cases {
        let mut e = linked();
        edit(&mut e);
        out.push(
            Builder::sns(&e.data.event_id, json(&e).as_bytes(), None)
                .fails(reason)
                .named(name, about),
        );
    }
}

// ---------------------------------------------------------------------------------------------------
// Reassembly.

fn reassembly() -> Vec<ReassemblyVector> {
    let whole = linked();
    let parts: Vec<PartInput> = split()
        .into_iter()
        .map(|m| PartInput {
            size: m.json.len(),
            body: m.json,
        })
        .collect();
    let pick = |order: &[usize]| -> Vec<PartInput> {
        order
            .iter()
            .map(|&i| PartInput {
                body: parts[i].body.clone(),
                size: parts[i].size,
            })
            .collect()
    };
    let complete = |w: &LinkEvent| ReassemblyExpect {
        ok: true,
        whole: Some(Some(w.clone())),
        at: None,
        reason: None,
    };
    let incomplete = ReassemblyExpect {
        ok: true,
        whole: Some(None),
        at: None,
        reason: None,
    };
    let refused = |at, reason| ReassemblyExpect {
        ok: false,
        whole: None,
        at: Some(at),
        reason: Some(reason),
    };
    let mut out = vec![
        ReassemblyVector {
            name: "reassembly/in-order".into(),
            about: "the three parts in order: the last completes the event",
            parts: pick(&[0, 1, 2]),
            expect: complete(&whole),
        },
        ReassemblyVector {
            name: "reassembly/any-order-with-duplicates".into(),
            about: "out of order, part 3 twice: a duplicate is ignored",
            parts: pick(&[2, 0, 2, 1]),
            expect: complete(&whole),
        },
        ReassemblyVector {
            name: "reassembly/incomplete".into(),
            about: "parts 1 and 3 only: no event yet",
            parts: pick(&[0, 2]),
            expect: incomplete,
        },
        ReassemblyVector {
            name: "reassembly/not-split".into(),
            about: "an event without data.part is complete by itself",
            parts: vec![PartInput {
                size: json(&whole).len(),
                body: json(&whole),
            }],
            expect: complete(&whole),
        },
    ];
    // A re-sent request whose inventory changed is split anew: its parts have another set.
    let mut changed = linked();
    changed.data.inventory[0].vpcs[0].subnets.pop();
    let other = split_in_three(&changed);
    let mut mixed = pick(&[0, 1]);
    let last = other.last().expect("parts");
    mixed.push(PartInput {
        body: last.json.clone(),
        size: last.json.len(),
    });
    out.push(ReassemblyVector {
        name: "reassembly/two-splits-do-not-mix".into(),
        about: "parts 1 and 2 of one split and the last part of another split of the same event: neither is complete",
        parts: mixed,
        expect: ReassemblyExpect { ok: true, whole: Some(None), at: None, reason: None },
    });
    // The same envelope in every part: one vector per field.
    type Edit = fn(&mut LinkEvent);
    let edits: [(&str, Edit); 12] = [
        ("type", |e| {
            e.event_type = link_contract::event::EventType::Unlinked
        }),
        ("timestamp", |e| e.timestamp = "2026-11-23T12:00:01Z".into()),
        ("eventId", |e| {
            e.data.event_id = "msg_00000000000000000000000000000000".into()
        }),
        ("accountId", |e| e.data.account_id = "210987654321".into()),
        ("partition", |e| e.data.partition = "aws-us-gov".into()),
        ("region", |e| e.data.region = "us-east-1".into()),
        ("stackId", |e| e.data.stack_id.push('x')),
        ("logicalResourceId", |e| {
            e.data.logical_resource_id.push('x')
        }),
        ("physicalResourceId", |e| {
            e.data.physical_resource_id.push('x')
        }),
        ("externalId", |e| e.data.external_id = None),
        ("roles", |e| {
            e.data
                .roles
                .insert("Extra".into(), "arn:aws:iam::210987654321:role/x".into());
        }),
        ("part.count", |e| {
            if let Some(p) = e.data.part.as_mut() {
                p.count = 4;
            }
        }),
    ];
    assert_eq!(
        edits.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        envelope_fields(&whole)
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>(),
        "one vector per envelope field"
    );
    for (field, edit) in edits {
        let mut second: LinkEvent = serde_json::from_str(&parts[1].body).expect("a part");
        edit(&mut second);
        let text = json(&second);
        let mut list = pick(&[0]);
        list.push(PartInput {
            size: text.len(),
            body: text,
        });
        list.extend(pick(&[2]));
        // Parts are collected by (eventId, part.set): another eventId is another event's part.
        let (about, expect) = if field == "eventId" {
            (
                "part 2 names another eventId: it is another event's, never mixed in, and neither completes",
                ReassemblyExpect { ok: true, whole: Some(None), at: None, reason: None },
            )
        } else {
            (
                "part 2 carries another envelope than part 1: it belongs to another event, link or account",
                refused(1, r::PART_ENVELOPE),
            )
        };
        out.push(ReassemblyVector {
            name: format!("reassembly/envelope-{field}"),
            about,
            parts: list,
            expect,
        });
    }
    let mut big = pick(&[0, 1, 2]);
    for p in &mut big {
        p.size = 6 * 1024 * 1024;
    }
    out.push(ReassemblyVector {
        name: "reassembly/set-over-16-mib".into(),
        about: "three parts of 6 MiB each (as their deliveries' sizes say): the third passes the 16 MiB a split may carry",
        parts: big,
        expect: refused(2, r::PART_SET_SIZE),
    });
    let mut many: LinkEvent = serde_json::from_str(&parts[0].body).expect("a part");
    if let Some(p) = many.data.part.as_mut() {
        p.count = MAX_PARTS + 1;
    }
    let text = json(&many);
    out.push(ReassemblyVector {
        name: "reassembly/count-65".into(),
        about: "a part of a split of 65 parts: never held",
        parts: vec![PartInput {
            size: text.len(),
            body: text,
        }],
        expect: refused(0, r::PART_COUNT),
    });
    out
}
