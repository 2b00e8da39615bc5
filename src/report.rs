//! Builds the contract's event from a CloudFormation request and what was found: the only place that
//! maps the custom resource's world (request, properties, inventory) onto the provider's wire format.

use link_contract::event::{
    Changes, EventType, LinkData, LinkEvent, LinkProperties, SCHEMA_VERSION,
};
use link_contract::inventory::Inventory;

use crate::cfn::{CfnRequest, RequestType};

/// The event type a request type reports.
pub fn event_type(t: RequestType) -> EventType {
    match t {
        RequestType::Create => EventType::Linked,
        RequestType::Update => EventType::Updated,
        RequestType::Delete => EventType::Unlinked,
    }
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
    // humantime panics on a time before 1970: a clock that far off reports the epoch.
    humantime::format_rfc3339_millis(t.max(std::time::UNIX_EPOCH)).to_string()
}

/// The event for `req`. `previous` is given on Update (None inside when the old properties could not be
/// read); `inventory` is None when the listing failed (only on Delete, which reports it anyway).
pub fn link_event(
    req: &CfnRequest,
    physical_resource_id: &str,
    props: &LinkProperties,
    previous: Option<Option<LinkProperties>>,
    inventory: Option<Inventory>,
) -> LinkEvent {
    let changes = previous.map(|previous| Changes {
        changed_properties: changed(previous.as_ref(), props),
        previous,
    });
    let inventory_complete = inventory.is_some();
    LinkEvent {
        event_type: event_type(req.request_type),
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
            peering: props.peering.clone(),
            regions: props.regions.clone(),
            inventory_complete,
            inventory: inventory.map(|i| i.0).unwrap_or_default(),
            changes,
            part: None,
        },
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
        ("Peering", p.peering != now.peering),
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
        // Milliseconds are cut, not rounded; a clock before 1970 reports the epoch.
        assert_eq!(
            rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(1_999_999)),
            "1970-01-01T00:00:00.001Z"
        );
        assert_eq!(
            rfc3339_millis(std::time::UNIX_EPOCH - std::time::Duration::from_secs(1)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn event_id_is_per_request() {
        assert_eq!(event_id("s", "r"), event_id("s", "r"));
        assert_ne!(event_id("s", "r"), event_id("s", "r2"));
        assert!(event_id("s", "r").starts_with("msg_") && event_id("s", "r").len() == 36);
    }

    #[test]
    fn changes_list_what_differs() {
        let a = crate::properties::defaults("eu-west-1");
        let mut b = a.clone();
        b.vpc_id = Some("vpc-12345678".into());
        assert_eq!(changed(Some(&a), &b), ["VpcId"]);
        assert_eq!(changed(None, &b).len(), 5);
        assert!(changed(Some(&a), &a).is_empty());
    }
}
