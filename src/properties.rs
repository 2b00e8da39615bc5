//! The custom resource's properties (`Custom::AccountLink`), typed and validated. Every error names the
//! property a cloud admin has to fix.
//!
//! CloudFormation passes every scalar as a string and adds `ServiceToken` (and `ServiceTimeout` when set)
//! itself. An empty string means "not set", so optional template parameters can be passed straight through.
//! Any other key is rejected: a misspelt property (`Region`) must not be silently ignored.

use std::collections::{BTreeMap, BTreeSet};

use link_contract::arn::Arn;
use link_contract::event::{LinkProperties, Peering};
use link_contract::partition::{is_region_name, Partition};
use serde_json::Value;

/// The properties this resource reads (the template passes exactly these).
pub const PROPERTY_NAMES: &[&str] = &["Regions", "ExternalId", "Roles", "VpcId", "Peering"];
/// The keys of the `Peering` property: the `!GetAtt` attributes of `Custom::PeeringAcceptance`.
pub const PEERING_KEYS: &[&str] = &[
    "VpcPeeringConnectionId",
    "Status",
    "ProviderCidr",
    "RouteTableIds",
    "RequesterVpcId",
    "AccepterVpcId",
];
/// EC2's status codes of a VPC peering connection.
pub const PEERING_STATUSES: &[&str] = &[
    "initiating-request",
    "pending-acceptance",
    "provisioning",
    "active",
    "deleting",
    "deleted",
    "rejected",
    "failed",
    "expired",
];
/// Keys CloudFormation adds to every custom resource's properties.
pub const CLOUDFORMATION_KEYS: &[&str] = &["ServiceToken", "ServiceTimeout"];

const MAX_REGIONS: usize = 32;
/// The shortest ExternalId a link accepts: the provider generates it (16 random bytes as 32 hex digits by
/// default), so that nobody can guess the one another customer's roles expect (the confused deputy).
pub const MIN_EXTERNAL_ID_LEN: usize = 16;
const MAX_ROLES: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PropertyError {
    pub field: String,
    pub message: String,
}

pub(crate) fn err(field: impl Into<String>, message: impl Into<String>) -> PropertyError {
    PropertyError {
        field: field.into(),
        message: message.into(),
    }
}

/// What a link with no properties means: the function's own region, nothing else.
pub fn defaults(function_region: &str) -> LinkProperties {
    LinkProperties {
        regions: vec![function_region.to_string()],
        external_id: None,
        roles: BTreeMap::new(),
        vpc_id: None,
        peering: None,
    }
}

/// Parses `ResourceProperties`. `partition` and `account` are the stack's (from its ARN): regions must
/// belong to the partition, role ARNs to the stack's own account (a stack cannot claim another account's
/// roles).
pub fn parse(
    value: &Value,
    function_region: &str,
    partition: &str,
    account: &str,
) -> Result<LinkProperties, PropertyError> {
    let empty = serde_json::Map::new();
    let obj = property_object(value, "Custom::AccountLink", PROPERTY_NAMES)?.unwrap_or(&empty);
    let regions = match parse_regions(obj.get("Regions"), partition)? {
        r if r.is_empty() => vec![function_region.to_string()],
        r => r,
    };
    Ok(LinkProperties {
        regions,
        external_id: parse_external_id(obj.get("ExternalId"))?,
        roles: parse_roles(obj.get("Roles"), partition, account)?,
        vpc_id: parse_vpc_id(obj.get("VpcId"))?,
        peering: parse_peering(obj.get("Peering"))?,
    })
}

/// `ResourceProperties` as an object (`None` for null) whose keys are all `accepted` or CloudFormation's
/// own: a misspelt property is an error naming it, never silently ignored.
pub(crate) fn property_object<'a>(
    value: &'a Value,
    resource_type: &str,
    accepted: &[&str],
) -> Result<Option<&'a serde_json::Map<String, Value>>, PropertyError> {
    const ROOT: &str = "ResourceProperties";
    let obj = match value {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        _ => return Err(err(ROOT, "must be an object of properties")),
    };
    if let Some(unknown) = obj
        .keys()
        .find(|k| !accepted.contains(&k.as_str()) && !CLOUDFORMATION_KEYS.contains(&k.as_str()))
    {
        return Err(err(
            format!("{ROOT}.{}", crate::text::truncate_chars(unknown, 64)),
            format!(
                "is not a property of {resource_type} (accepted: {})",
                accepted.join(", ")
            ),
        ));
    }
    Ok(Some(obj))
}

/// A scalar as CloudFormation sends it; `None` when absent, null or empty.
pub(crate) fn scalar(v: Option<&Value>, field: &str) -> Result<Option<String>, PropertyError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(err(field, format!("must be a string, got {}", kind(other)))),
    }
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn parse_regions(v: Option<&Value>, partition: &str) -> Result<Vec<String>, PropertyError> {
    // A CommaDelimitedList parameter arrives as a list; a plain String parameter as "a,b".
    let items: Vec<(String, Value)> = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .enumerate()
            .map(|(i, s)| (format!("Regions[{i}]"), Value::String(s.to_string())))
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("Regions[{i}]"), v.clone()))
            .collect(),
        Some(other) => {
            return Err(err(
                "Regions",
                format!("must be a list of region names, got {}", kind(other)),
            ))
        }
    };
    if items.len() > MAX_REGIONS {
        return Err(err(
            "Regions",
            format!(
                "lists {} regions; at most {MAX_REGIONS} are allowed",
                items.len()
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (field, value) in items {
        let Some(region) = scalar(Some(&value), &field)? else {
            return Err(err(field, "is empty; give a region name such as eu-west-1"));
        };
        if !is_region_name(&region) {
            return Err(err(
                field,
                format!(
                    "'{}' is not an AWS region name (expected e.g. eu-west-1)",
                    crate::text::truncate_chars(&region, 40)
                ),
            ));
        }
        let in_partition = Partition::of_region(&region).name;
        if in_partition != partition {
            return Err(err(
                field,
                format!("{region} belongs to partition {in_partition}, but the stack runs in partition {partition}"),
            ));
        }
        if !seen.insert(region.clone()) {
            return Err(err(field, format!("{region} is listed more than once")));
        }
        out.push(region);
    }
    Ok(out)
}

fn parse_external_id(v: Option<&Value>) -> Result<Option<String>, PropertyError> {
    const F: &str = "ExternalId";
    let Some(id) = scalar(v, F)? else {
        return Ok(None);
    };
    match link_contract::event::external_id_problem(&id) {
        Some(problem) => Err(err(F, problem)),
        None => Ok(Some(id)),
    }
}

/// What a link (Create, Update) needs beyond valid properties: an ExternalId of at least
/// [`MIN_EXTERNAL_ID_LEN`] characters. (Delete does not ask: a stack must stay deletable.)
pub fn require_external_id(props: &LinkProperties) -> Result<&str, PropertyError> {
    const F: &str = "ExternalId";
    let Some(id) = props.external_id.as_deref() else {
        return Err(err(
            F,
            format!("is required: the provider's external ID, at least {MIN_EXTERNAL_ID_LEN} characters, which the roles it assumes demand"),
        ));
    };
    let len = id.chars().count();
    if len < MIN_EXTERNAL_ID_LEN {
        return Err(err(
            F,
            format!("is {len} characters long; a link needs at least {MIN_EXTERNAL_ID_LEN} (the provider generates it)"),
        ));
    }
    Ok(id)
}

fn parse_roles(
    v: Option<&Value>,
    partition: &str,
    account: &str,
) -> Result<BTreeMap<String, String>, PropertyError> {
    const F: &str = "Roles";
    let obj = match v {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(BTreeMap::new()),
        Some(Value::Object(o)) => o,
        Some(other) => {
            return Err(err(
                F,
                format!(
                    "must be a map of role name to role ARN, got {}",
                    kind(other)
                ),
            ))
        }
    };
    if obj.len() > MAX_ROLES {
        return Err(err(
            F,
            format!("has {} entries; at most {MAX_ROLES} are allowed", obj.len()),
        ));
    }
    let mut out = BTreeMap::new();
    for (name, arn) in obj {
        let shown = crate::text::truncate_chars(name, 64);
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(err(
                F,
                format!("'{shown}' is not a valid name: use 1-64 letters, digits, '_', '.' or '-'"),
            ));
        }
        let field = format!("Roles.{name}");
        let Some(arn) = scalar(Some(arn), &field)? else {
            return Err(err(field, "is empty; give the role's ARN"));
        };
        check_role_arn(&arn, partition, account).map_err(|m| err(&field, m))?;
        out.insert(name.clone(), arn);
    }
    Ok(out)
}

fn check_role_arn(arn: &str, partition: &str, account: &str) -> Result<(), String> {
    let shown = crate::text::truncate_chars(arn, 120);
    let bad = || {
        format!("'{shown}' is not an IAM role ARN (arn:{partition}:iam::123456789012:role/Name)")
    };
    let parsed = Arn::parse(arn).map_err(|e| match e {
        link_contract::arn::ArnError::Account(a) => {
            format!("'{shown}' has account id '{a}'; an AWS account id is 12 digits")
        }
        _ => bad(),
    })?;
    if parsed.role_name().is_none() {
        return Err(bad());
    }
    if parsed.partition.name != partition {
        return Err(format!(
            "'{shown}' is in partition {}, but the stack runs in partition {partition}",
            parsed.partition.name
        ));
    }
    if parsed.account != account {
        return Err(format!(
            "'{shown}' is a role of account {}, but the stack runs in account {account}; a link names only its own account's roles",
            parsed.account
        ));
    }
    Ok(())
}

fn parse_vpc_id(v: Option<&Value>) -> Result<Option<String>, PropertyError> {
    const F: &str = "VpcId";
    let Some(id) = scalar(v, F)? else {
        return Ok(None);
    };
    check_ec2_id(&id, "vpc", "a VPC id").map_err(|m| err(F, m))?;
    Ok(Some(id))
}

/// `<prefix>-` and 8 or 17 lowercase hex digits: the shape of every EC2 resource id (the contract's, which
/// the provider's receiver checks too).
pub(crate) use link_contract::inventory::is_ec2_id;

pub(crate) fn check_ec2_id(id: &str, prefix: &str, what: &str) -> Result<(), String> {
    if is_ec2_id(id, prefix) {
        return Ok(());
    }
    Err(format!(
        "'{}' is not {what} ({prefix}- and 8 or 17 hex digits)",
        crate::text::truncate_chars(id, 40)
    ))
}

/// An IPv4 block `a.b.c.d/n` with no host bits set, returned in canonical form.
pub(crate) fn parse_ipv4_cidr(s: &str) -> Result<String, String> {
    let shown = crate::text::truncate_chars(s, 40);
    let bad = || format!("'{shown}' is not an IPv4 CIDR block such as 10.8.0.0/16");
    let (addr, len) = s.split_once('/').ok_or_else(bad)?;
    let addr: std::net::Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let len: u32 = match len.parse() {
        Ok(n) if n <= 32 && !len.starts_with('+') => n,
        _ => return Err(bad()),
    };
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    let network = std::net::Ipv4Addr::from(u32::from(addr) & mask);
    if network != addr {
        return Err(format!(
            "'{shown}' has host bits set; the block is {network}/{len}"
        ));
    }
    Ok(format!("{network}/{len}"))
}

/// The `Peering` property: what `Custom::PeeringAcceptance` reported, passed on to the provider.
fn parse_peering(v: Option<&Value>) -> Result<Option<Peering>, PropertyError> {
    const F: &str = "Peering";
    let obj = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::Object(o)) => o,
        Some(other) => {
            return Err(err(
                F,
                format!(
                    "must be a map of {}, got {}",
                    PEERING_KEYS.join(", "),
                    kind(other)
                ),
            ))
        }
    };
    if let Some(unknown) = obj.keys().find(|k| !PEERING_KEYS.contains(&k.as_str())) {
        return Err(err(
            format!("{F}.{}", crate::text::truncate_chars(unknown, 64)),
            format!(
                "is not a key of Peering (accepted: {})",
                PEERING_KEYS.join(", ")
            ),
        ));
    }
    let field = |k: &str| format!("{F}.{k}");
    let required = |k: &str| -> Result<String, PropertyError> {
        scalar(obj.get(k), &field(k))?.ok_or_else(|| err(field(k), "is required"))
    };
    let id = required("VpcPeeringConnectionId")?;
    check_ec2_id(&id, "pcx", "a VPC peering connection id")
        .map_err(|m| err(field("VpcPeeringConnectionId"), m))?;
    let status = required("Status")?;
    if !PEERING_STATUSES.contains(&status.as_str()) {
        return Err(err(
            field("Status"),
            format!(
                "'{}' is not a VPC peering status ({})",
                crate::text::truncate_chars(&status, 40),
                PEERING_STATUSES.join(", ")
            ),
        ));
    }
    let provider_cidr =
        parse_ipv4_cidr(&required("ProviderCidr")?).map_err(|m| err(field("ProviderCidr"), m))?;
    let mut route_table_ids = Vec::new();
    for (i, id) in scalar(obj.get("RouteTableIds"), &field("RouteTableIds"))?
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
    {
        check_ec2_id(id, "rtb", "a route table id")
            .map_err(|m| err(format!("{F}.RouteTableIds[{i}]"), m))?;
        route_table_ids.push(id.to_string());
    }
    let vpc = |k: &str| -> Result<Option<String>, PropertyError> {
        let v = scalar(obj.get(k), &field(k))?;
        if let Some(id) = &v {
            check_ec2_id(id, "vpc", "a VPC id").map_err(|m| err(field(k), m))?;
        }
        Ok(v)
    };
    Ok(Some(Peering {
        vpc_peering_connection_id: id,
        status,
        provider_cidr,
        route_table_ids,
        requester_vpc_id: vpc("RequesterVpcId")?,
        accepter_vpc_id: vpc("AccepterVpcId")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<LinkProperties, PropertyError> {
        super::parse(&v, "us-west-2", "aws", "123456789012")
    }

    #[test]
    fn empty_properties_mean_the_function_region() {
        let p = parse(json!({"ServiceToken": "arn:aws:lambda:us-west-2:1:function:f", "ExternalId": "", "VpcId": ""})).unwrap();
        assert_eq!(p, defaults("us-west-2"));
        assert_eq!(parse(Value::Null).unwrap(), defaults("us-west-2"));
    }

    #[test]
    fn full_properties_parse() {
        let p = parse(json!({
            "Regions": ["eu-west-1", "us-east-1"],
            "ExternalId": "ext-123_abc",
            "Roles": {"RemoteRole": "arn:aws:iam::123456789012:role/path/RemoteRole"},
            "VpcId": "vpc-0123456789abcdef0",
            "ServiceTimeout": "300"
        }))
        .unwrap();
        assert_eq!(p.regions, ["eu-west-1", "us-east-1"]);
        assert_eq!(p.external_id.as_deref(), Some("ext-123_abc"));
        assert_eq!(
            p.roles["RemoteRole"],
            "arn:aws:iam::123456789012:role/path/RemoteRole"
        );
        assert_eq!(p.vpc_id.as_deref(), Some("vpc-0123456789abcdef0"));
        assert_eq!(
            parse(json!({"Regions": "eu-west-1, us-east-1"}))
                .unwrap()
                .regions,
            ["eu-west-1", "us-east-1"]
        );
    }

    #[test]
    fn peering_parses() {
        let p = parse(json!({"Peering": {
            "VpcPeeringConnectionId": "pcx-0123456789abcdef0",
            "Status": "active",
            "ProviderCidr": "10.8.0.0/16",
            "RouteTableIds": "rtb-12345678, rtb-0123456789abcdef0",
            "RequesterVpcId": "vpc-87654321",
            "AccepterVpcId": ""
        }}))
        .unwrap()
        .peering
        .unwrap();
        assert_eq!(p.vpc_peering_connection_id, "pcx-0123456789abcdef0");
        assert_eq!(p.route_table_ids, ["rtb-12345678", "rtb-0123456789abcdef0"]);
        assert_eq!(p.requester_vpc_id.as_deref(), Some("vpc-87654321"));
        assert_eq!(p.accepter_vpc_id, None);
        assert_eq!(parse(json!({"Peering": ""})).unwrap().peering, None);
    }

    #[test]
    fn cidrs() {
        assert_eq!(parse_ipv4_cidr("10.8.0.0/16").unwrap(), "10.8.0.0/16");
        assert_eq!(parse_ipv4_cidr("0.0.0.0/0").unwrap(), "0.0.0.0/0");
        assert_eq!(parse_ipv4_cidr("10.8.1.7/32").unwrap(), "10.8.1.7/32");
        for bad in [
            "10.8.0.0",
            "999.8.0.0/16",
            "10.8.0.0/33",
            "10.8.0.0/+8",
            "10.08.0.0/16",
            "x/1",
        ] {
            assert!(parse_ipv4_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_link_requires_a_long_external_id() {
        let p = |id: &str| parse(json!({ "ExternalId": id })).unwrap();
        let e = require_external_id(&p("")).unwrap_err();
        assert!(
            e.field == "ExternalId" && e.message.contains("is required"),
            "{e}"
        );
        let e = require_external_id(&p("ext-123_abc")).unwrap_err();
        assert!(e.message.contains("11 characters long"), "{e}");
        assert_eq!(
            require_external_id(&p("0123456789abcdef")).unwrap(),
            "0123456789abcdef"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                json!({"Region": "eu-west-1"}),
                "ResourceProperties.Region",
                "not a property",
            ),
            (
                json!({"Regions": ["eu-west-1", "eu-west-1"]}),
                "Regions[1]",
                "more than once",
            ),
            (
                json!({"Regions": ["eu-west-1", "moon-1"]}),
                "Regions[1]",
                "not an AWS region",
            ),
            (
                json!({"Regions": ["cn-north-1"]}),
                "Regions[0]",
                "partition aws-cn",
            ),
            (json!({"Regions": 7}), "Regions", "list of region names"),
            (
                json!({"Regions": [["x"]]}),
                "Regions[0]",
                "must be a string",
            ),
            (
                json!({"ExternalId": "x".repeat(1 << 20)}),
                "ExternalId",
                "1048576 characters",
            ),
            (
                json!({"ExternalId": "has space"}),
                "ExternalId",
                "contains ' '",
            ),
            (json!({"Roles": ["arn"]}), "Roles", "map of role name"),
            (
                json!({"Roles": {"R": "arn:aws:iam::12:role/R"}}),
                "Roles.R",
                "12 digits",
            ),
            (
                json!({"Roles": {"R": "arn:aws:s3:::bucket"}}),
                "Roles.R",
                "not an IAM role ARN",
            ),
            (
                json!({"Roles": {"R": "arn:aws-cn:iam::123456789012:role/R"}}),
                "Roles.R",
                "partition aws-cn",
            ),
            (
                json!({"Roles": {"R": "arn:aws:iam::210987654321:role/R"}}),
                "Roles.R",
                "role of account 210987654321",
            ),
            (json!({"VpcId": "vpc-xyz"}), "VpcId", "not a VPC id"),
            (json!({"Peering": "pcx-1"}), "Peering", "must be a map"),
            (
                json!({"Peering": {"ConnectionId": "pcx-12345678"}}),
                "Peering.ConnectionId",
                "not a key of Peering",
            ),
            (
                json!({"Peering": {"Status": "active", "ProviderCidr": "10.8.0.0/16"}}),
                "Peering.VpcPeeringConnectionId",
                "required",
            ),
            (
                json!({"Peering": {"VpcPeeringConnectionId": "pcx-1234", "Status": "active", "ProviderCidr": "10.8.0.0/16"}}),
                "Peering.VpcPeeringConnectionId",
                "not a VPC peering connection id",
            ),
            (
                json!({"Peering": {"VpcPeeringConnectionId": "pcx-12345678", "Status": "up", "ProviderCidr": "10.8.0.0/16"}}),
                "Peering.Status",
                "not a VPC peering status",
            ),
            (
                json!({"Peering": {"VpcPeeringConnectionId": "pcx-12345678", "Status": "active", "ProviderCidr": "10.8.0.1/16"}}),
                "Peering.ProviderCidr",
                "host bits set; the block is 10.8.0.0/16",
            ),
            (
                json!({"Peering": {"VpcPeeringConnectionId": "pcx-12345678", "Status": "active", "ProviderCidr": "10.8.0.0/16", "RouteTableIds": "rtb-12345678,igw-12345678"}}),
                "Peering.RouteTableIds[1]",
                "not a route table id",
            ),
            (
                json!({"VpcId": {"Ref": "Vpc"}}),
                "VpcId",
                "must be a string",
            ),
            (json!([1]), "ResourceProperties", "object"),
        ];
        for (input, field, words) in cases {
            let e = parse(input.clone()).unwrap_err();
            assert_eq!(e.field, field, "{input}");
            assert!(e.message.contains(words), "{input}: {e}");
            assert!(e.to_string().len() < 400, "message too long for {field}");
        }
    }
}
