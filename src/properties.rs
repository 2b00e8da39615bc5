//! The custom resource's properties (`Custom::AccountLink`), typed and validated. Every error names the
//! property a cloud admin has to fix.
//!
//! CloudFormation passes every scalar as a string and adds `ServiceToken` (and `ServiceTimeout` when set)
//! itself. An empty string means "not set", so optional template parameters can be passed straight through.
//! Any other key is rejected: a misspelt property (`Region`) must not be silently ignored.

use std::collections::{BTreeMap, BTreeSet};

use link_contract::arn::Arn;
use link_contract::event::LinkProperties;
use link_contract::partition::{is_region_name, Partition};
use serde_json::Value;

/// The properties this resource reads (the template passes exactly these).
pub const PROPERTY_NAMES: &[&str] = &["Regions", "ExternalId", "Roles", "VpcId"];
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

fn err(field: impl Into<String>, message: impl Into<String>) -> PropertyError {
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
    const ROOT: &str = "ResourceProperties";
    let empty = serde_json::Map::new();
    let obj = match value {
        Value::Null => &empty,
        Value::Object(o) => o,
        _ => return Err(err(ROOT, "must be an object of properties")),
    };
    if let Some(unknown) = obj.keys().find(|k| {
        !PROPERTY_NAMES.contains(&k.as_str()) && !CLOUDFORMATION_KEYS.contains(&k.as_str())
    }) {
        return Err(err(
            format!("{ROOT}.{}", crate::text::truncate_chars(unknown, 64)),
            format!(
                "is not a property of Custom::AccountLink (accepted: {})",
                PROPERTY_NAMES.join(", ")
            ),
        ));
    }
    let regions = match parse_regions(obj.get("Regions"), partition)? {
        r if r.is_empty() => vec![function_region.to_string()],
        r => r,
    };
    Ok(LinkProperties {
        regions,
        external_id: parse_external_id(obj.get("ExternalId"))?,
        roles: parse_roles(obj.get("Roles"), partition, account)?,
        vpc_id: parse_vpc_id(obj.get("VpcId"))?,
    })
}

/// A scalar as CloudFormation sends it; `None` when absent, null or empty.
fn scalar(v: Option<&Value>, field: &str) -> Result<Option<String>, PropertyError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(err(field, format!("must be a string, got {}", kind(other)))),
    }
}

fn kind(v: &Value) -> &'static str {
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
    let len = id.chars().count();
    if !(2..=1224).contains(&len) {
        return Err(err(
            F,
            format!("is {len} characters long; IAM accepts 2 to 1224"),
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(*c)))
    {
        return Err(err(
            F,
            format!("contains {c:?}; IAM accepts only letters, digits and _+=,.@:/-"),
        ));
    }
    Ok(Some(id))
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
    let ok = id.strip_prefix("vpc-").is_some_and(|h| {
        (h.len() == 8 || h.len() == 17)
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if !ok {
        return Err(err(
            F,
            format!(
                "'{}' is not a VPC id (vpc- and 8 or 17 hex digits)",
                crate::text::truncate_chars(&id, 40)
            ),
        ));
    }
    Ok(Some(id))
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
