//! The event the provider receives (see `docs/provider-events.md` and `schema/link-event.v1.json`): a
//! Standard Webhooks payload `{"type", "timestamp", "data"}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::inventory::RegionInventory;

/// Bumped only for changes that could break a receiver; adding optional fields does not.
pub const SCHEMA_VERSION: &str = "1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkEvent {
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// When the function built the event: RFC 3339 UTC with milliseconds, fixed width, so timestamps
    /// also sort as strings.
    pub timestamp: String,
    pub data: LinkData,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkData {
    pub schema_version: String,
    /// The same for every delivery of one CloudFormation request; the `webhook-id` of a whole event.
    pub event_id: String,
    pub account_id: String,
    pub partition: String,
    /// The stack's region (where the function runs).
    pub region: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    /// The link's id at the provider.
    pub physical_resource_id: String,
    pub external_id: Option<String>,
    pub roles: BTreeMap<String, String>,
    pub vpc_id: Option<String>,
    /// The VPC peering connection the stack accepted from the provider (`Custom::PeeringAcceptance`, through
    /// the `Peering` property); absent when the stack has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peering: Option<Peering>,
    /// The regions that were listed (the `Regions` property, or the stack's region).
    pub regions: Vec<String>,
    /// False when the listing failed (only on unlink, where it does not stop the event).
    pub inventory_complete: bool,
    pub inventory: Vec<RegionInventory>,
    /// Update only: what the properties were and which changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
    /// Set only on deliveries that carry part of a split inventory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<Part>,
}

/// The custom resource's properties, as the event reports them (`previous` in [`Changes`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkProperties {
    pub regions: Vec<String>,
    pub external_id: Option<String>,
    pub roles: BTreeMap<String, String>,
    pub vpc_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peering: Option<Peering>,
}

/// The state of the VPC peering connection the customer's stack accepted from the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Peering {
    /// `pcx-...`.
    pub vpc_peering_connection_id: String,
    /// EC2's status code: `active` once accepted (`pending-acceptance`, `provisioning`, `failed`, ...).
    pub status: String,
    /// The provider's CIDR the stack routes through the connection.
    pub provider_cidr: String,
    /// The customer's route tables that route `provider_cidr` through the connection.
    pub route_table_ids: Vec<String>,
    /// The provider's VPC (the requester).
    pub requester_vpc_id: Option<String>,
    /// The customer's VPC (the accepter).
    pub accepter_vpc_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Changes {
    /// Names of the properties whose value changed (`Regions`, `ExternalId`, `Roles`, `VpcId`, `Peering`).
    pub changed_properties: Vec<String>,
    /// The previous properties; null when the previous ones could not be read.
    pub previous: Option<LinkProperties>,
}

/// Which share of a split event a delivery carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    /// 1-based.
    pub index: usize,
    pub count: usize,
    /// Names the split this part belongs to (a digest of the whole event): a request that is re-sent and
    /// lists a changed inventory is split anew, and its parts are never mixed with the first split's.
    #[serde(default)]
    pub set: String,
}

impl LinkData {
    /// The `webhook-id` of the delivery that carries this data: the event id, or for a part
    /// `<eventId>-<set>-<index>of<count>`, so every part is its own delivery that is de-duplicated alone.
    pub fn delivery_id(&self) -> String {
        match &self.part {
            None => self.event_id.clone(),
            Some(p) => format!("{}-{}-{}of{}", self.event_id, p.set, p.index, p.count),
        }
    }
}
