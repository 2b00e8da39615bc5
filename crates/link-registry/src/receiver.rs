//! `POST /hooks/account-link`: one delivery, checked in the order that keeps an unauthenticated client's
//! cost small, then stored.
//!
//! 1. Headers only: webhook-id, the timestamp window, the signature's syntax (and the proof's presence).
//!    A request that fails here is refused before its body is read.
//! 2. The body: Content-Length checked first, then read with a size limit and a time limit.
//! 3. The signature: one HMAC per configured secret, behind a semaphore, and for bodies over 64 KiB on the
//!    blocking pool, so a flood of forged deliveries cannot starve the async workers that serve valid ones.
//! 4. The event itself: JSON, schema version, webhook-id = the delivery id it names, a timestamp that is
//!    not ahead of this receiver's clock, a part's bounds (`link_contract::parts::check_part`), and its
//!    claims about itself (`LinkData::check_claims`: its stack, link id, roles and regions).
//! 5. The proof of the sending account (when configured), rate-limited per client and overall before STS
//!    is called, and a refused proof remembered for a while (`proof`).
//! 6. The store: 2xx only once the delivery is durably committed; a failed write answers 503 and nothing
//!    is remembered, so the sender's retry stores it. An event that names another stack's link is kept
//!    apart (409), never applied; the account's hourly quota answers 429 with `Retry-After`.
//!
//! Everything in an event is input from an account the provider does not control: a good signature or
//! proof says who sent it, not that its counts, ids, names and times are sane.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use link_contract::event::{ClaimError, EventType, LinkEvent, SCHEMA_VERSION};
use link_contract::parts::PartError;
use link_contract::signing::{self, SigningSecret, VerifyError, WebhookHeaders};
use tracing::Instrument;

use crate::client::Client;
use crate::store::{event_millis, now_millis, Delivery, Outcome, Refusal, StoreError};
use crate::App;
use link_contract::proof::Expected;

/// Why a delivery was refused; each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    #[error("signature check failed: {0}")]
    Signature(#[from] VerifyError),
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("the account proof was refused: {0}")]
    Proof(String),
    #[error("the account proof could not be checked now; retry: {0}")]
    ProofUnavailable(String),
    #[error("the body is {0} bytes; this receiver accepts at most {1}")]
    TooLarge(u64, usize),
    #[error("the body did not arrive in time")]
    BodyTimeout,
    #[error("the body could not be read: {0}")]
    BodyUnreadable(String),
    #[error("the body is not a link event: {0}")]
    NotAnEvent(String),
    #[error("webhook-id {header} is not the delivery id the event names ({event})")]
    IdMismatch { header: String, event: String },
    #[error(
        "data.schemaVersion {0} is not supported (this receiver reads version {SCHEMA_VERSION})"
    )]
    SchemaVersion(String),
    #[error("the delivery could not be stored; retry: {0}")]
    Store(#[from] StoreError),
    #[error("the receiver is busy; retry")]
    Busy,
    #[error("timestamp {timestamp} is {ahead_secs} s ahead of this receiver's clock (at most {tolerance_secs} s are accepted)")]
    TimestampAhead {
        timestamp: String,
        ahead_secs: i64,
        tolerance_secs: u64,
    },
    #[error(transparent)]
    Part(#[from] PartError),
    #[error(transparent)]
    Claims(ClaimError),
    /// The event names another stack's link (or contradicts its own stack): kept apart, never applied.
    #[error("refused and kept apart: {0}")]
    Conflict(String),
    /// Nothing of it was stored: its split refuses it.
    #[error("{0}")]
    Invalid(String),
    #[error(
        "account {account} stored its quota of {what} for this hour; retry in {retry_after_secs} s"
    )]
    Quota {
        account: String,
        what: &'static str,
        retry_after_secs: u64,
    },
    #[error("too many proofs to check from this client or overall; retry in {0} s")]
    ProofRateLimited(u64),
}

impl Rejected {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Signature(_) | Self::MissingHeader(_) | Self::Proof(_) => {
                StatusCode::UNAUTHORIZED
            }
            Self::TooLarge(..) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BodyUnreadable(_)
            | Self::NotAnEvent(_)
            | Self::IdMismatch { .. }
            | Self::SchemaVersion(_)
            | Self::TimestampAhead { .. }
            | Self::Part(_)
            | Self::Claims(_)
            | Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Quota { .. } | Self::ProofRateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Store(_) | Self::Busy | Self::ProofUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// Seconds after which a retry can succeed, for answers that say so (`Retry-After`).
    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Quota {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            Self::ProofRateLimited(secs) => Some(*secs),
            Self::Store(_) | Self::Busy | Self::ProofUnavailable(_) => Some(1),
            _ => None,
        }
    }
}

impl IntoResponse for Rejected {
    fn into_response(self) -> Response {
        let mut r = reply(self.status(), &self.to_string());
        if let Some(secs) = self.retry_after() {
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        r
    }
}

fn reply(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "status": status.as_u16(), "message": message })),
    )
        .into_response()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Bodies up to this size are checked on the request's task; larger ones on the blocking pool. At 64 KiB
/// the HMAC and the parse take about 100 µs, the cost of a few context switches.
const INLINE_CHECK_BYTES: usize = 64 * 1024;

/// The axum handler.
pub(crate) async fn receive(
    State(app): State<Arc<App>>,
    client: Client,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let webhook_id = text(signing::HEADER_ID).unwrap_or_default();
    // The client as a trusted proxy reports it (the peer otherwise): what per-client limits count.
    let span = tracing::info_span!(
        "delivery",
        client = %client.ip,
        webhook_id = link_contract_id(webhook_id),
    );
    async move {
        match accept(&app, client.ip, &headers, body).await {
            Ok(message) => {
                tracing::info!(outcome = %message, "delivery accepted");
                reply(StatusCode::OK, &message)
            }
            Err(e) => {
                let status = e.status();
                if status.is_server_error() {
                    tracing::error!(error = %e, "delivery not stored");
                } else {
                    tracing::warn!(error = %e, status = status.as_u16(), "delivery refused");
                }
                e.into_response()
            }
        }
    }
    .instrument(span)
    .await
}

/// A webhook-id as it may be logged: bounded, printable.
fn link_contract_id(id: &str) -> String {
    id.chars()
        .take(signing::MAX_ID_LEN)
        .filter(|c| c.is_ascii_graphic())
        .collect()
}

async fn accept(
    app: &Arc<App>,
    client: IpAddr,
    headers: &HeaderMap,
    body: Body,
) -> Result<String, Rejected> {
    let auth = &app.auth;
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // 1. Headers.
    let (id, ts, now) = (
        text(signing::HEADER_ID),
        text(signing::HEADER_TIMESTAMP),
        unix_now(),
    );
    let checked = if auth.mode.hmac() {
        WebhookHeaders::parse(
            id,
            ts,
            text(signing::HEADER_SIGNATURE),
            now,
            auth.tolerance_secs,
        )?
    } else {
        // Proof only: the proof binds the id and the body instead of a signature.
        WebhookHeaders::parse_unsigned(id, ts, now, auth.tolerance_secs)?
    };
    let proof = match &app.proofs {
        Some(_) => Some(
            text(crate::proof::HEADER)
                .ok_or(Rejected::MissingHeader(crate::proof::HEADER))?
                .to_string(),
        ),
        None => None,
    };
    // 2. Body.
    let limit = app.limits.max_body_bytes;
    if let Some(len) = text(header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<u64>().ok()) {
        if len > limit as u64 {
            return Err(Rejected::TooLarge(len, limit));
        }
    }
    let body = match tokio::time::timeout(app.limits.body_timeout, to_bytes(body, limit)).await {
        Err(_) => return Err(Rejected::BodyTimeout),
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return Err(if too_large {
                Rejected::TooLarge(limit as u64 + 1, limit)
            } else if crate::server::is_too_slow(&e) {
                Rejected::BodyTimeout
            } else {
                Rejected::BodyUnreadable(e.to_string())
            });
        }
        Ok(Ok(b)) => b,
    };
    // 3 and 4, behind a semaphore: a flood of forged deliveries waits for a slot instead of starving the
    // workers that serve valid ones. A small body (every whole event the function sends but the largest
    // accounts') is checked right here: its HMAC and parse take microseconds, less than handing it to the
    // blocking pool and back, which also wakes two more threads per delivery. A larger one (up to the body
    // limit, megabytes) goes to the blocking pool, off the async workers.
    let permit = app
        .verify_slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| Rejected::Busy)?;
    let webhook_id = checked.id.clone();
    let tolerance_secs = auth.tolerance_secs;
    let (event, body, claims) = if body.len() <= INLINE_CHECK_BYTES {
        let secrets = auth.mode.hmac().then_some(auth.secrets.as_slice());
        let checked = check(&checked, secrets, body, tolerance_secs);
        drop(permit);
        checked?
    } else {
        let secrets = auth.mode.hmac().then(|| auth.secrets.clone());
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            check(&checked, secrets.as_deref(), body, tolerance_secs)
        })
        .await
        .map_err(|_| Rejected::Busy)??
    };
    // 5. The proof of the account: only now, after everything local, may STS be asked.
    let caller_arn = match (&app.proofs, proof) {
        (Some(verifier), Some(proof)) => {
            let expected = Expected {
                audience: auth.audience.as_deref().unwrap_or_default(),
                event_id: &webhook_id,
                body: &body,
                partition: &event.data.partition,
                account_id: &event.data.account_id,
            };
            match verifier.verify_from(client, &proof, &expected).await {
                Ok(caller) => Some(caller.arn),
                Err(crate::proof::ProofError::RateLimited { retry_after_secs }) => {
                    return Err(Rejected::ProofRateLimited(retry_after_secs))
                }
                Err(e) if e.is_retryable() => {
                    return Err(Rejected::ProofUnavailable(e.to_string()))
                }
                Err(e) => return Err(Rejected::Proof(e.to_string())),
            }
        }
        _ => None,
    };
    // 6. Store.
    let event_at = event_millis(&event.timestamp).unwrap_or_default();
    let link_id = event.data.physical_resource_id.clone();
    let delivery = Delivery {
        webhook_id,
        body: String::from_utf8(Vec::from(body))
            .map_err(|e| Rejected::NotAnEvent(e.to_string()))?,
        event,
        event_at,
        received_at: now_millis(),
        caller_arn,
    };
    if let Err(conflict) = claims {
        // Proven (or signed), so worth showing to operators; never applied to any link.
        let reason = conflict.to_string();
        app.store.reject(delivery, reason.clone()).await?;
        return Err(Rejected::Conflict(reason));
    }
    let account = delivery.event.data.account_id.clone();
    let event_type = delivery.event.event_type;
    let message = match app.store.ingest(delivery).await? {
        Outcome::Stored { applied: true } => {
            // A link's first event: can the provider use its roles? (Checked once, in the background.)
            if event_type != EventType::Unlinked {
                crate::live::after_event(app.clone(), link_id.clone());
            }
            "stored".to_string()
        }
        Outcome::Stored { applied: false } => {
            "stored in the history; the link has a newer event".to_string()
        }
        Outcome::Duplicate => return Ok("duplicate: stored before".to_string()),
        Outcome::PartStored { received, count } => {
            format!("part stored: {received} of {count} parts have arrived")
        }
        Outcome::Refused(Refusal::Conflict(reason)) => return Err(Rejected::Conflict(reason)),
        Outcome::Refused(Refusal::Invalid(reason)) => return Err(Rejected::Invalid(reason)),
        Outcome::Refused(Refusal::Quota {
            what,
            retry_after_secs,
        }) => {
            return Err(Rejected::Quota {
                account,
                what,
                retry_after_secs,
            })
        }
        Outcome::Alive => return Err(Rejected::Busy),
    };
    app.notify_stored(link_id);
    Ok(message)
}

/// Signature (when configured) and event checks: CPU work. The event's claims are checked last; a
/// conflict is returned beside the event (it is kept apart once the proof says who sent it), any other
/// refusal is an error.
fn check(
    headers: &WebhookHeaders,
    secrets: Option<&[SigningSecret]>,
    body: Bytes,
    tolerance_secs: u64,
) -> Result<(LinkEvent, Bytes, Result<(), ClaimError>), Rejected> {
    if let Some(secrets) = secrets {
        headers.verify(secrets, &body)?;
    }
    let event: LinkEvent =
        serde_json::from_slice(&body).map_err(|e| Rejected::NotAnEvent(e.to_string()))?;
    if event.data.schema_version != SCHEMA_VERSION {
        return Err(Rejected::SchemaVersion(
            event.data.schema_version.chars().take(16).collect(),
        ));
    }
    let expected = event.data.delivery_id();
    if expected != headers.id {
        return Err(Rejected::IdMismatch {
            header: headers.id.clone(),
            event: expected,
        });
    }
    let Some(at) = event_millis(&event.timestamp) else {
        return Err(Rejected::NotAnEvent(
            "timestamp is not an RFC 3339 UTC time".into(),
        ));
    };
    // A timestamp from the future would win the ordering against every real event to come.
    let ahead_ms = at.saturating_sub(now_millis());
    if ahead_ms > (tolerance_secs as i64).saturating_mul(1000) {
        return Err(Rejected::TimestampAhead {
            timestamp: event.timestamp.chars().take(40).collect(),
            ahead_secs: ahead_ms / 1000,
            tolerance_secs,
        });
    }
    if event.data.physical_resource_id.is_empty() || event.data.physical_resource_id.len() > 1024 {
        return Err(Rejected::NotAnEvent(
            "data.physicalResourceId must be 1 to 1024 characters".into(),
        ));
    }
    if let Some(part) = &event.data.part {
        link_contract::parts::check_part(part)?;
    }
    let claims = match event.data.check_claims() {
        Ok(()) => Ok(()),
        // Another stack's link, or its own stack under another account: kept apart (409) once the proof
        // says who sent it, so operators see the attempt (`ClaimError::is_conflict`).
        Err(e) if e.is_conflict() => Err(e),
        Err(e) => return Err(Rejected::Claims(e)),
    };
    Ok((event, body, claims))
}
