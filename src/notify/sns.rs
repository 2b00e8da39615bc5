//! The optional SNS channel: the whole event envelope as the message (so SNS's signature covers it) and
//! its type as a message attribute. An event larger than SNS allows is split into numbered parts
//! (`link_contract::parts`), each a complete event with a share of the inventory. Each message carries its
//! proof of the account in the `accountLinkProof` attribute (bound to its delivery id and exact bytes).
//! The client is built for the topic's own region: SNS publishes only to topics of the client's region.

use aws_sdk_sns::types::MessageAttributeValue;
use aws_sdk_sns::Client;
use aws_smithy_types::error::display::DisplayErrorContext;

use std::sync::Arc;

use link_contract::event::LinkEvent;
use link_contract::{parts, proof};

use crate::deadline::Deadline;
use crate::proof::Prover;

/// SNS's limit is 256 KiB for the message and its attributes together; the rest is left to attributes
/// (the proof of the account, up to `link_contract::proof::MAX_PROOF_LEN`, and the small ones).
pub const MAX_SNS_MESSAGE_BYTES: usize = 256 * 1024 - 16 * 1024;

pub struct SnsPublisher {
    client: Client,
    topic_arn: String,
    prover: Option<Arc<Prover>>,
}

#[derive(Debug, thiserror::Error)]
#[error("sns:Publish to {topic} failed{}: {message}", part.map(|(i, n)| format!(" for part {i} of {n}")).unwrap_or_default())]
pub struct SnsError {
    topic: String,
    part: Option<(usize, usize)>,
    message: String,
}

impl SnsPublisher {
    /// `client` must be for the topic's region (see [`SnsPublisher::for_topic`]).
    pub fn new(client: Client, topic_arn: String, prover: Option<Arc<Prover>>) -> Self {
        Self {
            client,
            topic_arn,
            prover,
        }
    }

    /// A publisher whose client is built for the topic ARN's own region (not the function's).
    pub fn for_topic(
        sdk: &aws_config::SdkConfig,
        topic_arn: String,
        prover: Option<Arc<Prover>>,
    ) -> Self {
        let mut config = aws_sdk_sns::config::Builder::from(sdk);
        if let Some(region) = crate::config::topic_region(&topic_arn) {
            config = config.region(aws_config::Region::new(region));
        }
        Self::new(Client::from_conf(config.build()), topic_arn, prover)
    }

    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }

    pub async fn publish(&self, event: &LinkEvent, until: Deadline) -> Result<(), SnsError> {
        let parts = parts::split(event, MAX_SNS_MESSAGE_BYTES);
        let count = parts.len();
        let fail = |part, message| SnsError {
            topic: self.topic_arn.clone(),
            part,
            message,
        };
        // A split beyond what any receiver accepts is not sent at all.
        parts::check_split(&parts).map_err(|e| fail(None, e.to_string()))?;
        for message in parts {
            let part = message.part;
            let proof = match &self.prover {
                Some(prover) => Some(
                    prover
                        .prove(
                            &event.data.partition,
                            &event.data.region,
                            &message.delivery_id,
                            message.json.as_bytes(),
                            until,
                        )
                        .await
                        .map_err(|e| fail(part, e.to_string()))?,
                ),
                None => None,
            };
            let mut req = self
                .client
                .publish()
                .topic_arn(&self.topic_arn)
                .message(message.json)
                .message_attributes("eventType", string_attr(event.event_type.as_str()))
                .message_attributes("eventId", string_attr(&event.data.event_id));
            if let Some(proof) = &proof {
                req = req.message_attributes(proof::SNS_ATTRIBUTE, string_attr(proof));
            }
            if let Some((i, n)) = part {
                req = req.message_attributes("part", string_attr(&format!("{i}/{n}")));
            }
            if self.topic_arn.ends_with(".fifo") {
                // FIFO topics need a group (ordering per link) and a de-duplication id per message.
                req = req
                    .message_group_id(&event.data.physical_resource_id)
                    .message_deduplication_id(message.delivery_id);
            }
            match tokio::time::timeout_at(until.instant(), req.send()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(fail(part, DisplayErrorContext(&e).to_string())),
                Err(_) => {
                    return Err(fail(
                        part,
                        "no answer before the invocation's time ran out".into(),
                    ))
                }
            }
        }
        tracing::info!(topic = %self.topic_arn, parts = count, event_id = %event.data.event_id, "published to SNS");
        Ok(())
    }
}

fn string_attr(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("data_type is set")
}
