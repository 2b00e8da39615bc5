//! The signed HTTPS callback (Standard Webhooks). Each attempt is signed afresh (the timestamp is part of
//! the signature and receivers reject old ones); the `webhook-id` stays the event's id across attempts
//! and re-sent requests, so the provider can de-duplicate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, USER_AGENT};
use reqwest::StatusCode;
use url::Url;

use crate::config::Callback;
use crate::deadline::Deadline;
use crate::delivery::{self, DeliveryError, RetryPolicy};
use crate::event::{EventType, LinkEvent};
use crate::outbound::Redacted;
use crate::signing::{self, SigningSecret};

/// Worth another attempt: the provider is overloaded or briefly broken.
pub fn retry_status(s: StatusCode) -> bool {
    s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT || s == StatusCode::TOO_MANY_REQUESTS
}

pub const DEFAULT_POLICY: RetryPolicy = RetryPolicy {
    max_attempts: 8,
    per_attempt: Duration::from_secs(10),
    base_delay: Duration::from_millis(250),
    max_delay: Duration::from_secs(8),
    retry_status,
};

pub struct Webhook {
    http: reqwest::Client,
    url: Url,
    secrets: Vec<SigningSecret>,
    policy: RetryPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{url} answered HTTP {status}{}", if excerpt.is_empty() { String::new() } else { format!(": {excerpt}") })]
    Rejected {
        url: String,
        status: u16,
        excerpt: String,
    },
    #[error(
        "{url} redirected (HTTP {status}); redirects are not followed, configure the final URL"
    )]
    Redirected { url: String, status: u16 },
    #[error("{url}: {source}")]
    Unreachable { url: String, source: DeliveryError },
}

impl Webhook {
    pub fn new(http: reqwest::Client, callback: Callback) -> Self {
        Self {
            http,
            url: callback.url,
            secrets: callback.secrets,
            policy: DEFAULT_POLICY,
        }
    }

    /// Replaces the retry policy (tests use short timeouts).
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The URL as it may be logged.
    pub fn shown_url(&self) -> String {
        Redacted(&self.url).to_string()
    }

    pub async fn deliver(&self, event: &LinkEvent, until: Deadline) -> Result<(), WebhookError> {
        let body = Bytes::from(serde_json::to_vec(event).unwrap_or_default());
        let id = event.data.event_id.as_str();
        let shown = self.shown_url();
        let make = || {
            let ts = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            self.http
                .post(self.url.clone())
                .header(CONTENT_TYPE, "application/json")
                .header(
                    USER_AGENT,
                    concat!("account-link/", env!("CARGO_PKG_VERSION")),
                )
                .header(signing::HEADER_ID, id)
                .header(signing::HEADER_TIMESTAMP, ts.to_string())
                .header(
                    signing::HEADER_SIGNATURE,
                    signing::sign(&self.secrets, id, ts, &body),
                )
                .body(body.clone())
        };
        let answered = delivery::send(make, until, &self.policy)
            .await
            .map_err(|source| WebhookError::Unreachable {
                url: shown.clone(),
                source,
            })?;
        let status = answered.status;
        let unlink_of_unknown =
            event.event_type == EventType::Unlinked && matches!(status.as_u16(), 404 | 410);
        if status.is_success() || unlink_of_unknown {
            tracing::info!(url = %shown, status = status.as_u16(), attempts = answered.attempts, webhook_id = id, bytes = body.len(), "provider callback delivered");
            return Ok(());
        }
        if status.is_redirection() {
            return Err(WebhookError::Redirected {
                url: shown,
                status: status.as_u16(),
            });
        }
        Err(WebhookError::Rejected {
            url: shown,
            status: status.as_u16(),
            excerpt: answered.excerpt,
        })
    }
}
