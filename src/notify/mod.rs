//! Telling the provider: a signed HTTPS callback and, optionally, an SNS topic. Both get the same event,
//! and each delivery carries what the configured [`crate::config::AuthMode`] asks for: a Standard
//! Webhooks signature, a proof of the account, or both.

mod sns;
mod webhook;

pub use sns::{SnsError, SnsPublisher, MAX_SNS_MESSAGE_BYTES};
pub use webhook::{retry_status as webhook_retry_status, Webhook, WebhookError};

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::proof::Prover;
use crate::secret::SigningKeys;

/// How deliveries are authenticated: the HMAC keys (callback only; SNS signs its own messages) and the
/// prover of the account (both channels).
#[derive(Clone, Default)]
pub struct Auth {
    pub keys: Option<Arc<SigningKeys>>,
    pub prover: Option<Arc<Prover>>,
}

use link_contract::event::LinkEvent;
use link_contract::parts::Serialized;

use crate::deadline::Deadline;

/// The seam the handler calls once the inventory is known. Tests substitute their own.
pub trait Notifier: Send + Sync {
    fn notify<'a>(
        &'a self,
        event: &'a LinkEvent,
        until: Deadline,
    ) -> BoxFuture<'a, Result<(), NotifyError>>;

    /// Where events go, for a timeout's reason ("the provider callback https://...").
    fn describe(&self) -> String {
        "the provider notification".into()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("the provider could not be told over its callback: {0}")]
    Callback(#[from] WebhookError),
    #[error("the provider could not be told over SNS: {0}")]
    Sns(#[from] SnsError),
}

/// The configured channels, used concurrently. The callback's error is reported first.
#[derive(Default)]
pub struct Channels {
    pub webhook: Option<Webhook>,
    pub sns: Option<SnsPublisher>,
}

impl Notifier for Channels {
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(w) = &self.webhook {
            parts.push(format!("the provider callback {}", w.shown_url()));
        }
        if let Some(s) = &self.sns {
            parts.push(format!("the SNS topic {}", s.topic_arn()));
        }
        if parts.is_empty() {
            "the provider notification".into()
        } else {
            parts.join(" and ")
        }
    }

    fn notify<'a>(
        &'a self,
        event: &'a LinkEvent,
        until: Deadline,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            // Serialised once for both channels and every part, whatever their size limits.
            let serialized = Serialized::new(event);
            let serialized = &serialized;
            let webhook = async {
                match &self.webhook {
                    Some(w) => w
                        .deliver_serialized(serialized, until)
                        .await
                        .map_err(NotifyError::from),
                    None => Ok(()),
                }
            };
            let sns = async {
                match &self.sns {
                    Some(s) => s
                        .publish_serialized(serialized, until)
                        .await
                        .map_err(NotifyError::from),
                    None => Ok(()),
                }
            };
            let (w, s) = futures::join!(webhook, sns);
            if let (Err(_), Err(e)) = (&w, &s) {
                tracing::warn!(error = %e, "SNS failed too");
            }
            w.and(s)
        })
    }
}
