//! The signed HTTPS callback (Standard Webhooks). Each attempt is signed afresh (the timestamp is part of
//! the signature and receivers reject old ones); the `webhook-id` stays the event's id across attempts
//! and re-sent requests, so the provider can de-duplicate. An event larger than the configured body limit
//! goes out as numbered parts (`link_contract::parts`), one signed delivery each, in order. Each delivery
//! also carries its proof of the account (`account-link-proof`), made once per delivery (it binds the
//! `webhook-id` and the body, which retries do not change, and stays valid for 15 minutes).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, USER_AGENT};
use reqwest::StatusCode;
use url::Url;

use link_contract::event::{EventType, LinkEvent};
use link_contract::parts;
use link_contract::{proof, signing};

use super::Auth;
use crate::config::Callback;
use crate::deadline::Deadline;
use crate::delivery::{self, DeliveryError, RetryPolicy};
use crate::outbound::Redacted;
use crate::proof::ProveError;
use crate::secret::SecretError;

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
    auth: Auth,
    max_body_bytes: usize,
    policy: RetryPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{url} answered HTTP {status}{}{}", part.map(|(i, n)| format!(" to part {i} of {n}")).unwrap_or_default(), if excerpt.is_empty() { String::new() } else { format!(": {excerpt}") })]
    Rejected {
        url: String,
        status: u16,
        part: Option<(usize, usize)>,
        excerpt: String,
    },
    #[error(
        "{url} redirected (HTTP {status}); redirects are not followed, configure the final URL"
    )]
    Redirected { url: String, status: u16 },
    #[error("{url}: {source}")]
    Unreachable { url: String, source: DeliveryError },
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Proof(#[from] ProveError),
    /// A split beyond what any receiver accepts: nothing is sent.
    #[error("{0} (or raise PROVIDER_MAX_BODY_BYTES)")]
    TooLarge(#[from] parts::PartError),
}

impl Webhook {
    /// `auth` says what each delivery carries: a signature (with its keys), a proof, or both.
    pub fn new(http: reqwest::Client, callback: Callback, auth: Auth) -> Self {
        Self {
            http,
            url: callback.url,
            auth,
            max_body_bytes: callback.max_body_bytes,
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

    /// Delivers the event, in parts when it is larger than the body limit; the first part that fails
    /// ends the delivery (the parts already accepted stay with the provider until a retry completes them).
    pub async fn deliver(&self, event: &LinkEvent, until: Deadline) -> Result<(), WebhookError> {
        let messages = parts::split(event, self.max_body_bytes);
        parts::check_split(&messages)?;
        for message in messages {
            self.deliver_one(event, message, until).await?;
        }
        Ok(())
    }

    async fn deliver_one(
        &self,
        event: &LinkEvent,
        message: parts::Message,
        until: Deadline,
    ) -> Result<(), WebhookError> {
        let event_type: EventType = event.event_type;
        let body = Bytes::from(message.json);
        let id = message.delivery_id.as_str();
        let shown = self.shown_url();
        let secrets = match &self.auth.keys {
            Some(keys) => Some(keys.get(until).await?),
            None => None,
        };
        let proof = match &self.auth.prover {
            Some(prover) => Some(
                prover
                    .prove(&event.data.partition, &event.data.region, id, &body, until)
                    .await?,
            ),
            None => None,
        };
        let make = || {
            let ts = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let mut req = self
                .http
                .post(self.url.clone())
                .header(CONTENT_TYPE, "application/json")
                .header(
                    USER_AGENT,
                    concat!("account-link/", env!("CARGO_PKG_VERSION")),
                )
                .header(signing::HEADER_ID, id)
                .header(signing::HEADER_TIMESTAMP, ts.to_string());
            if let Some(secrets) = secrets {
                req = req.header(
                    signing::HEADER_SIGNATURE,
                    signing::sign(secrets, id, ts, &body),
                );
            }
            if let Some(proof) = &proof {
                req = req.header(proof::HEADER, proof.as_str());
            }
            req.body(body.clone())
        };
        let answered = delivery::send(make, until, &self.policy)
            .await
            .map_err(|source| WebhookError::Unreachable {
                url: shown.clone(),
                source,
            })?;
        let status = answered.status;
        let unlink_of_unknown =
            event_type == EventType::Unlinked && matches!(status.as_u16(), 404 | 410);
        if status.is_success() || unlink_of_unknown {
            tracing::info!(url = %shown, status = status.as_u16(), attempts = answered.attempts, webhook_id = id, bytes = body.len(), part = ?message.part, "provider callback delivered");
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
            part: message.part,
            excerpt: answered.excerpt,
        })
    }
}
