//! Verifying a delivery's proof of the account (`link_contract::proof`): the I/O half.
//!
//! [`ProofVerifier::verify`] first runs the sans-IO check (`link_contract::proof::check`: an STS endpoint
//! of the event's partition, https, `POST /`, exactly the GetCallerIdentity body, the binding headers
//! present, signed and equal to what this receiver expects, `X-Amz-Date` within 15 minutes), and only then
//! sends the request, exactly as signed, to STS: no redirects, short timeouts, a bounded number at a time
//! (an unauthenticated flood cannot make the receiver hammer STS). STS must answer with the event's
//! account and an assumed-role session of it; the caller is returned for the link's record.
//!
//! STS is reached at the host the proof names, which is always one of AWS's STS endpoints of a region that
//! exists in the event's partition. Tests (and only tests) may send it to a loopback emulator instead
//! ([`VerifierOptions::endpoint_override`]); the host check is the same either way.
//!
//! What an unauthenticated flood can cost: a proof that passes the local checks still costs an STS call,
//! so calls are rate-limited per client and overall *before* they are made ([`VerifierOptions::limits`]:
//! over the limit, the delivery is answered 429 with `Retry-After`), and a proof STS (or the caller check)
//! refused is remembered for a while, so the same proof sent again costs nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::Digest;
use tokio::sync::Semaphore;
use url::{Host, Url};

use link_contract::proof::{self as contract, Expected};
pub use link_contract::proof::{VerifiedCaller, HEADER, SNS_ATTRIBUTE};

/// STS's answers are small; anything longer is not read.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct VerifierOptions {
    /// Proofs sent to STS at once; more wait up to `queue_wait`, then get [`ProofError::Busy`].
    pub max_concurrent: usize,
    pub queue_wait: Duration,
    /// For the whole exchange with STS.
    pub timeout: Duration,
    /// Send proofs to this loopback URL (an STS emulator such as moto) instead of the host they name.
    /// Anything but a loopback address is refused.
    pub endpoint_override: Option<String>,
    /// How many proofs may reach STS, per client and overall.
    pub limits: RateLimits,
    /// How long a refused proof is remembered (answered without asking STS again).
    pub remember_refusals: Duration,
    /// Only assumed-role sessions of roles whose name matches this pattern (`*` matches any run of
    /// characters, e.g. `*-BasicLambdaRole-*`: the stack's function role) may prove an event.
    pub role_pattern: Option<String>,
}

/// Token buckets: `per_second` refill, `burst` at most; per client address and for the whole process.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    pub per_client_per_second: f64,
    pub per_client_burst: f64,
    pub global_per_second: f64,
    pub global_burst: f64,
}

impl Default for RateLimits {
    /// A stack sends a handful of deliveries per change (one per part); a provider with many customers
    /// changing at once stays far below the global limit, a flood does not.
    fn default() -> Self {
        Self {
            per_client_per_second: 5.0,
            per_client_burst: 20.0,
            global_per_second: 100.0,
            global_burst: 200.0,
        }
    }
}

/// Clients whose buckets are kept at most; beyond that, full (idle) buckets are forgotten.
const MAX_CLIENTS: usize = 10_000;
/// Refused proofs remembered at most; beyond that, the oldest are forgotten.
const MAX_REMEMBERED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Takes a token if one is there; otherwise the seconds until one is.
    fn take(&mut self, now: Instant, per_second: f64, burst: f64) -> Result<(), u64> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_second).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / per_second.max(0.001))
                .ceil()
                .max(1.0) as u64)
        }
    }
}

#[derive(Default)]
struct Limiter {
    global: Option<Bucket>,
    clients: HashMap<IpAddr, Bucket>,
    /// SHA-256 of a refused proof: when it was refused, and why (its reason word and message).
    refused: HashMap<[u8; 32], (Instant, (&'static str, String))>,
}

impl Default for VerifierOptions {
    fn default() -> Self {
        Self {
            max_concurrent: 16,
            queue_wait: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            endpoint_override: None,
            limits: RateLimits::default(),
            remember_refusals: Duration::from_secs(300),
            role_pattern: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// The proof is not acceptable (answer 401: the sender must not retry the same proof).
    #[error(transparent)]
    Refused(#[from] contract::ProofError),
    /// STS rejected the signed request (bad signature, expired or revoked credentials).
    #[error("STS refused the proof (HTTP {status}, {code}): {message}")]
    StsRefused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("STS at {host} answered with a redirect (HTTP {status}); redirects are not followed")]
    Redirected { host: String, status: u16 },
    #[error("STS at {host} answered HTTP {status}")]
    StsFailed { host: String, status: u16 },
    #[error("STS at {host} could not be reached: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("too many proofs are being verified at once; try again later")]
    Busy,
    #[error("too many proofs from this client or overall; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("this proof was refused before: {message}")]
    RefusedBefore {
        reason: &'static str,
        message: String,
    },
    #[error(
        "the proving role {role} does not match the receiver's --proof-role-pattern {pattern}"
    )]
    RoleNotAllowed { role: String, pattern: String },
    #[error(
        "the STS endpoint override {0} is not a loopback http(s) URL; it exists for tests only"
    )]
    Override(String),
}

/// Reason words of the receiver's own policies (beside `link_contract::reason`'s, which every verifier
/// shares): proofs over the rate limits, and a proving role outside `--proof-role-pattern`.
pub const RATE_LIMITED: &str = "rate-limited";
pub const PROOF_ROLE: &str = "proof-role";

impl ProofError {
    /// The stable reason word for this refusal (`link_contract::reason`, or the two above).
    pub fn reason(&self) -> &'static str {
        use link_contract::reason as r;
        match self {
            Self::Refused(e) => e.reason(),
            Self::Redirected { .. } => r::STS_REDIRECT,
            Self::Busy => r::BUSY,
            Self::RateLimited { .. } => RATE_LIMITED,
            Self::RefusedBefore { reason, .. } => reason,
            Self::RoleNotAllowed { .. } => PROOF_ROLE,
            Self::StsRefused { code, .. } if code == "Throttling" => r::STS_UNAVAILABLE,
            Self::StsRefused { .. } => r::STS_REFUSED,
            Self::StsFailed { status, .. } if *status >= 500 || *status == 429 => {
                r::STS_UNAVAILABLE
            }
            Self::StsFailed { .. } => r::STS_REFUSED,
            Self::Unreachable { .. } | Self::Override(_) => r::STS_UNAVAILABLE,
        }
    }

    /// Worth another delivery later (answer 503): the proof may be fine, STS or this receiver was not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Busy | Self::Unreachable { .. } | Self::RateLimited { .. } => true,
            Self::StsFailed { status, .. } => *status >= 500 || *status == 429,
            Self::StsRefused { code, .. } => code == "Throttling",
            _ => false,
        }
    }
}

/// Verifies proofs; build one per process and share it.
pub struct ProofVerifier {
    http: reqwest::Client,
    endpoint_override: Option<Url>,
    permits: Arc<Semaphore>,
    queue_wait: Duration,
    limits: RateLimits,
    remember_refusals: Duration,
    role_pattern: Option<String>,
    limiter: Mutex<Limiter>,
}

impl ProofVerifier {
    pub fn new() -> Self {
        Self::with_options(VerifierOptions::default()).expect("the defaults are valid")
    }

    pub fn with_options(options: VerifierOptions) -> Result<Self, ProofError> {
        let endpoint_override = match options.endpoint_override {
            None => None,
            Some(raw) => {
                let url = Url::parse(&raw).map_err(|_| ProofError::Override(raw.clone()))?;
                if !matches!(url.scheme(), "http" | "https") || !is_loopback(&url) {
                    return Err(ProofError::Override(raw));
                }
                Some(url)
            }
        };
        // reqwest is built without a crypto provider of its own: use ring, process-wide (idempotent).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(options.timeout.min(Duration::from_secs(3)))
            .timeout(options.timeout)
            .build()
            .expect("the TLS backend initialises");
        Ok(Self {
            http,
            endpoint_override,
            permits: Arc::new(Semaphore::new(options.max_concurrent.max(1))),
            queue_wait: options.queue_wait,
            limits: options.limits,
            remember_refusals: options.remember_refusals,
            role_pattern: options.role_pattern,
            limiter: Mutex::default(),
        })
    }

    /// [`ProofVerifier::verify`] for a delivery from `client`: a proof refused before is answered from
    /// memory, and a proof that would reach STS takes a token from the client's bucket and the global
    /// one first.
    pub async fn verify_from(
        &self,
        client: IpAddr,
        proof: &str,
        expected: &Expected<'_>,
    ) -> Result<VerifiedCaller, ProofError> {
        // Everything that needs no network first: a refused proof costs no STS call, and no token.
        let replay = contract::check(proof, expected, unix_now())?;
        let key: [u8; 32] = sha2::Sha256::digest(proof.as_bytes()).into();
        self.admit(client, &key)?;
        let result = self.replay(replay, expected).await;
        if let Err(e) = &result {
            if !e.is_retryable() {
                self.remember(key, (e.reason(), e.to_string()));
            }
        }
        result
    }

    /// A refused proof seen recently is refused again; otherwise a token from the client's bucket and the
    /// global one.
    fn admit(&self, client: IpAddr, key: &[u8; 32]) -> Result<(), ProofError> {
        let now = Instant::now();
        let mut l = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, why)) = l.refused.get(key) {
            if now.saturating_duration_since(*at) < self.remember_refusals {
                return Err(ProofError::RefusedBefore {
                    reason: why.0,
                    message: why.1.clone(),
                });
            }
        }
        let r = self.limits;
        if l.clients.len() >= MAX_CLIENTS {
            // Forget clients whose buckets have refilled: they would start full anyway.
            let full = r.per_client_burst;
            l.clients.retain(|_, b| {
                b.tokens
                    + now.saturating_duration_since(b.at).as_secs_f64() * r.per_client_per_second
                    < full
            });
            if l.clients.len() >= MAX_CLIENTS {
                l.clients.clear();
            }
        }
        let fresh = |burst| Bucket {
            tokens: burst,
            at: now,
        };
        let mut client_bucket = *l
            .clients
            .entry(client)
            .or_insert_with(|| fresh(r.per_client_burst));
        let mut global = l.global.unwrap_or_else(|| fresh(r.global_burst));
        let outcome = client_bucket
            .take(now, r.per_client_per_second, r.per_client_burst)
            .and_then(|()| global.take(now, r.global_per_second, r.global_burst));
        l.clients.insert(client, client_bucket);
        l.global = Some(global);
        outcome.map_err(|retry_after_secs| ProofError::RateLimited { retry_after_secs })
    }

    fn remember(&self, key: [u8; 32], why: (&'static str, String)) {
        let mut l = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
        if l.refused.len() >= MAX_REMEMBERED {
            let keep = self.remember_refusals;
            let now = Instant::now();
            l.refused
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < keep);
            if l.refused.len() >= MAX_REMEMBERED {
                l.refused.clear();
            }
        }
        l.refused.insert(key, (Instant::now(), why));
    }

    /// Verifies `proof` (the `account-link-proof` header or `accountLinkProof` attribute) against what the
    /// delivery must be: returns the caller STS names, an assumed-role session of `expected.account_id`.
    pub async fn verify(
        &self,
        proof: &str,
        expected: &Expected<'_>,
    ) -> Result<VerifiedCaller, ProofError> {
        self.verify_at(proof, expected, unix_now()).await
    }

    /// [`Self::verify`] with the clock given (Unix seconds), for test vectors signed at a fixed time.
    pub async fn verify_at(
        &self,
        proof: &str,
        expected: &Expected<'_>,
        now: u64,
    ) -> Result<VerifiedCaller, ProofError> {
        // Everything that needs no network first: a refused proof costs no STS call.
        let replay = contract::check(proof, expected, now)?;
        self.replay(replay, expected).await
    }

    /// Sends a checked proof to STS and checks the caller it names.
    async fn replay(
        &self,
        replay: contract::Replay,
        expected: &Expected<'_>,
    ) -> Result<VerifiedCaller, ProofError> {
        let _permit = tokio::time::timeout(self.queue_wait, self.permits.acquire())
            .await
            .map_err(|_| ProofError::Busy)?
            .map_err(|_| ProofError::Busy)?;
        let target = match &self.endpoint_override {
            Some(url) => url.clone(),
            None => Url::parse(&replay.url).map_err(|_| contract::ProofError::Url)?,
        };
        let mut req = self.http.post(target);
        for (name, value) in &replay.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        let host = replay.host.clone();
        let unreachable = |e: reqwest::Error| ProofError::Unreachable {
            host: host.clone(),
            reason: if e.is_timeout() {
                "no answer in time".into()
            } else if e.is_connect() {
                "could not connect".into()
            } else {
                "the request failed".into()
            },
        };
        let mut resp = req.body(replay.body).send().await.map_err(unreachable)?;
        let status = resp.status();
        if status.is_redirection() {
            return Err(ProofError::Redirected {
                host,
                status: status.as_u16(),
            });
        }
        let mut body = Vec::new();
        while body.len() < MAX_ANSWER_BYTES {
            match resp.chunk().await.map_err(unreachable)? {
                Some(chunk) => body.extend_from_slice(&chunk),
                None => break,
            }
        }
        body.truncate(MAX_ANSWER_BYTES);
        if !status.is_success() {
            return Err(match contract::parse_sts_error(&body) {
                Some((code, message)) if status.is_client_error() => ProofError::StsRefused {
                    status: status.as_u16(),
                    code: code.chars().take(64).collect(),
                    message: message.chars().take(200).collect(),
                },
                _ => ProofError::StsFailed {
                    host,
                    status: status.as_u16(),
                },
            });
        }
        let identity = contract::parse_caller_identity(&body)?;
        let caller = contract::check_caller(&identity, expected)?;
        if let Some(pattern) = &self.role_pattern {
            if !wildcard_match(pattern, &caller.role_name) {
                return Err(ProofError::RoleNotAllowed {
                    role: caller.role_name.chars().take(64).collect(),
                    pattern: pattern.clone(),
                });
            }
        }
        tracing::debug!(account = %caller.account_id, caller = %caller.arn, access_key_id = %replay.access_key_id, "proof of the account verified");
        Ok(caller)
    }
}

impl Default for ProofVerifier {
    fn default() -> Self {
        Self::new()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `*` matches any run of characters (none included); everything else matches itself.
pub(crate) fn wildcard_match(pattern: &str, text: &str) -> bool {
    let pieces: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = pieces
        .split_first()
        .expect("split yields at least one piece");
    let Some(mut tail) = text.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return tail.is_empty();
    };
    for piece in middle {
        match tail.find(piece) {
            Some(i) => tail = &tail[i + piece.len()..],
            None => return false,
        }
    }
    tail.len() >= last.len() && tail.ends_with(last)
}

/// Whether the URL names a loopback host (the only place an STS stand-in may be).
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    //! Against local fakes (redirects, errors, floods) and moto's STS. moto answers any GetCallerIdentity
    //! without checking the signature: it names the caller by the access key id alone. So these tests
    //! prove the receiver's own checks and its handling of STS's answers, not SigV4 (STS's job); the
    //! signature itself is compared with botocore's in tests/proof.rs.

    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use link_contract::proof::{Binding, SignedRequest, CONTENT_TYPE, STS_BODY};

    const BODY: &[u8] = br#"{"type":"account.linked"}"#;
    const AUDIENCE: &str = "https://hooks.provider.example";

    fn expected(account: &'static str) -> Expected<'static> {
        Expected {
            audience: AUDIENCE,
            event_id: "msg_1",
            body: BODY,
            partition: "aws",
            account_id: account,
        }
    }

    /// `at` as SigV4's X-Amz-Date (`20261129T120000Z`).
    fn amz(at: SystemTime) -> String {
        humantime::format_rfc3339_seconds(at)
            .to_string()
            .replace(['-', ':'], "")
    }

    /// A request that passes every sans-IO check (its signature is a placeholder: only STS checks it).
    fn request(access_key: &str) -> SignedRequest {
        let host = "sts.us-west-2.amazonaws.com";
        let date = amz(SystemTime::now());
        let mut headers = BTreeMap::new();
        headers.insert("host".to_string(), host.to_string());
        headers.insert("content-type".into(), CONTENT_TYPE.into());
        headers.insert("x-amz-date".into(), date.clone());
        let binding = Binding {
            audience: AUDIENCE,
            event_id: "msg_1",
            body: BODY,
        };
        for (k, v) in binding.headers() {
            headers.insert(k.into(), v);
        }
        let signed = headers.keys().cloned().collect::<Vec<_>>().join(";");
        headers.insert(
            "authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={access_key}/{}/us-west-2/sts/aws4_request, SignedHeaders={signed}, Signature={}",
                &date[..8],
                "0".repeat(64)
            ),
        );
        SignedRequest {
            method: "POST".into(),
            url: format!("https://{host}/"),
            headers,
            body: STS_BODY.into(),
        }
    }

    fn proof(access_key: &str) -> String {
        request(access_key).encode()
    }

    /// A loopback server answering every connection with `response` (raw HTTP), after `delay`.
    async fn fake(response: &str, delay: Duration) -> (String, Arc<AtomicUsize>) {
        let response: &'static str = Box::leak(response.to_string().into_boxed_str());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 8192];
                    let _ = stream.read(&mut buf).await;
                    tokio::time::sleep(delay).await;
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        (url, hits)
    }

    fn verifier(url: &str) -> ProofVerifier {
        ProofVerifier::with_options(VerifierOptions {
            endpoint_override: Some(url.into()),
            ..VerifierOptions::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_redirecting_endpoint_is_not_followed() {
        let (url, _) = fake(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://169.254.169.254/\r\ncontent-length: 0\r\n\r\n",
            Duration::ZERO,
        )
        .await;
        let e = verifier(&url)
            .verify(&proof("ASIAX"), &expected("123456789012"))
            .await
            .unwrap_err();
        assert!(
            matches!(e, ProofError::Redirected { status: 307, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("redirects are not followed"));
    }

    #[tokio::test]
    async fn sts_refusals_and_failures_are_told_apart() {
        let xml = "<ErrorResponse><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided.</Message></Error></ErrorResponse>";
        let (url, _) = fake(
            &format!(
                "HTTP/1.1 403 Forbidden\r\ncontent-type: text/xml\r\ncontent-length: {}\r\n\r\n{xml}",
                xml.len()
            ),
            Duration::ZERO,
        )
        .await;
        let e = verifier(&url)
            .verify(&proof("ASIAX"), &expected("123456789012"))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, ProofError::StsRefused { code, .. } if code == "SignatureDoesNotMatch"),
            "{e}"
        );
        assert!(!e.is_retryable());
        let (url, _) = fake(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
            Duration::ZERO,
        )
        .await;
        let e = verifier(&url)
            .verify(&proof("ASIAX"), &expected("123456789012"))
            .await
            .unwrap_err();
        assert!(matches!(e, ProofError::StsFailed { status: 503, .. }) && e.is_retryable());
    }

    #[tokio::test]
    async fn refused_proofs_never_reach_sts() {
        let (url, hits) = fake(
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            Duration::ZERO,
        )
        .await;
        let v = verifier(&url);
        let with = |f: &dyn Fn(&mut SignedRequest)| {
            let mut r = request("ASIAX");
            f(&mut r);
            r.encode()
        };
        let set = |r: &mut SignedRequest, k: &str, v: &str| {
            r.headers.insert(k.into(), v.into());
        };
        let edit_auth = |r: &mut SignedRequest, from: &str, to: &str| {
            let a = r.headers["authorization"].replace(from, to);
            r.headers.insert("authorization".into(), a);
        };
        let stale = amz(SystemTime::now() - Duration::from_secs(1800));
        let cases: Vec<(String, &str)> = vec![
            (
                with(&|r| {
                    r.url = "https://evil.example/".into();
                    set(r, "host", "evil.example");
                }),
                "not an STS endpoint",
            ),
            (
                with(&|r| r.url = "https://169.254.169.254/".into()),
                "not an STS endpoint",
            ),
            (
                with(&|r| r.url = "http://sts.us-west-2.amazonaws.com/".into()),
                "must use https",
            ),
            (
                with(&|r| r.url = "https://sts.us-west-2.amazonaws.com:444/".into()),
                "https://<STS host>/",
            ),
            (
                with(&|r| r.url = "https://sts.us-west-2.amazonaws.com/x?Action=AssumeRole".into()),
                "https://<STS host>/",
            ),
            (
                with(&|r| {
                    r.url = "https://sts.cn-north-1.amazonaws.com.cn/".into();
                    set(r, "host", "sts.cn-north-1.amazonaws.com.cn");
                }),
                "partition aws-cn",
            ),
            (with(&|r| r.method = "GET".into()), "only POST"),
            (
                with(&|r| r.body = "Action=AssumeRole&Version=2011-06-15".into()),
                "body must be exactly",
            ),
            (
                with(&|r| {
                    r.headers.remove("x-account-link-audience");
                }),
                "has no x-account-link-audience header",
            ),
            (
                with(&|r| edit_auth(r, "x-account-link-event-id;", "")),
                "x-account-link-event-id is not signed",
            ),
            (
                with(&|r| set(r, "x-account-link-audience", "https://other.example")),
                "audience 'https://other.example'",
            ),
            (
                with(&|r| set(r, "x-account-link-event-id", "msg_2")),
                "event id 'msg_2'",
            ),
            (
                with(&|r| {
                    set(
                        r,
                        "x-account-link-body-sha256",
                        &link_contract::proof::sha256_hex(b"another body"),
                    )
                }),
                "not this delivery's",
            ),
            (
                with(&|r| set(r, "x-amz-date", &stale)),
                "signed 1800 s away",
            ),
            (
                with(&|r| edit_auth(r, "us-west-2/sts", "eu-west-1/sts")),
                "region eu-west-1",
            ),
            (with(&|r| edit_auth(r, "/sts/", "/iam/")), "service iam"),
            (
                with(&|r| set(r, "transfer-encoding", "chunked")),
                "may not carry",
            ),
            (
                with(&|r| set(r, "x-amz-security-token", "a\r\nX-Injected: 1")),
                "invalid value",
            ),
            (
                with(&|r| set(r, "host", "sts.us-east-1.amazonaws.com")),
                "differs from its URL's host",
            ),
            ("v1.!!".into(), "not encoded as expected"),
            ("garbage".into(), "not encoded as expected"),
        ];
        for (i, (p, why)) in cases.iter().enumerate() {
            let e = v.verify(p, &expected("123456789012")).await.unwrap_err();
            assert!(
                matches!(e, ProofError::Refused(_)) && e.to_string().contains(why),
                "case {i} ({why}): {e}"
            );
        }
        // A proof bound to another audience than the receiver expects.
        let mut other = expected("123456789012");
        other.audience = "https://another-provider.example";
        let e = v.verify(&proof("ASIAX"), &other).await.unwrap_err();
        assert!(
            matches!(
                e,
                ProofError::Refused(contract::ProofError::Audience { .. })
            ),
            "{e}"
        );
        assert_eq!(
            hits.load(Ordering::SeqCst),
            0,
            "no refused proof reached STS"
        );
        // The same proof, untouched, does reach it: the counter counts.
        let _ = v.verify(&proof("ASIAX"), &expected("123456789012")).await;
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_flood_waits_its_turn_then_is_refused_busy() {
        let (url, hits) = fake(
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            Duration::from_secs(3),
        )
        .await;
        let v = Arc::new(
            ProofVerifier::with_options(VerifierOptions {
                max_concurrent: 2,
                queue_wait: Duration::from_millis(200),
                endpoint_override: Some(url),
                ..VerifierOptions::default()
            })
            .unwrap(),
        );
        let p = proof("ASIAX");
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (v, p) = (v.clone(), p.clone());
                tokio::spawn(async move { v.verify(&p, &expected("123456789012")).await })
            })
            .collect();
        let mut busy = 0;
        for t in tasks {
            if matches!(t.await.unwrap(), Err(ProofError::Busy)) {
                busy += 1;
            }
        }
        assert_eq!(busy, 8);
        assert_eq!(hits.load(Ordering::SeqCst), 2, "only two reached STS");
    }

    const REFUSED_XML: &str = "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message></Error></ErrorResponse>";

    async fn refusing_sts() -> (String, Arc<AtomicUsize>) {
        fake(
            &format!(
                "HTTP/1.1 403 Forbidden\r\ncontent-type: text/xml\r\ncontent-length: {}\r\n\r\n{REFUSED_XML}",
                REFUSED_XML.len()
            ),
            Duration::ZERO,
        )
        .await
    }

    #[tokio::test]
    async fn a_flood_of_one_refused_proof_costs_one_sts_call() {
        let (url, hits) = refusing_sts().await;
        let v = verifier(&url);
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let p = proof("ASIAFORGED");
        let first = v
            .verify_from(client, &p, &expected("123456789012"))
            .await
            .unwrap_err();
        assert!(matches!(first, ProofError::StsRefused { .. }), "{first}");
        for _ in 0..50 {
            let again = v
                .verify_from(client, &p, &expected("123456789012"))
                .await
                .unwrap_err();
            assert!(
                matches!(&again, ProofError::RefusedBefore { reason: "sts-refused", message } if message.contains("InvalidClientTokenId")),
                "{again}"
            );
            assert!(!again.is_retryable());
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn proofs_reach_sts_at_a_bounded_rate_per_client_and_overall() {
        let (url, hits) = refusing_sts().await;
        let v = ProofVerifier::with_options(VerifierOptions {
            endpoint_override: Some(url),
            limits: RateLimits {
                per_client_per_second: 0.01,
                per_client_burst: 2.0,
                global_per_second: 0.01,
                global_burst: 3.0,
            },
            ..VerifierOptions::default()
        })
        .unwrap();
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            "192.0.2.3".parse().unwrap(),
        );
        // Every proof different (another access key), so none is answered from memory.
        let mut n = 0;
        let mut send = |client| {
            n += 1;
            let p = proof(&format!("ASIAFLOOD{n}"));
            let v = &v;
            async move { v.verify_from(client, &p, &expected("123456789012")).await }
        };
        assert!(matches!(send(a).await, Err(ProofError::StsRefused { .. })));
        assert!(matches!(send(a).await, Err(ProofError::StsRefused { .. })));
        let limited = send(a).await.unwrap_err();
        assert!(
            matches!(limited, ProofError::RateLimited { retry_after_secs } if retry_after_secs >= 1),
            "{limited}"
        );
        assert!(limited.is_retryable());
        // Another client has its own bucket, until the global one is empty.
        assert!(matches!(send(b).await, Err(ProofError::StsRefused { .. })));
        assert!(matches!(send(c).await, Err(ProofError::RateLimited { .. })));
        assert_eq!(hits.load(Ordering::SeqCst), 3, "three reached STS");
    }

    #[test]
    fn wildcards() {
        for (pattern, name, matches) in [
            ("*-BasicLambdaRole-*", "acme-BasicLambdaRole-1A2B3C", true),
            ("*-BasicLambdaRole-*", "acme-RemoteRole-1A2B3C", false),
            ("*-BasicLambdaRole-*", "BasicLambdaRole", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "acb", false),
            ("*", "", true),
            ("ab*ba", "aba", false),
        ] {
            assert_eq!(wildcard_match(pattern, name), matches, "{pattern} {name}");
        }
    }

    #[test]
    fn the_override_is_for_loopback_only() {
        for bad in [
            "https://sts.evil.example/",
            "http://10.0.0.1:5000/",
            "file:///x",
            "nope",
        ] {
            let e = ProofVerifier::with_options(VerifierOptions {
                endpoint_override: Some(bad.into()),
                ..VerifierOptions::default()
            });
            assert!(matches!(e, Err(ProofError::Override(_))), "{bad}");
        }
    }

    struct Moto(Child, String);

    impl Moto {
        fn start() -> Self {
            // ACCOUNT_LINK_VENV: another checkout's virtualenv (as tests/common allows).
            let venv = std::env::var_os("ACCOUNT_LINK_VENV")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv"));
            let bin = venv.join("bin/moto_server");
            assert!(bin.exists(), "{} is missing: run make test", bin.display());
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new(bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let started = std::time::Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "moto did not start"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            Self(child, format!("http://127.0.0.1:{port}/"))
        }
    }

    impl Drop for Moto {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Temporary credentials of a role assumed in moto: its GetCallerIdentity then names the session.
    async fn assumed_role_key(moto: &str, role: &str) -> String {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let arn = format!("arn:aws:iam::123456789012:role/{role}");
        let body = reqwest::Client::new()
            .post(moto)
            .header("authorization", "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20261129/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=0")
            .form(&[
                ("Action", "AssumeRole"),
                ("Version", "2011-06-15"),
                ("RoleArn", arn.as_str()),
                ("RoleSessionName", "function"),
            ])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let start = body.find("<AccessKeyId>").unwrap() + "<AccessKeyId>".len();
        let end = body[start..].find('<').unwrap();
        body[start..start + end].to_string()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn only_roles_matching_the_pattern_may_prove() {
        let moto = Moto::start();
        let strict = |pattern: &str| {
            ProofVerifier::with_options(VerifierOptions {
                endpoint_override: Some(moto.1.clone()),
                role_pattern: Some(pattern.into()),
                ..VerifierOptions::default()
            })
            .unwrap()
        };
        let function = assumed_role_key(&moto.1, "acme-BasicLambdaRole-1A2B3C").await;
        let vendor = assumed_role_key(&moto.1, "SomeVendorsAuditRole").await;
        let v = strict("*-BasicLambdaRole-*");
        let caller = v
            .verify(&proof(&function), &expected("123456789012"))
            .await
            .unwrap();
        assert_eq!(caller.role_name, "acme-BasicLambdaRole-1A2B3C");
        let e = v
            .verify(&proof(&vendor), &expected("123456789012"))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, ProofError::RoleNotAllowed { role, .. } if role == "SomeVendorsAuditRole"),
            "{e}"
        );
        // Without a pattern, any assumed role of the account proves it (the default).
        assert!(verifier(&moto.1)
            .verify(&proof(&vendor), &expected("123456789012"))
            .await
            .is_ok());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn moto_sts_answers_and_the_caller_is_checked() {
        // moto names an unknown access key's caller arn:aws:sts::123456789012:user/moto: an IAM user, not
        // a function's assumed role, so even the right account is refused.
        let moto = Moto::start();
        let v = verifier(&moto.1);
        let e = v
            .verify(&proof("AKIAUNKNOWN"), &expected("123456789012"))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, ProofError::Refused(contract::ProofError::NotAssumedRole(arn)) if arn.ends_with(":user/moto")),
            "{e}"
        );
        // An event that claims another account than the one STS names.
        let e = v
            .verify(&proof("AKIAUNKNOWN"), &expected("210987654321"))
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains(
                "signed by account 123456789012, but the event claims account 210987654321"
            ),
            "{e}"
        );
    }
}
