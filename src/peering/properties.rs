//! The resource's properties, validated: every error names the property to fix.

use serde_json::Value;

use super::RESOURCE_TYPE;
use crate::properties::{
    check_ec2_id, err, kind, parse_ipv4_cidr, property_object, scalar, PropertyError,
};
use crate::text::truncate_chars;

/// The properties this resource reads (the template passes exactly these).
pub const PROPERTY_NAMES: &[&str] = &[
    "PeeringConnectionId",
    "ProviderAccountId",
    "ProviderCidr",
    "VpcId",
    "RouteTableIds",
    "DeleteConnectionOnDelete",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeeringProperties {
    pub connection_id: String,
    pub provider_account_id: String,
    /// Canonical form (`10.8.0.0/16`).
    pub provider_cidr: String,
    pub vpc_id: String,
    /// Empty: every route table of `vpc_id`.
    pub route_table_ids: Vec<String>,
    pub delete_connection_on_delete: bool,
}

/// Parses `ResourceProperties`; every error names the property to fix.
pub fn parse(value: &Value) -> Result<PeeringProperties, PropertyError> {
    let empty = serde_json::Map::new();
    let obj = property_object(value, RESOURCE_TYPE, PROPERTY_NAMES)?.unwrap_or(&empty);
    let required = |k: &str| -> Result<String, PropertyError> {
        scalar(obj.get(k), k)?.ok_or_else(|| err(k, "is required"))
    };
    let connection_id = required("PeeringConnectionId")?;
    check_ec2_id(&connection_id, "pcx", "a VPC peering connection id")
        .map_err(|m| err("PeeringConnectionId", m))?;
    let provider_account_id = required("ProviderAccountId")?;
    if !link_contract::arn::is_account_id(&provider_account_id) {
        return Err(err(
            "ProviderAccountId",
            format!(
                "'{}' is not an AWS account id (12 digits)",
                truncate_chars(&provider_account_id, 40)
            ),
        ));
    }
    let provider_cidr =
        parse_ipv4_cidr(&required("ProviderCidr")?).map_err(|m| err("ProviderCidr", m))?;
    let vpc_id = required("VpcId")?;
    check_ec2_id(&vpc_id, "vpc", "a VPC id").map_err(|m| err("VpcId", m))?;
    let route_table_ids = parse_route_table_ids(obj.get("RouteTableIds"))?;
    let delete_connection_on_delete = match scalar(
        obj.get("DeleteConnectionOnDelete"),
        "DeleteConnectionOnDelete",
    )?
    .as_deref()
    {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(err(
                "DeleteConnectionOnDelete",
                format!("must be true or false, got '{}'", truncate_chars(other, 20)),
            ))
        }
    };
    Ok(PeeringProperties {
        connection_id,
        provider_account_id,
        provider_cidr,
        vpc_id,
        route_table_ids,
        delete_connection_on_delete,
    })
}

fn parse_route_table_ids(v: Option<&Value>) -> Result<Vec<String>, PropertyError> {
    const F: &str = "RouteTableIds";
    let items: Vec<Value> = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.to_string()))
            .collect(),
        Some(Value::Array(a)) => a.clone(),
        Some(other) => {
            return Err(err(
                F,
                format!("must be a list of route table ids, got {}", kind(other)),
            ))
        }
    };
    let mut out: Vec<String> = Vec::new();
    for (i, v) in items.iter().enumerate() {
        let field = format!("{F}[{i}]");
        let id = scalar(Some(v), &field)?.ok_or_else(|| err(&field, "is empty"))?;
        check_ec2_id(&id, "rtb", "a route table id").map_err(|m| err(&field, m))?;
        if out.contains(&id) {
            return Err(err(field, format!("{id} is listed more than once")));
        }
        out.push(id);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props() -> Value {
        json!({
            "ServiceToken": "arn:aws:lambda:us-west-2:123456789012:function:peering",
            "PeeringConnectionId": "pcx-0123456789abcdef0",
            "ProviderAccountId": "111111111111",
            "ProviderCidr": "10.8.0.0/16",
            "VpcId": "vpc-12345678",
            "RouteTableIds": "",
            "DeleteConnectionOnDelete": "false"
        })
    }

    #[test]
    fn properties_parse() {
        let p = parse(&props()).unwrap();
        assert_eq!(p.connection_id, "pcx-0123456789abcdef0");
        assert!(p.route_table_ids.is_empty() && !p.delete_connection_on_delete);
        let mut v = props();
        v["RouteTableIds"] = json!(["rtb-12345678", "rtb-87654321"]);
        v["DeleteConnectionOnDelete"] = "true".into();
        let p = parse(&v).unwrap();
        assert_eq!(p.route_table_ids, ["rtb-12345678", "rtb-87654321"]);
        assert!(p.delete_connection_on_delete);
    }

    #[test]
    fn property_errors_name_the_field() {
        for (key, value, field, words) in [
            (
                "PeeringConnectionId",
                json!(""),
                "PeeringConnectionId",
                "required",
            ),
            (
                "PeeringConnectionId",
                json!("pcx-1"),
                "PeeringConnectionId",
                "not a VPC peering",
            ),
            (
                "ProviderAccountId",
                json!("1111"),
                "ProviderAccountId",
                "12 digits",
            ),
            (
                "ProviderCidr",
                json!("10.8.0.0/40"),
                "ProviderCidr",
                "not an IPv4 CIDR",
            ),
            ("VpcId", json!("subnet-12345678"), "VpcId", "not a VPC id"),
            (
                "RouteTableIds",
                json!(["rtb-12345678", "rtb-12345678"]),
                "RouteTableIds[1]",
                "more than once",
            ),
            (
                "RouteTableIds",
                json!({"a": 1}),
                "RouteTableIds",
                "list of route table ids",
            ),
            (
                "DeleteConnectionOnDelete",
                json!("yes"),
                "DeleteConnectionOnDelete",
                "true or false",
            ),
            (
                "Peering",
                json!("x"),
                "ResourceProperties.Peering",
                "not a property",
            ),
        ] {
            let mut v = props();
            v[key] = value;
            let e = parse(&v).unwrap_err();
            assert_eq!(e.field, field, "{key}");
            assert!(e.message.contains(words), "{key}: {e}");
        }
    }
}
