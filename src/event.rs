//! The event the provider receives: the project's public contract (see `docs/provider-events.md` and
//! `schema/link-event.v1.json`). A Standard Webhooks payload: `{"type", "timestamp", "data"}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cfn::{CfnRequest, RequestType};
use crate::inventory::{Inventory, RegionInventory};
use crate::properties::LinkProperties;

/// Bumped only for changes that could break a receiver; adding optional fields does not.
pub const SCHEMA_VERSION: &str = "1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "account.linked")]
    Linked,
    #[serde(rename = "account.updated")]
    Updated,
    #[serde(rename = "account.unlinked")]
    Unlinked,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linked => "account.linked",
            Self::Updated => "account.updated",
            Self::Unlinked => "account.unlinked",
        }
    }
}

impl From<RequestType> for EventType {
    fn from(t: RequestType) -> Self {
        match t {
            RequestType::Create => Self::Linked,
            RequestType::Update => Self::Updated,
            RequestType::Delete => Self::Unlinked,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkEvent {
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// When the function built the event, RFC 3339 UTC.
    pub timestamp: String,
    pub data: LinkData,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkData {
    pub schema_version: String,
    /// Also the `webhook-id`: the same for every delivery of one CloudFormation request.
    pub event_id: String,
    pub account_id: String,
    pub partition: String,
    /// The stack's region (where the function runs).
    pub region: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub physical_resource_id: String,
    pub external_id: Option<String>,
    pub roles: BTreeMap<String, String>,
    pub vpc_id: Option<String>,
    /// The regions that were listed (the `Regions` property, or the stack's region).
    pub regions: Vec<String>,
    /// False when the listing failed (only on unlink, where it does not stop the event).
    pub inventory_complete: bool,
    pub inventory: Vec<RegionInventory>,
    /// Update only: what the properties were and which changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
    /// Set only on SNS messages that carry part of a split inventory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<Part>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Changes {
    /// Names of the properties whose value changed (`Regions`, `ExternalId`, `Roles`, `VpcId`).
    pub changed_properties: Vec<String>,
    /// The previous properties; null when the previous ones could not be read.
    pub previous: Option<LinkProperties>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    /// 1-based.
    pub index: usize,
    pub count: usize,
}

/// The id of every delivery of one CloudFormation request (`msg_` and 32 hex digits).
pub fn event_id(stack_id: &str, request_id: &str) -> String {
    format!("msg_{}", crate::cfn::digest_hex(stack_id, request_id))
}

/// RFC 3339 UTC with milliseconds always present, so timestamps also sort as strings.
pub fn now_rfc3339() -> String {
    rfc3339_millis(std::time::SystemTime::now())
}

fn rfc3339_millis(t: std::time::SystemTime) -> String {
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let whole = aws_smithy_types::DateTime::from_secs(since.as_secs() as i64)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default();
    format!(
        "{}.{:03}Z",
        whole.trim_end_matches('Z'),
        since.subsec_millis()
    )
}

impl LinkEvent {
    pub fn new(
        req: &CfnRequest,
        physical_resource_id: &str,
        props: &LinkProperties,
        previous: Option<Option<LinkProperties>>,
        inventory: Option<Inventory>,
    ) -> Self {
        let changes = previous.map(|previous| Changes {
            changed_properties: changed(previous.as_ref(), props),
            previous,
        });
        let inventory_complete = inventory.is_some();
        Self {
            event_type: req.request_type.into(),
            timestamp: now_rfc3339(),
            data: LinkData {
                schema_version: SCHEMA_VERSION.into(),
                event_id: event_id(&req.reply.stack_id, &req.reply.request_id),
                account_id: req.stack.account_id.clone(),
                partition: req.stack.partition.clone(),
                region: req.stack.region.clone(),
                stack_id: req.reply.stack_id.clone(),
                request_id: req.reply.request_id.clone(),
                logical_resource_id: req.reply.logical_resource_id.clone(),
                physical_resource_id: physical_resource_id.to_string(),
                external_id: props.external_id.clone(),
                roles: props.roles.clone(),
                vpc_id: props.vpc_id.clone(),
                regions: props.regions.clone(),
                inventory_complete,
                inventory: inventory.map(|i| i.0).unwrap_or_default(),
                changes,
                part: None,
            },
        }
    }
}

fn changed(previous: Option<&LinkProperties>, now: &LinkProperties) -> Vec<String> {
    let Some(p) = previous else {
        return crate::properties::PROPERTY_NAMES
            .iter()
            .map(|s| s.to_string())
            .collect();
    };
    [
        ("Regions", p.regions != now.regions),
        ("ExternalId", p.external_id != now.external_id),
        ("Roles", p.roles != now.roles),
        ("VpcId", p.vpc_id != now.vpc_id),
    ]
    .into_iter()
    .filter(|(_, differs)| *differs)
    .map(|(name, _)| name.to_string())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_fixed_width() {
        let t = |ms| rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms));
        assert_eq!(t(1_795_478_400_000), "2026-11-24T00:00:00.000Z");
        assert_eq!(t(1_795_478_400_007), "2026-11-24T00:00:00.007Z");
        assert!(t(1_795_478_400_000) < t(1_795_478_400_007));
    }

    #[test]
    fn event_id_is_per_request() {
        assert_eq!(event_id("s", "r"), event_id("s", "r"));
        assert_ne!(event_id("s", "r"), event_id("s", "r2"));
        assert!(event_id("s", "r").starts_with("msg_") && event_id("s", "r").len() == 36);
    }

    #[test]
    fn changes_list_what_differs() {
        let a = LinkProperties::defaults("eu-west-1");
        let mut b = a.clone();
        b.vpc_id = Some("vpc-12345678".into());
        assert_eq!(changed(Some(&a), &b), ["VpcId"]);
        assert_eq!(changed(None, &b).len(), 4);
        assert!(changed(Some(&a), &a).is_empty());
    }
}
