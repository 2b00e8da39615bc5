//! The request CloudFormation sends, parsed with `aws_lambda_events`' types and checked field by field.
//!
//! Parsing is split so that the function can answer whenever it can: first the `ResponseURL` (without
//! it nobody can be told anything), then the fields an answer must echo, then everything else.

use aws_lambda_events::event::cloudformation::{CreateRequest, DeleteRequest, UpdateRequest};
use link_contract::arn::Arn;
use link_contract::partition::Partition;
use serde_json::Value;
use url::Url;

use crate::outbound::{OutboundError, OutboundPolicy};
use crate::text::truncate_chars;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

impl RequestType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "Create",
            Self::Update => "Update",
            Self::Delete => "Delete",
        }
    }
}

/// What an answer needs: where to send it and the fields it must echo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    pub response_url: Url,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    /// Present on Update and Delete.
    pub physical_resource_id: Option<String>,
}

/// The parts of the stack ARN the provider event carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackArn {
    pub partition: String,
    pub region: String,
    pub account_id: String,
    pub stack_name: String,
}

#[derive(Debug, Clone)]
pub struct CfnRequest {
    pub request_type: RequestType,
    pub reply: ReplyTo,
    pub stack: StackArn,
    pub resource_type: String,
    pub properties: Value,
    pub old_properties: Option<Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Nothing can be answered: the event is not a CloudFormation request we may reply to.
    #[error("{0}")]
    Unanswerable(String),
    /// The request is wrong but its ResponseURL is usable: CloudFormation gets FAILED with this message.
    #[error("{message}")]
    Invalid {
        reply: Box<ReplyTo>,
        message: String,
    },
}

/// Where the function runs, from the ARN the Lambda runtime says it was invoked by (on every
/// invocation). Only a stack of the same partition, region and account may use the function, and its
/// answer goes only to CloudFormation's response bucket of that region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub partition: &'static Partition,
    pub region: String,
    pub account_id: String,
}

impl Origin {
    /// `arn:aws:lambda:us-west-2:123456789012:function:name[:qualifier]`
    pub fn from_function_arn(arn: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "the runtime's invoked function ARN '{}' is not a Lambda function ARN, so the request's origin cannot be checked",
                truncate_chars(arn, 160)
            )
        };
        let parsed = Arn::parse(arn).map_err(|_| bad())?;
        match (parsed.service, parsed.resource_type()) {
            ("lambda", Some(("function", _)))
                if !parsed.region.is_empty() && !parsed.account.is_empty() =>
            {
                Ok(Self {
                    partition: parsed.partition,
                    region: parsed.region.to_string(),
                    account_id: parsed.account.to_string(),
                })
            }
            _ => Err(bad()),
        }
    }
}

/// Parses a raw invocation payload (bytes, as the fuzz target and tests give it).
pub fn parse_bytes(
    payload: &[u8],
    policy: &OutboundPolicy,
    origin: &Origin,
) -> Result<CfnRequest, RequestError> {
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| RequestError::Unanswerable(format!("the event is not valid JSON: {e}")))?;
    parse(&value, policy, origin)
}

/// Parses and checks a request sent to the function running at `origin`.
pub fn parse(
    payload: &Value,
    policy: &OutboundPolicy,
    origin: &Origin,
) -> Result<CfnRequest, RequestError> {
    let obj = payload.as_object().ok_or_else(|| {
        RequestError::Unanswerable(
            "the event is not a CloudFormation custom resource request (expected a JSON object)"
                .into(),
        )
    })?;
    let raw_url = obj
        .get("ResponseURL")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            RequestError::Unanswerable(
                "the event has no ResponseURL string, so CloudFormation cannot be answered".into(),
            )
        })?;
    let response_url = policy
        .response_url(raw_url, origin.partition, &origin.region)
        .map_err(|e: OutboundError| RequestError::Unanswerable(e.to_string()))?;

    // Best-effort echo fields, so even a malformed request gets a FAILED that names its problem.
    let echo = |k: &str, max: usize| {
        obj.get(k)
            .and_then(Value::as_str)
            .map(|s| truncate_chars(s, max))
    };
    let reply = ReplyTo {
        response_url,
        stack_id: echo("StackId", 1024).unwrap_or_default(),
        request_id: echo("RequestId", 256).unwrap_or_default(),
        logical_resource_id: echo("LogicalResourceId", 255).unwrap_or_default(),
        physical_resource_id: echo("PhysicalResourceId", 1024),
    };
    let invalid = |message: String| RequestError::Invalid {
        reply: Box::new(reply.clone()),
        message,
    };

    // Deserialize the variant directly (not through the tagged enum, which buffers and loses the path),
    // so a wrong field is named.
    fn typed<T: serde::de::DeserializeOwned>(payload: &Value) -> Result<T, String> {
        serde_path_to_error::deserialize(payload).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path == "." {
                format!("invalid request: {inner}")
            } else {
                format!("invalid request field {path}: {inner}")
            }
        })
    }
    let (
        request_type,
        stack_id,
        request_id,
        logical,
        physical,
        resource_type,
        properties,
        old_properties,
    ) = match obj.get("RequestType").and_then(Value::as_str) {
        Some("Create") => {
            let r: CreateRequest<Value> = typed(payload).map_err(&invalid)?;
            (
                RequestType::Create,
                r.stack_id,
                r.request_id,
                r.logical_resource_id,
                None,
                r.resource_type,
                r.resource_properties,
                None,
            )
        }
        Some("Update") => {
            let r: UpdateRequest<Value, Value> = typed(payload).map_err(&invalid)?;
            (
                RequestType::Update,
                r.stack_id,
                r.request_id,
                r.logical_resource_id,
                Some(r.physical_resource_id),
                r.resource_type,
                r.resource_properties,
                Some(r.old_resource_properties),
            )
        }
        Some("Delete") => {
            let r: DeleteRequest<Value> = typed(payload).map_err(&invalid)?;
            (
                RequestType::Delete,
                r.stack_id,
                r.request_id,
                r.logical_resource_id,
                Some(r.physical_resource_id),
                r.resource_type,
                r.resource_properties,
                None,
            )
        }
        _ => {
            return Err(invalid(
                "invalid request field RequestType: expected Create, Update or Delete".into(),
            ))
        }
    };

    let stack = parse_stack_arn(&stack_id)
        .map_err(|m| invalid(format!("invalid request field StackId: {m}")))?;
    // A request for another account's or region's stack is forged (or misrouted): nothing of it may reach
    // the provider, which would otherwise hear a validly signed event about an account it did not come from.
    if (
        stack.partition.as_str(),
        stack.region.as_str(),
        stack.account_id.as_str(),
    ) != (
        origin.partition.name,
        origin.region.as_str(),
        origin.account_id.as_str(),
    ) {
        return Err(invalid(format!(
            "invalid request field StackId: the stack is in account {} region {} ({}), but this function runs in account {} region {} ({}); it serves only stacks of its own account and region",
            stack.account_id, stack.region, stack.partition, origin.account_id, origin.region, origin.partition.name
        )));
    }
    check(&request_id, "RequestId", 1, 256).map_err(&invalid)?;
    check(&logical, "LogicalResourceId", 1, 255).map_err(&invalid)?;
    if !logical.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid(
            "invalid request field LogicalResourceId: must be alphanumeric".into(),
        ));
    }
    if let Some(p) = &physical {
        check(p, "PhysicalResourceId", 1, 1024).map_err(&invalid)?;
    }
    check(&resource_type, "ResourceType", 1, 60).map_err(&invalid)?;
    if !(resource_type.starts_with("Custom::")
        || resource_type == "AWS::CloudFormation::CustomResource")
    {
        return Err(invalid(format!(
            "invalid request field ResourceType: '{}' is not a custom resource type",
            truncate_chars(&resource_type, 60)
        )));
    }
    Ok(CfnRequest {
        request_type,
        reply,
        stack,
        resource_type,
        properties,
        old_properties,
    })
}

fn check(value: &str, field: &str, min: usize, max: usize) -> Result<(), String> {
    let len = value.chars().count();
    if len < min || len > max {
        return Err(format!(
            "invalid request field {field}: must be {min} to {max} characters, got {len}"
        ));
    }
    Ok(())
}

/// `arn:aws:cloudformation:eu-west-1:123456789012:stack/name/guid`
pub fn parse_stack_arn(arn: &str) -> Result<StackArn, String> {
    let bad = || {
        format!(
            "'{}' is not a CloudFormation stack ARN",
            truncate_chars(arn, 120)
        )
    };
    let parsed = Arn::parse(arn).map_err(|_| bad())?;
    let (Some((name, _)), false, false) = (
        parsed.stack(),
        parsed.region.is_empty(),
        parsed.account.is_empty(),
    ) else {
        return Err(bad());
    };
    Ok(StackArn {
        partition: parsed.partition.name.to_string(),
        region: parsed.region.to_string(),
        account_id: parsed.account.to_string(),
        stack_name: name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    fn policy() -> OutboundPolicy {
        OutboundPolicy::new(false)
    }

    pub(crate) fn origin() -> Origin {
        Origin::from_function_arn("arn:aws:lambda:us-west-2:123456789012:function:account-link")
            .unwrap()
    }

    fn parse(v: &Value, p: &OutboundPolicy) -> Result<CfnRequest, RequestError> {
        super::parse(v, p, &origin())
    }

    fn parse_bytes(b: &[u8], p: &OutboundPolicy) -> Result<CfnRequest, RequestError> {
        super::parse_bytes(b, p, &origin())
    }

    #[test]
    fn sample_events_parse() {
        let c = parse(&fixture("create.json"), &policy()).unwrap();
        assert_eq!(c.request_type, RequestType::Create);
        assert_eq!(c.stack.account_id, "123456789012");
        assert_eq!(c.stack.partition, "aws");
        assert!(c.reply.physical_resource_id.is_none());
        let u = parse(&fixture("update.json"), &policy()).unwrap();
        assert_eq!(u.request_type, RequestType::Update);
        assert!(u.old_properties.is_some());
        let d = parse(&fixture("delete.json"), &policy()).unwrap();
        assert_eq!(d.request_type, RequestType::Delete);
        assert!(d.reply.physical_resource_id.is_some());
    }

    #[test]
    fn unanswerable_events() {
        for (payload, words) in [
            (&b"not json"[..], "not valid JSON"),
            (b"[1,2]", "JSON object"),
            (b"{\"RequestType\":\"Create\"}", "no ResponseURL"),
            (
                b"{\"ResponseURL\":\"https://example.com/x\"}",
                "response bucket",
            ),
        ] {
            match parse_bytes(payload, &policy()) {
                Err(RequestError::Unanswerable(m)) => assert!(m.contains(words), "{m}"),
                other => panic!("expected Unanswerable, got {other:?}"),
            }
        }
    }

    #[test]
    fn invalid_fields_are_named_and_answerable() {
        let mut v = fixture("create.json");
        let cases: [(&str, Value, &str); 6] = [
            ("RequestType", "Destroy".into(), "RequestType"),
            ("StackId", "not-an-arn".into(), "StackId"),
            ("RequestId", 5.into(), "RequestId"),
            ("LogicalResourceId", "has space".into(), "LogicalResourceId"),
            ("ResourceType", "AWS::S3::Bucket".into(), "ResourceType"),
            ("LogicalResourceId", Value::Null, "LogicalResourceId"),
        ];
        for (field, value, named) in cases {
            let saved = v[field].clone();
            v[field] = value;
            match parse(&v, &policy()) {
                Err(RequestError::Invalid { message, reply, .. }) => {
                    assert!(message.contains(named), "{field}: {message}");
                    assert!(reply.response_url.as_str().starts_with("https://"));
                }
                other => panic!("{field}: expected Invalid, got {other:?}"),
            }
            v[field] = saved;
        }
    }

    #[test]
    fn only_the_functions_own_account_and_region_are_served() {
        let mut v = fixture("create.json");
        for stack in [
            "arn:aws:cloudformation:us-west-2:210987654321:stack/account-link/1",
            "arn:aws:cloudformation:eu-west-1:123456789012:stack/account-link/1",
            "arn:aws-us-gov:cloudformation:us-gov-west-1:123456789012:stack/account-link/1",
        ] {
            v["StackId"] = stack.into();
            match parse(&v, &policy()) {
                Err(RequestError::Invalid { message, .. }) => {
                    assert!(
                        message.contains("serves only stacks of its own account and region"),
                        "{message}"
                    )
                }
                other => panic!("{stack}: expected Invalid, got {other:?}"),
            }
        }
        for (arn, ok) in [
            (
                "arn:aws:lambda:us-west-2:123456789012:function:account-link:live",
                true,
            ),
            ("arn:aws:lambda:us-west-2::function:f", false),
            ("arn:aws:s3:::bucket", false),
            ("", false),
        ] {
            assert_eq!(Origin::from_function_arn(arn).is_ok(), ok, "{arn}");
        }
    }

    #[test]
    fn stack_arn_parts() {
        let s = parse_stack_arn(
            "arn:aws-us-gov:cloudformation:us-gov-west-1:123456789012:stack/my-stack/1-2-3",
        )
        .unwrap();
        assert_eq!(
            (
                s.partition.as_str(),
                s.region.as_str(),
                s.stack_name.as_str()
            ),
            ("aws-us-gov", "us-gov-west-1", "my-stack")
        );
        assert!(parse_stack_arn("arn:aws:cloudformation:us-east-1:123:stack/a/b").is_err());
        assert!(parse_stack_arn("arn:aws:s3:us-east-1:123456789012:stack/a/b").is_err());
    }
}
