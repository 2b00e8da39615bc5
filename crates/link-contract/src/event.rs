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

/// 32 hex digits of SHA-256 over `a`, a newline and `b`: how the function derives ids from a request's
/// fields (the link id from StackId and LogicalResourceId; the event id from StackId and RequestId).
pub fn id_digest(a: &str, b: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(a.as_bytes())
        .chain_update(b"\n")
        .chain_update(b.as_bytes())
        .finalize();
    crate::hex::encode(&digest[..16])
}

/// The link id (the custom resource's PhysicalResourceId): `link-` and [`id_digest`] of the stack and the
/// resource's logical id. A receiver recomputes it, so an event can name only the link of its own stack.
pub fn link_id(stack_id: &str, logical_resource_id: &str) -> String {
    format!("link-{}", id_digest(stack_id, logical_resource_id))
}

/// What is wrong with an external id, if anything: IAM's `sts:ExternalId` is 2 to 1224 letters, digits
/// and `_+=,.@:/-`.
pub fn external_id_problem(id: &str) -> Option<String> {
    let len = id.chars().count();
    if !(2..=1224).contains(&len) {
        return Some(format!("is {len} characters long; IAM accepts 2 to 1224"));
    }
    id.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(*c)))
        .map(|c| format!("contains {c:?}; IAM accepts only letters, digits and _+=,.@:/-"))
}

/// Why an event's claims about itself do not hold together; each names the field. These are checked
/// after the signature (or proof): a sender that may send events at all still names only its own stack,
/// link and roles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("data.stackId is not a CloudFormation stack ARN ({0})")]
    StackId(String),
    #[error("data.{field} is '{claimed}' but data.stackId names '{in_stack}'")]
    StackMismatch {
        field: &'static str,
        claimed: String,
        in_stack: String,
    },
    #[error("data.physicalResourceId is not the link id of data.stackId and data.logicalResourceId (expected {expected})")]
    LinkId { expected: String },
    #[error("data.logicalResourceId must be 1 to 255 letters and digits")]
    LogicalResourceId,
    #[error("data.roles.{name}: {problem}")]
    Role { name: String, problem: String },
    #[error("data.externalId {0}")]
    ExternalId(String),
    #[error("data.vpcId is not a VPC id (vpc- and 8 or 17 hex digits)")]
    VpcId,
    #[error("data.regions[{index}]: '{region}' is not a region of partition {partition}")]
    Region {
        index: usize,
        region: String,
        partition: String,
    },
}

impl ClaimError {
    /// The check that failed, as a stable word ([`crate::reason`]).
    pub fn reason(&self) -> &'static str {
        use crate::reason as r;
        match self {
            Self::StackId(_) => r::STACK_ID,
            Self::StackMismatch { .. } => r::STACK_MISMATCH,
            Self::LinkId { .. } => r::LINK_ID,
            Self::LogicalResourceId => r::LOGICAL_RESOURCE_ID,
            Self::Role { .. } => r::ROLE,
            Self::ExternalId(_) => r::EXTERNAL_ID,
            Self::VpcId => r::VPC_ID,
            Self::Region { .. } => r::REGION,
        }
    }

    /// A claim about another stack's link, or one contradicting the event's own stack
    /// ([`crate::reason::CONFLICTS`]): the sender may send events, but not about that link. A receiver
    /// learns who sent it (the proof) before it refuses it, and keeps it apart (409) rather than dropping it.
    pub fn is_conflict(&self) -> bool {
        crate::reason::CONFLICTS.contains(&self.reason())
    }
}

/// Role names in `data.roles` at most, and their length (the template passes three).
const MAX_ROLES: usize = 16;
const MAX_ROLE_KEY_LEN: usize = 64;
/// Regions in one event at most (every region of the largest partition, with room to grow).
const MAX_REGIONS: usize = 64;

fn shown(s: &str) -> String {
    s.chars().take(120).collect()
}

impl LinkData {
    /// The event's claims about itself hold together: the stack ARN's partition, region and account are
    /// `data.partition`, `data.region` and `data.accountId`; `physicalResourceId` is the link id of that
    /// stack and logical id; every role is an IAM role of that account and partition; every region is a
    /// region of the partition. Together with the proof (which ties `accountId` to the sending account),
    /// an event can only describe the sender's own stack, link and roles.
    pub fn check_claims(&self) -> Result<(), ClaimError> {
        let arn = crate::arn::Arn::parse(&self.stack_id)
            .map_err(|e| ClaimError::StackId(e.to_string()))?;
        if arn.stack().is_none() {
            return Err(ClaimError::StackId("not a stack".into()));
        }
        for (field, claimed, in_stack) in [
            ("partition", self.partition.as_str(), arn.partition.name),
            ("region", self.region.as_str(), arn.region),
            ("accountId", self.account_id.as_str(), arn.account),
        ] {
            if claimed != in_stack {
                return Err(ClaimError::StackMismatch {
                    field,
                    claimed: shown(claimed),
                    in_stack: shown(in_stack),
                });
            }
        }
        let logical = &self.logical_resource_id;
        if logical.is_empty()
            || logical.len() > 255
            || !logical.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(ClaimError::LogicalResourceId);
        }
        let expected = link_id(&self.stack_id, logical);
        if self.physical_resource_id != expected {
            return Err(ClaimError::LinkId { expected });
        }
        if self.roles.len() > MAX_ROLES {
            return Err(ClaimError::Role {
                name: "*".into(),
                problem: format!("at most {MAX_ROLES} roles"),
            });
        }
        for (name, role) in &self.roles {
            let refuse = |problem: String| ClaimError::Role {
                name: shown(name),
                problem,
            };
            if name.is_empty()
                || name.len() > MAX_ROLE_KEY_LEN
                || !name.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err(refuse(format!(
                    "role names are 1 to {MAX_ROLE_KEY_LEN} letters and digits"
                )));
            }
            let not_ours = || {
                refuse(format!(
                    "'{}' is not an IAM role of account {} in partition {}",
                    shown(role),
                    self.account_id,
                    self.partition
                ))
            };
            let arn = crate::arn::Arn::parse(role).map_err(|_| not_ours())?;
            if arn.role_name().is_none()
                || arn.account != self.account_id
                || arn.partition.name != self.partition
            {
                return Err(not_ours());
            }
        }
        if let Some(problem) = self.external_id.as_deref().and_then(external_id_problem) {
            return Err(ClaimError::ExternalId(problem));
        }
        if self
            .vpc_id
            .as_deref()
            .is_some_and(|v| !crate::inventory::is_ec2_id(v, "vpc"))
        {
            return Err(ClaimError::VpcId);
        }
        let partition = arn.partition;
        if self.regions.len() > MAX_REGIONS {
            return Err(ClaimError::Region {
                index: MAX_REGIONS,
                region: format!("({} regions)", self.regions.len()),
                partition: partition.name.into(),
            });
        }
        for (index, region) in self.regions.iter().enumerate() {
            if !partition.has_region(region) {
                return Err(ClaimError::Region {
                    index,
                    region: shown(region),
                    partition: partition.name.into(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> LinkData {
        let e: LinkEvent =
            serde_json::from_str(include_str!("../../../docs/examples/account.linked.json"))
                .unwrap();
        e.data
    }

    #[test]
    fn the_documented_example_holds_together() {
        assert_eq!(example().check_claims(), Ok(()));
    }

    #[test]
    fn every_claim_is_checked_and_named() {
        type Edit = fn(&mut LinkData);
        let cases: [(&str, Edit); 14] = [
            ("data.externalId", |d| {
                d.external_id = Some("ext\u{0}id-with-a-nul".into())
            }),
            ("data.vpcId", |d| {
                d.vpc_id = Some("vpc-'; DROP TABLE links".into())
            }),
            ("data.stackId", |d| d.stack_id = "not-an-arn".into()),
            ("data.stackId", |d| {
                d.stack_id = "arn:aws:iam::123456789012:role/x".into()
            }),
            ("data.accountId", |d| d.account_id = "210987654321".into()),
            ("data.region", |d| d.region = "eu-west-1".into()),
            ("data.partition", |d| d.partition = "aws-cn".into()),
            // Another account's link: the physical id of a stack that is not this event's.
            ("data.physicalResourceId", |d| {
                d.physical_resource_id = link_id(
                    "arn:aws:cloudformation:us-west-2:210987654321:stack/victim/1",
                    "AccountLink",
                )
            }),
            ("data.physicalResourceId", |d| {
                d.logical_resource_id = "Other".into()
            }),
            ("data.logicalResourceId", |d| {
                d.logical_resource_id = "a/b".into()
            }),
            ("data.roles.RemoteRole", |d| {
                d.roles.insert(
                    "RemoteRole".into(),
                    "arn:aws:iam::210987654321:role/victims-role".into(),
                );
            }),
            ("data.roles.RemoteRole", |d| {
                d.roles.insert(
                    "RemoteRole".into(),
                    "arn:aws-cn:iam::123456789012:role/r".into(),
                );
            }),
            ("data.roles.RemoteRole", |d| {
                d.roles.insert(
                    "RemoteRole".into(),
                    "arn:aws:iam::123456789012:user/not-a-role".into(),
                );
            }),
            ("data.regions[1]", |d| d.regions[1] = "cn-north-1".into()),
        ];
        for (field, edit) in cases {
            let mut d = example();
            edit(&mut d);
            let e = d.check_claims().unwrap_err();
            assert!(e.to_string().contains(field), "{field}: {e}");
            // The conflicts are the claims about whose stack and link it is.
            assert_eq!(
                e.is_conflict(),
                [
                    "data.accountId",
                    "data.region",
                    "data.partition",
                    "data.physicalResourceId"
                ]
                .contains(&field),
                "{field}"
            );
        }
    }

    #[test]
    fn ids_are_the_functions() {
        let d = example();
        assert_eq!(
            link_id(&d.stack_id, &d.logical_resource_id),
            d.physical_resource_id
        );
        assert_eq!(id_digest("a", "b").len(), 32);
    }
}
