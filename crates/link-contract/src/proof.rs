//! Proof of the account: every event carries an `sts:GetCallerIdentity` request signed (SigV4) with the
//! sending function's own credentials. The receiver sends it to STS, which answers with the account and
//! role that signed it: nobody can make one for an account whose credentials they do not hold. The same
//! construction as HashiCorp Vault's AWS auth, aws-iam-authenticator and Teleport's IAM join.
//!
//! The signed request binds, as signed headers, the receiver's **audience**, the delivery's **event id**
//! (its `webhook-id`; `data.eventId` for an unsplit event) and the **SHA-256 of the delivery's body**, so a
//! captured proof vouches for that one delivery to that one receiver and nothing else.
//!
//! Wire format: the HTTP header [`HEADER`] of the webhook delivery, or the SNS message attribute
//! [`SNS_ATTRIBUTE`] (type String), holds `v1.` and the unpadded base64url of the JSON
//! `{"method": "POST", "url": "https://<sts host>/", "headers": {...}, "body": "<form body>"}`.
//!
//! This module is the sans-IO half of verification: [`check`] refuses every proof that is not exactly a
//! fresh, bound GetCallerIdentity request to an STS endpoint of the expected partition and returns the
//! [`Replay`] to send; [`parse_caller_identity`] reads STS's answer and [`check_caller`] compares it with the
//! event. Sending is the receiver's (`link_registry::proof::ProofVerifier`).

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::arn::{is_account_id, Arn};
use crate::partition::{sts_endpoint, Partition};

/// The webhook delivery's header carrying the proof.
pub const HEADER: &str = "account-link-proof";
/// The SNS message attribute (String) carrying the proof of that message.
pub const SNS_ATTRIBUTE: &str = "accountLinkProof";
/// Signed header: the receiver the proof is for (the provider's configured audience, by default the
/// origin of its callback URL).
pub const AUDIENCE_HEADER: &str = "x-account-link-audience";
/// Signed header: the delivery's id (`webhook-id`, [`crate::event::LinkData::delivery_id`]).
pub const EVENT_ID_HEADER: &str = "x-account-link-event-id";
/// Signed header: lowercase hex SHA-256 of the delivery's exact body bytes (the SNS `Message`).
pub const BODY_SHA256_HEADER: &str = "x-account-link-body-sha256";
/// The one request a proof may be.
pub const STS_BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";
pub const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";
/// A proof signed longer ago (or further ahead) than this is refused; STS itself allows 15 minutes.
pub const MAX_AGE_SECS: u64 = 15 * 60;
/// Longer proofs are refused before they are decoded (a Lambda session token makes them ~3 KiB).
pub const MAX_PROOF_LEN: usize = 12 * 1024;
const VERSION_PREFIX: &str = "v1.";
const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The headers a proof may carry; anything else (hop-by-hop, content-length...) is refused.
const ALLOWED_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "content-type",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
    AUDIENCE_HEADER,
    EVENT_ID_HEADER,
    BODY_SHA256_HEADER,
];
/// Headers that must be present and signed.
const REQUIRED_SIGNED: &[&str] = &[
    "host",
    "content-type",
    "x-amz-date",
    AUDIENCE_HEADER,
    EVENT_ID_HEADER,
    BODY_SHA256_HEADER,
];

/// The signed request, as it travels (inside the base64url).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRequest {
    pub method: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl SignedRequest {
    /// `v1.<base64url(JSON)>`.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{VERSION_PREFIX}{}", B64URL.encode(json))
    }

    pub fn decode(proof: &str) -> Result<Self, ProofError> {
        if proof.len() > MAX_PROOF_LEN {
            return Err(ProofError::TooLong(proof.len()));
        }
        let b64 = proof
            .trim()
            .strip_prefix(VERSION_PREFIX)
            .ok_or(ProofError::Encoding("it does not start with v1."))?;
        let json = B64URL
            .decode(b64)
            .map_err(|_| ProofError::Encoding("it is not unpadded base64url after v1."))?;
        serde_json::from_slice(&json).map_err(|_| {
            ProofError::Encoding("it is not the JSON object {method, url, headers, body}")
        })
    }
}

/// What one delivery's proof binds: the values of the three binding headers.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub audience: &'a str,
    /// The delivery id (`webhook-id`).
    pub event_id: &'a str,
    /// The delivery's exact body.
    pub body: &'a [u8],
}

impl Binding<'_> {
    /// The binding headers to sign, with their values.
    pub fn headers(&self) -> [(&'static str, String); 3] {
        [
            (AUDIENCE_HEADER, self.audience.to_string()),
            (EVENT_ID_HEADER, self.event_id.to_string()),
            (BODY_SHA256_HEADER, sha256_hex(self.body)),
        ]
    }
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::hex::encode(&Sha256::digest(bytes))
}

/// What the receiver expects of a delivery's proof.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The receiver's own audience.
    pub audience: &'a str,
    /// The delivery's `webhook-id` (or for SNS, `LinkData::delivery_id()` of the message).
    pub event_id: &'a str,
    /// The exact body bytes received.
    pub body: &'a [u8],
    /// `data.partition` of the event: the STS endpoint must be one of this partition.
    pub partition: &'a str,
    /// `data.accountId` of the event: STS must name this account.
    pub account_id: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("the proof is {0} bytes long; at most {MAX_PROOF_LEN} are accepted")]
    TooLong(usize),
    #[error("the proof is not encoded as expected: {0}")]
    Encoding(&'static str),
    #[error("the proof's method is {0}; only POST is accepted")]
    Method(String),
    #[error("the proof's URL must use https, not {0}")]
    Scheme(String),
    #[error(
        "the proof's URL must be https://<STS host>/ with no port, user, path, query or fragment"
    )]
    Url,
    #[error("the proof names host {0}, which is not an STS endpoint (global, regional or FIPS) of an AWS partition")]
    Host(String),
    #[error("the proof names {host}, an STS endpoint of partition {got}, but the event is from partition {expected}")]
    Partition {
        host: String,
        got: &'static str,
        expected: String,
    },
    #[error("the proof's body must be exactly {STS_BODY}")]
    Body,
    #[error("the proof carries header {0}, which a GetCallerIdentity proof may not carry")]
    HeaderNotAllowed(String),
    #[error("the proof's header {0} has an invalid value")]
    HeaderValue(String),
    #[error("the proof has no {0} header")]
    MissingHeader(&'static str),
    #[error("the proof's header {0} is not signed (not listed in SignedHeaders)")]
    Unsigned(String),
    #[error("the proof's SignedHeaders lists {0}, which the proof does not carry")]
    SignedButAbsent(String),
    #[error("the proof's host header {header} differs from its URL's host {url}")]
    HostHeader { header: String, url: String },
    #[error("the proof's content-type must be application/x-www-form-urlencoded")]
    ContentType,
    #[error("the proof's Authorization header is not AWS4-HMAC-SHA256 with Credential, SignedHeaders and Signature: {0}")]
    Authorization(&'static str),
    #[error("the proof's credential scope names {what} {got}, expected {expected}")]
    Scope {
        what: &'static str,
        got: String,
        expected: String,
    },
    #[error("the proof is for audience '{got}', not this receiver's '{expected}'")]
    Audience { got: String, expected: String },
    #[error("the proof is for event id '{got}', not this delivery's '{expected}'")]
    EventId { got: String, expected: String },
    #[error("the proof is for a body whose SHA-256 is {got}, not this delivery's {expected}")]
    BodyDigest { got: String, expected: String },
    #[error("the proof's X-Amz-Date is not YYYYMMDDTHHMMSSZ")]
    Date,
    #[error("the proof was signed {0} s away from now; at most {MAX_AGE_SECS} s are accepted")]
    Stale(u64),
    #[error("the event's accountId '{0}' is not a 12-digit account id")]
    ExpectedAccount(String),
    #[error("STS's answer could not be read: {0}")]
    StsAnswer(&'static str),
    #[error(
        "STS says the proof was signed by account {sts}, but the event claims account {claimed}"
    )]
    AccountMismatch { sts: String, claimed: String },
    #[error("STS says the proof was signed by {0}, which is not an assumed-role session of the event's account and partition")]
    NotAssumedRole(String),
}

impl ProofError {
    /// The check that failed, as a stable word ([`crate::reason`]).
    pub fn reason(&self) -> &'static str {
        use crate::reason as r;
        match self {
            Self::TooLong(_) => r::PROOF_LENGTH,
            Self::Encoding(_) => r::PROOF_ENCODING,
            Self::Method(_) => r::PROOF_METHOD,
            Self::Scheme(_) => r::PROOF_SCHEME,
            Self::Url => r::PROOF_URL,
            Self::Host(_) => r::PROOF_HOST,
            Self::Partition { .. } => r::PROOF_PARTITION,
            Self::Body => r::PROOF_BODY,
            Self::HeaderNotAllowed(_) => r::PROOF_HEADER,
            Self::HeaderValue(_) => r::PROOF_HEADER_VALUE,
            Self::MissingHeader(_) => r::PROOF_HEADER_MISSING,
            Self::Unsigned(_) => r::PROOF_UNSIGNED_HEADER,
            Self::SignedButAbsent(_) => r::PROOF_SIGNED_HEADER_ABSENT,
            Self::HostHeader { .. } => r::PROOF_HOST_HEADER,
            Self::ContentType => r::PROOF_CONTENT_TYPE,
            Self::Authorization(_) => r::PROOF_AUTHORIZATION,
            Self::Scope { .. } => r::PROOF_SCOPE,
            Self::Audience { .. } => r::PROOF_AUDIENCE,
            Self::EventId { .. } => r::PROOF_EVENT_ID,
            Self::BodyDigest { .. } => r::PROOF_BODY_SHA256,
            Self::Date => r::PROOF_DATE,
            Self::Stale(_) => r::PROOF_AGE,
            Self::ExpectedAccount(_) => r::ACCOUNT_ID,
            Self::StsAnswer(_) => r::STS_ANSWER,
            Self::AccountMismatch { .. } => r::PROOF_ACCOUNT,
            Self::NotAssumedRole(_) => r::PROOF_CALLER,
        }
    }
}

/// The request to send to STS, exactly as it was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// `https://<host>/`.
    pub url: String,
    pub host: String,
    /// Every signed header but `host` (the HTTP client writes it from the URL), lowercase names.
    pub headers: Vec<(String, String)>,
    pub body: &'static str,
    /// The access key id that signed it (not a secret; useful in logs).
    pub access_key_id: String,
}

/// Checks everything about a proof that needs no network, `now` in Unix seconds. Refuses anything but
/// a fresh `POST https://<STS endpoint of the event's partition>/` with exactly the GetCallerIdentity
/// body, whose binding headers are present, signed and equal to what the receiver expects.
pub fn check(proof: &str, expected: &Expected<'_>, now: u64) -> Result<Replay, ProofError> {
    if !is_account_id(expected.account_id) {
        return Err(ProofError::ExpectedAccount(
            expected.account_id.chars().take(40).collect(),
        ));
    }
    let req = SignedRequest::decode(proof)?;
    if req.method != "POST" {
        return Err(ProofError::Method(req.method.chars().take(16).collect()));
    }
    let host = url_host(&req.url)?;
    let endpoint = sts_endpoint(host).ok_or_else(|| ProofError::Host(shown(host)))?;
    if endpoint.partition.name != expected.partition {
        return Err(ProofError::Partition {
            host: host.to_string(),
            got: endpoint.partition.name,
            expected: shown(expected.partition),
        });
    }
    if req.body != STS_BODY {
        return Err(ProofError::Body);
    }

    let mut headers: BTreeMap<String, &str> = BTreeMap::new();
    for (name, value) in &req.headers {
        let lower = name.to_ascii_lowercase();
        if !ALLOWED_HEADERS.contains(&lower.as_str()) {
            return Err(ProofError::HeaderNotAllowed(shown(name)));
        }
        if value.is_empty() || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(ProofError::HeaderValue(lower));
        }
        if headers.insert(lower.clone(), value).is_some() {
            return Err(ProofError::HeaderValue(lower));
        }
    }
    let auth = headers
        .get("authorization")
        .ok_or(ProofError::MissingHeader("authorization"))?;
    let auth = Authorization::parse(auth)?;
    for name in REQUIRED_SIGNED {
        if !headers.contains_key(*name) {
            return Err(ProofError::MissingHeader(name));
        }
    }
    for name in headers.keys().filter(|n| *n != "authorization") {
        if !auth.signed_headers.contains(&name.as_str()) {
            return Err(ProofError::Unsigned(name.clone()));
        }
    }
    for name in &auth.signed_headers {
        if !headers.contains_key(*name) {
            return Err(ProofError::SignedButAbsent(shown(name)));
        }
    }
    if headers["host"] != host {
        return Err(ProofError::HostHeader {
            header: shown(headers["host"]),
            url: host.to_string(),
        });
    }
    let content_type = headers["content-type"].to_ascii_lowercase();
    if !matches!(
        content_type.as_str(),
        "application/x-www-form-urlencoded" | "application/x-www-form-urlencoded; charset=utf-8"
    ) {
        return Err(ProofError::ContentType);
    }

    // The binding: what this receiver expects, for this delivery.
    let audience = headers[AUDIENCE_HEADER];
    if audience != expected.audience {
        return Err(ProofError::Audience {
            got: shown(audience),
            expected: shown(expected.audience),
        });
    }
    let event_id = headers[EVENT_ID_HEADER];
    if event_id != expected.event_id {
        return Err(ProofError::EventId {
            got: shown(event_id),
            expected: shown(expected.event_id),
        });
    }
    let digest = sha256_hex(expected.body);
    if !headers[BODY_SHA256_HEADER].eq_ignore_ascii_case(&digest) {
        return Err(ProofError::BodyDigest {
            got: shown(headers[BODY_SHA256_HEADER]),
            expected: digest,
        });
    }

    let amz_date = headers["x-amz-date"];
    let signed_at = parse_amz_date(amz_date)?;
    let skew = now.abs_diff(signed_at);
    if skew > MAX_AGE_SECS {
        return Err(ProofError::Stale(skew));
    }
    let scope_checks = [
        ("date", auth.date, &amz_date[..8]),
        ("region", auth.region, endpoint.signing_region.as_str()),
        ("service", auth.service, "sts"),
        ("terminator", auth.terminator, "aws4_request"),
    ];
    for (what, got, want) in scope_checks {
        if got != want {
            return Err(ProofError::Scope {
                what,
                got: shown(got),
                expected: want.to_string(),
            });
        }
    }

    Ok(Replay {
        url: format!("https://{host}/"),
        host: host.to_string(),
        headers: headers
            .iter()
            .filter(|(n, _)| *n != "host")
            .map(|(n, v)| (n.clone(), v.to_string()))
            .collect(),
        body: STS_BODY,
        access_key_id: auth.access_key_id.to_string(),
    })
}

/// The host of `https://<host>/`, refusing every other shape.
fn url_host(url: &str) -> Result<&str, ProofError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(ProofError::Url);
    };
    if !scheme.eq_ignore_ascii_case("https") {
        return Err(ProofError::Scheme(shown(scheme)));
    }
    let host = rest.strip_suffix('/').ok_or(ProofError::Url)?;
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if !valid {
        // Ports, user info, paths, queries, fragments and uppercase all end up here.
        return Err(ProofError::Url);
    }
    Ok(host)
}

struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    terminator: &'a str,
    signed_headers: Vec<&'a str>,
}

impl<'a> Authorization<'a> {
    /// `AWS4-HMAC-SHA256 Credential=AKID/20261123/us-west-2/sts/aws4_request,
    /// SignedHeaders=content-type;host;..., Signature=<64 hex>`
    fn parse(value: &'a str) -> Result<Self, ProofError> {
        let rest = value
            .strip_prefix(ALGORITHM)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or(ProofError::Authorization("not AWS4-HMAC-SHA256"))?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (k, v) = part
                .trim()
                .split_once('=')
                .ok_or(ProofError::Authorization("a part is not key=value"))?;
            let slot = match k {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed,
                "Signature" => &mut signature,
                _ => return Err(ProofError::Authorization("unknown part")),
            };
            if slot.replace(v).is_some() {
                return Err(ProofError::Authorization("a part is repeated"));
            }
        }
        let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature)
        else {
            return Err(ProofError::Authorization("a part is missing"));
        };
        if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ProofError::Authorization("Signature is not 64 hex digits"));
        }
        let scope: Vec<&str> = credential.split('/').collect();
        let [access_key_id, date, region, service, terminator] = scope[..] else {
            return Err(ProofError::Authorization(
                "Credential is not AKID/date/region/service/aws4_request",
            ));
        };
        if access_key_id.is_empty() || !access_key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ProofError::Authorization("the access key id is malformed"));
        }
        let signed_headers: Vec<&str> = signed.split(';').collect();
        if signed_headers
            .iter()
            .any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase()))
        {
            return Err(ProofError::Authorization(
                "SignedHeaders must be lowercase names separated by ;",
            ));
        }
        Ok(Self {
            access_key_id,
            date,
            region,
            service,
            terminator,
            signed_headers,
        })
    }
}

/// `20261123T120000Z` as Unix seconds.
fn parse_amz_date(s: &str) -> Result<u64, ProofError> {
    let b = s.as_bytes();
    if b.len() != 16
        || b[8] != b'T'
        || b[15] != b'Z'
        || !b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
    {
        return Err(ProofError::Date);
    }
    let n = |r: std::ops::Range<usize>| s[r].parse::<u64>().map_err(|_| ProofError::Date);
    let (y, mo, d, h, mi, se) = (
        n(0..4)?,
        n(4..6)?,
        n(6..8)?,
        n(9..11)?,
        n(11..13)?,
        n(13..15)?,
    );
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
        || h > 23
        || mi > 59
        || se > 60
    {
        return Err(ProofError::Date);
    }
    Ok(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm), for years >= 1970.
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// What STS answered to GetCallerIdentity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    pub account: String,
    pub arn: String,
    pub user_id: String,
}

/// The caller a verified proof names: record `arn` with the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCaller {
    pub account_id: String,
    /// `arn:<partition>:sts::<account>:assumed-role/<role>/<session>`: for the function, its execution
    /// role and its own name as the session.
    pub arn: String,
    pub role_name: String,
    pub session_name: String,
}

/// STS's error answer (`<ErrorResponse><Error><Code>`, `<Message>`), when the body is one.
pub fn parse_sts_error(xml: &[u8]) -> Option<(String, String)> {
    let fields = xml_fields(
        xml,
        &[
            &["ErrorResponse", "Error", "Code"],
            &["ErrorResponse", "Error", "Message"],
        ],
    )
    .ok()?;
    let code = fields[0].clone()?;
    Some((code, fields[1].clone().unwrap_or_default()))
}

/// Reads a GetCallerIdentity answer: `GetCallerIdentityResponse/GetCallerIdentityResult/{Arn, Account,
/// UserId}`.
pub fn parse_caller_identity(xml: &[u8]) -> Result<CallerIdentity, ProofError> {
    const R: [&str; 2] = ["GetCallerIdentityResponse", "GetCallerIdentityResult"];
    let fields = xml_fields(
        xml,
        &[
            &[R[0], R[1], "Account"],
            &[R[0], R[1], "Arn"],
            &[R[0], R[1], "UserId"],
        ],
    )?;
    match &fields[..] {
        [Some(account), Some(arn), user_id] => Ok(CallerIdentity {
            account: account.trim().to_string(),
            arn: arn.trim().to_string(),
            user_id: user_id.clone().unwrap_or_default().trim().to_string(),
        }),
        _ => Err(ProofError::StsAnswer(
            "it has no GetCallerIdentityResult with Account and Arn",
        )),
    }
}

/// The text of the elements at each path (local names from the root); each must appear at most once.
fn xml_fields(xml: &[u8], paths: &[&[&str]]) -> Result<Vec<Option<String>>, ProofError> {
    use xmlparser::{ElementEnd, Token, Tokenizer};
    let text = std::str::from_utf8(xml).map_err(|_| ProofError::StsAnswer("it is not UTF-8"))?;
    let mut stack: Vec<&str> = Vec::new();
    let mut out: Vec<Option<String>> = vec![None; paths.len()];
    for token in Tokenizer::from(text) {
        match token.map_err(|_| ProofError::StsAnswer("it is not well-formed XML"))? {
            Token::ElementStart { local, .. } => {
                if stack.len() >= 16 {
                    return Err(ProofError::StsAnswer("it is nested too deeply"));
                }
                stack.push(local.as_str());
            }
            Token::ElementEnd { end, .. } => match end {
                ElementEnd::Open => {}
                ElementEnd::Empty => {
                    stack.pop();
                }
                ElementEnd::Close(_, local) => {
                    if stack.pop() != Some(local.as_str()) {
                        return Err(ProofError::StsAnswer("its elements do not nest"));
                    }
                }
            },
            Token::Text { text } | Token::Cdata { text, .. } => {
                if let Some(i) = paths.iter().position(|p| *p == &stack[..]) {
                    let value = unescape(text.as_str())?;
                    match &mut out[i] {
                        Some(v) => v.push_str(&value),
                        slot => *slot = Some(value),
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn unescape(s: &str) -> Result<String, ProofError> {
    if !s.contains('&') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let end = rest[i..]
            .find(';')
            .ok_or(ProofError::StsAnswer("it has a broken entity"))?;
        out.push(match &rest[i + 1..i + end] {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => return Err(ProofError::StsAnswer("it has an unknown entity")),
        });
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Compares STS's answer with the event: the same account, and an assumed-role session (what a Lambda
/// function's credentials are) of that account in the event's partition.
pub fn check_caller(
    identity: &CallerIdentity,
    expected: &Expected<'_>,
) -> Result<VerifiedCaller, ProofError> {
    if identity.account != expected.account_id {
        return Err(ProofError::AccountMismatch {
            sts: shown(&identity.account),
            claimed: shown(expected.account_id),
        });
    }
    let not_assumed = || ProofError::NotAssumedRole(shown(&identity.arn));
    let arn = Arn::parse(&identity.arn).map_err(|_| not_assumed())?;
    let (role, session) = arn.assumed_role().ok_or_else(not_assumed)?;
    if arn.account != expected.account_id
        || Partition::named(expected.partition) != Some(arn.partition)
    {
        return Err(not_assumed());
    }
    Ok(VerifiedCaller {
        account_id: identity.account.clone(),
        arn: identity.arn.clone(),
        role_name: role.to_string(),
        session_name: session.to_string(),
    })
}

fn shown(s: &str) -> String {
    s.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_435_200; // 2026-11-23T12:00:00Z
    const DATE: &str = "20261123T120000Z";
    const BODY: &[u8] = br#"{"type":"account.linked"}"#;

    fn expected() -> Expected<'static> {
        Expected {
            audience: "https://hooks.provider.example",
            event_id: "msg_1",
            body: BODY,
            partition: "aws",
            account_id: "123456789012",
        }
    }

    /// A well-formed proof (the signature itself is only checked by STS).
    fn request() -> SignedRequest {
        let host = "sts.us-west-2.amazonaws.com";
        let mut headers = BTreeMap::new();
        headers.insert("host".into(), host.into());
        headers.insert("content-type".into(), CONTENT_TYPE.into());
        headers.insert("x-amz-date".into(), DATE.into());
        headers.insert(
            "x-amz-security-token".into(),
            "FwoGZXIvYXdzEJr//token".into(),
        );
        for (k, v) in (Binding {
            audience: "https://hooks.provider.example",
            event_id: "msg_1",
            body: BODY,
        })
        .headers()
        {
            headers.insert(k.into(), v);
        }
        let signed = headers.keys().cloned().collect::<Vec<_>>().join(";");
        headers.insert(
            "authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20261123/us-west-2/sts/aws4_request, SignedHeaders={signed}, Signature={}",
                "a".repeat(64)
            ),
        );
        SignedRequest {
            method: "POST".into(),
            url: format!("https://{host}/"),
            headers,
            body: STS_BODY.into(),
        }
    }

    fn check_req(r: &SignedRequest) -> Result<Replay, ProofError> {
        check(&r.encode(), &expected(), NOW)
    }

    #[test]
    fn a_bound_fresh_proof_passes_and_replays_exactly() {
        let replay = check_req(&request()).unwrap();
        assert_eq!(replay.url, "https://sts.us-west-2.amazonaws.com/");
        assert_eq!(replay.body, STS_BODY);
        assert_eq!(replay.access_key_id, "ASIAEXAMPLE");
        assert!(replay.headers.iter().all(|(n, _)| n != "host"));
        assert_eq!(replay.headers.len(), request().headers.len() - 1);
        // Within the window on both sides.
        assert!(check(&request().encode(), &expected(), NOW + MAX_AGE_SECS).is_ok());
        assert!(check(&request().encode(), &expected(), NOW - MAX_AGE_SECS).is_ok());
    }

    fn with(f: impl FnOnce(&mut SignedRequest)) -> Result<Replay, ProofError> {
        let mut r = request();
        f(&mut r);
        check_req(&r)
    }

    fn set_header(r: &mut SignedRequest, k: &str, v: &str) {
        r.headers.insert(k.into(), v.into());
    }

    #[test]
    fn hostile_proofs_are_refused_with_their_reason() {
        let cases: Vec<(Result<Replay, ProofError>, &str)> = vec![
            (
                with(|r| r.url = "http://sts.us-west-2.amazonaws.com/".into()),
                "must use https, not http",
            ),
            (
                with(|r| {
                    r.url = "https://evil.example/".into();
                    set_header(r, "host", "evil.example");
                }),
                "evil.example, which is not an STS endpoint",
            ),
            (
                with(|r| r.url = "https://169.254.169.254/".into()),
                "not an STS endpoint",
            ),
            (
                with(|r| r.url = "https://sts.us-west-2.amazonaws.com:444/".into()),
                "https://<STS host>/",
            ),
            (
                with(|r| r.url = "https://sts.us-west-2.amazonaws.com/x?Action=AssumeRole".into()),
                "https://<STS host>/",
            ),
            (
                with(|r| r.url = "https://user@sts.us-west-2.amazonaws.com/".into()),
                "https://<STS host>/",
            ),
            (
                with(|r| {
                    r.url = "https://sts.cn-north-1.amazonaws.com.cn/".into();
                    set_header(r, "host", "sts.cn-north-1.amazonaws.com.cn");
                }),
                "partition aws-cn, but the event is from partition aws",
            ),
            (with(|r| r.method = "GET".into()), "only POST"),
            (
                with(|r| r.body = "Action=AssumeRole&Version=2011-06-15".into()),
                "body must be exactly",
            ),
            (
                with(|r| {
                    r.headers.remove(AUDIENCE_HEADER);
                }),
                "has no x-account-link-audience header",
            ),
            (
                with(|r| {
                    let a = r.headers["authorization"].replace("x-account-link-event-id;", "");
                    set_header(r, "authorization", &a);
                }),
                "x-account-link-event-id is not signed",
            ),
            (
                with(|r| set_header(r, AUDIENCE_HEADER, "https://other-provider.example")),
                "audience 'https://other-provider.example'",
            ),
            (
                with(|r| set_header(r, EVENT_ID_HEADER, "msg_2")),
                "event id 'msg_2'",
            ),
            (
                with(|r| set_header(r, BODY_SHA256_HEADER, &sha256_hex(b"another body"))),
                "not this delivery's",
            ),
            (
                with(|r| {
                    set_header(r, "x-amz-date", "20261123T113000Z");
                    let a = r.headers["authorization"].clone();
                    set_header(r, "authorization", &a);
                }),
                "signed 1800 s away",
            ),
            (
                with(|r| set_header(r, "x-amz-date", "2026-11-23T12:00:00Z")),
                "X-Amz-Date",
            ),
            (
                with(|r| {
                    let a = r.headers["authorization"].replace("us-west-2/sts", "eu-west-1/sts");
                    set_header(r, "authorization", &a);
                }),
                "region eu-west-1, expected us-west-2",
            ),
            (
                with(|r| {
                    let a = r.headers["authorization"].replace("/sts/", "/iam/");
                    set_header(r, "authorization", &a);
                }),
                "service iam",
            ),
            (
                with(|r| set_header(r, "transfer-encoding", "chunked")),
                "transfer-encoding, which a GetCallerIdentity proof may not carry",
            ),
            (
                with(|r| set_header(r, "host", "sts.us-east-1.amazonaws.com")),
                "differs from its URL's host",
            ),
            (
                with(|r| set_header(r, "x-amz-security-token", "a\r\nX-Injected: 1")),
                "invalid value",
            ),
            (
                with(|r| set_header(r, "authorization", "Bearer x")),
                "not AWS4-HMAC-SHA256",
            ),
            (
                with(|r| set_header(r, "content-type", "application/json")),
                "content-type",
            ),
        ];
        for (i, (got, words)) in cases.into_iter().enumerate() {
            let e = got.expect_err(words).to_string();
            assert!(e.contains(words), "case {i}: {e}");
        }
        let mut bad = expected();
        bad.account_id = "12345";
        assert!(matches!(
            check(&request().encode(), &bad, NOW),
            Err(ProofError::ExpectedAccount(_))
        ));
        for garbage in ["", "v2.abc", "v1.!!", "v1.e30", &"v1.".repeat(5000)] {
            assert!(check(garbage, &expected(), NOW).is_err(), "{garbage:.20}");
        }
    }

    #[test]
    fn global_and_fips_endpoints_sign_for_their_region() {
        let ok = with(|r| {
            r.url = "https://sts.amazonaws.com/".into();
            set_header(r, "host", "sts.amazonaws.com");
            let a = r.headers["authorization"].replace("us-west-2", "us-east-1");
            set_header(r, "authorization", &a);
        });
        assert_eq!(ok.unwrap().host, "sts.amazonaws.com");
        let fips = with(|r| {
            r.url = "https://sts-fips.us-west-2.amazonaws.com/".into();
            set_header(r, "host", "sts-fips.us-west-2.amazonaws.com");
        });
        assert!(fips.is_ok());
    }

    const STS_OK: &str = r#"<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult>
    <Arn>arn:aws:sts::123456789012:assumed-role/account-link-BasicLambdaRole-1A2B/account-link-fn</Arn>
    <UserId>AROAEXAMPLE:account-link-fn</UserId>
    <Account>123456789012</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata><RequestId>01234567-89ab-cdef-0123-456789abcdef</RequestId></ResponseMetadata>
</GetCallerIdentityResponse>"#;

    #[test]
    fn sts_answers_are_read_and_compared() {
        let id = parse_caller_identity(STS_OK.as_bytes()).unwrap();
        let caller = check_caller(&id, &expected()).unwrap();
        assert_eq!(caller.role_name, "account-link-BasicLambdaRole-1A2B");
        assert_eq!(caller.session_name, "account-link-fn");
        let mut other = expected();
        other.account_id = "210987654321";
        assert_eq!(
            check_caller(&id, &other).unwrap_err().to_string(),
            "STS says the proof was signed by account 123456789012, but the event claims account 210987654321"
        );
        let user = parse_caller_identity(
            STS_OK
                .replace(
                    "assumed-role/account-link-BasicLambdaRole-1A2B/account-link-fn",
                    "user/alice",
                )
                .as_bytes(),
        )
        .unwrap();
        assert!(matches!(
            check_caller(&user, &expected()),
            Err(ProofError::NotAssumedRole(_))
        ));
        let mut gov = expected();
        gov.partition = "aws-us-gov";
        assert!(matches!(
            check_caller(&id, &gov),
            Err(ProofError::NotAssumedRole(_))
        ));
        for bad in [
            "",
            "<x>",
            "<GetCallerIdentityResponse></GetCallerIdentityResponse>",
            "<a><b></a></b>",
            "<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>a&bogus;</Arn></GetCallerIdentityResult></GetCallerIdentityResponse>",
        ] {
            assert!(parse_caller_identity(bad.as_bytes()).is_err(), "{bad}");
        }
        let err = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message></Error></ErrorResponse>"#;
        assert_eq!(
            parse_sts_error(err.as_bytes()).unwrap().0,
            "SignatureDoesNotMatch"
        );
        assert!(parse_sts_error(STS_OK.as_bytes()).is_none());
    }

    #[test]
    fn amz_dates() {
        assert_eq!(parse_amz_date(DATE), Ok(NOW));
        assert_eq!(parse_amz_date("19700101T000000Z"), Ok(0));
        assert_eq!(parse_amz_date("20240229T235959Z"), Ok(1_709_251_199));
        for bad in [
            "20261323T120000Z",
            "20261123T250000Z",
            "2026112T120000Z",
            "20261123 120000Z",
        ] {
            assert_eq!(parse_amz_date(bad), Err(ProofError::Date), "{bad}");
        }
    }

    #[test]
    fn encoding_round_trips() {
        let r = request();
        let e = r.encode();
        assert!(e.starts_with("v1.") && !e.contains('=') && !e.contains('+'));
        assert_eq!(SignedRequest::decode(&e).unwrap(), r);
    }
}
