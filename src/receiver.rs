//! The provider's side of the contract: verify a delivery (signature, timestamp, replay), parse the event,
//! and keep it. `link-receiver` serves this over HTTP; a provider's own Rust service can call
//! [`Receiver::receive`] directly.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::event::LinkEvent;
use crate::signing::{self, SigningSecret, VerifyError};

/// Large enough for a 10 000-subnet inventory in one event.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Remembered ids; the oldest are forgotten first (they are past the timestamp tolerance by then).
const MAX_REMEMBERED: usize = 100_000;

#[derive(Debug, PartialEq)]
pub enum Accepted {
    /// New: the event was written.
    New(Box<LinkEvent>),
    /// This `webhook-id` was accepted before: nothing is written again, and the sender is told it
    /// arrived (so it stops retrying).
    Duplicate,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("signature check failed: {0}")]
    Signature(#[from] VerifyError),
    #[error("the body is not a link event: {0}")]
    NotAnEvent(String),
    #[error("webhook-id {header} does not match the event's eventId {event}")]
    IdMismatch { header: String, event: String },
}

impl Rejected {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::NotAnEvent(_) | Self::IdMismatch { .. } => StatusCode::BAD_REQUEST,
        }
    }
}

pub struct Receiver {
    secrets: Vec<SigningSecret>,
    tolerance_secs: u64,
    seen: Mutex<HashMap<String, u64>>,
    out: Mutex<Box<dyn Write + Send>>,
}

impl Receiver {
    pub fn new(
        secrets: Vec<SigningSecret>,
        tolerance_secs: u64,
        out: Box<dyn Write + Send>,
    ) -> Self {
        Self {
            secrets,
            tolerance_secs,
            seen: Mutex::new(HashMap::new()),
            out: Mutex::new(out),
        }
    }

    /// Verifies and records one delivery. `now` is Unix seconds.
    pub fn receive(
        &self,
        id: Option<&str>,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: u64,
    ) -> Result<Accepted, Rejected> {
        signing::verify(
            &self.secrets,
            id,
            timestamp,
            signature,
            body,
            now,
            self.tolerance_secs,
        )?;
        let id = id.unwrap_or_default();
        let event: LinkEvent =
            serde_json::from_slice(body).map_err(|e| Rejected::NotAnEvent(e.to_string()))?;
        if event.data.event_id != id {
            return Err(Rejected::IdMismatch {
                header: id.to_string(),
                event: event.data.event_id,
            });
        }
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.contains_key(id) {
                return Ok(Accepted::Duplicate);
            }
            if seen.len() >= MAX_REMEMBERED {
                let horizon = now.saturating_sub(2 * self.tolerance_secs);
                seen.retain(|_, t| *t >= horizon);
            }
            seen.insert(id.to_string(), now);
        }
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = out.write_all(&line).and_then(|()| out.flush()) {
            tracing::error!(error = %e, "could not write the event");
        }
        Ok(Accepted::New(Box::new(event)))
    }

    /// Serves HTTP on `listener` until the future is dropped: POST (any path) with a Standard Webhooks
    /// delivery; 200 when accepted (or a duplicate), 401 for a bad signature, 400 for a bad body.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                // Out of file descriptors or similar: back off instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let this = this.clone();
                    async move { Ok::<_, std::convert::Infallible>(this.handle_http(req, peer).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    }

    async fn handle_http(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        if req.method() != Method::POST {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "POST a Standard Webhooks delivery",
            );
        }
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (id, ts, sig) = (
            header(signing::HEADER_ID),
            header(signing::HEADER_TIMESTAMP),
            header(signing::HEADER_SIGNATURE),
        );
        let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return reply(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body too large or unreadable",
                )
            }
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match self.receive(id.as_deref(), ts.as_deref(), sig.as_deref(), &body, now) {
            Ok(Accepted::New(event)) => {
                tracing::info!(%peer, webhook_id = id.as_deref().unwrap_or_default(), r#type = event.event_type.as_str(),
                    account_id = %event.data.account_id, "event accepted");
                reply(StatusCode::OK, "accepted")
            }
            Ok(Accepted::Duplicate) => {
                tracing::info!(%peer, webhook_id = id.as_deref().unwrap_or_default(), "duplicate delivery ignored");
                reply(StatusCode::OK, "duplicate")
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "delivery rejected");
                reply(e.status(), &e.to_string())
            }
        }
    }
}

fn reply(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "status": status.as_u16(), "message": text }).to_string();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}
