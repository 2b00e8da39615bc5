use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;
use serde::Serialize;
use url::Url;

use super::ReplyTo;
use crate::deadline::Deadline;
use crate::delivery::{self, DeliveryError, RetryPolicy};
use crate::outbound::Redacted;
use crate::text::truncate_chars;

pub use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceResponseStatus as Status;

/// CloudFormation rejects larger response bodies.
pub const MAX_RESPONSE_BYTES: usize = 4096;
/// Set in Data when something had to be left out to fit the limit.
const TRUNCATED_KEY: &str = "Truncated";

/// What we tell CloudFormation, before it is fitted into a response body.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: Status,
    pub reason: String,
    pub physical_resource_id: String,
    /// Attributes for `!GetAtt`. Always kept.
    pub data: BTreeMap<String, String>,
    /// Attributes that are dropped, last first, when the body would not fit.
    pub optional_data: Vec<(String, String)>,
}

impl Answer {
    pub fn success(physical_resource_id: String, reason: impl Into<String>) -> Self {
        Self::new(Status::Success, physical_resource_id, reason)
    }

    pub fn failed(physical_resource_id: String, reason: impl Into<String>) -> Self {
        Self::new(Status::Failed, physical_resource_id, reason)
    }

    fn new(status: Status, physical_resource_id: String, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            physical_resource_id,
            data: BTreeMap::new(),
            optional_data: Vec::new(),
        }
    }

    pub fn is_success(&self) -> bool {
        matches!(self.status, Status::Success)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Body<'a> {
    status: &'a Status,
    reason: &'a str,
    physical_resource_id: &'a str,
    stack_id: &'a str,
    request_id: &'a str,
    logical_resource_id: &'a str,
    no_echo: bool,
    data: &'a BTreeMap<String, String>,
}

/// The response body, at most [`MAX_RESPONSE_BYTES`]: optional attributes are dropped first (and
/// `Truncated` set), then the reason is shortened. The echoed ids are bounded by request parsing.
pub fn render(reply: &ReplyTo, answer: &Answer) -> Vec<u8> {
    let mut data = answer.data.clone();
    data.extend(answer.optional_data.iter().cloned());
    let mut optional = answer.optional_data.clone();
    let mut reason = answer.reason.clone();
    // Only a malformed request (answered FAILED) can bring ids long enough to matter; they are cut last.
    let mut ids = [
        answer.physical_resource_id.clone(),
        reply.stack_id.clone(),
        reply.request_id.clone(),
        reply.logical_resource_id.clone(),
    ];
    loop {
        let [physical_resource_id, stack_id, request_id, logical_resource_id] = &ids;
        let body = Body {
            status: &answer.status,
            reason: &reason,
            physical_resource_id,
            stack_id,
            request_id,
            logical_resource_id,
            no_echo: false,
            data: &data,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        if bytes.len() <= MAX_RESPONSE_BYTES {
            return bytes;
        }
        let over = bytes.len() - MAX_RESPONSE_BYTES;
        if let Some((key, _)) = optional.pop() {
            data.remove(&key);
            data.insert(TRUNCATED_KEY.into(), "true".into());
        } else if !reason.is_empty() {
            let budget = json_string_len(&reason).saturating_sub(over);
            reason = if budget <= '…'.len_utf8() {
                String::new()
            } else {
                fit_json_string(&reason, budget)
            };
        } else if let Some(longest) = ids.iter_mut().max_by_key(|s| s.len()) {
            *longest = truncate_chars(longest, longest.chars().count() / 2);
        }
    }
}

/// Bytes `s` takes inside a JSON string (escapes included).
fn json_string_len(s: &str) -> usize {
    s.chars().map(json_char_len).sum()
}

fn json_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// The longest prefix of `s` (plus an ellipsis) whose JSON-escaped form fits in `budget` bytes.
fn fit_json_string(s: &str, budget: usize) -> String {
    let budget = budget.saturating_sub('…'.len_utf8());
    let mut used = 0;
    let mut out = String::new();
    for c in s.chars() {
        used += json_char_len(c);
        if used > budget {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("the ResponseURL answered HTTP {status}: {excerpt}")]
    Rejected { status: u16, excerpt: String },
    #[error("the ResponseURL could not be reached: {0}")]
    Unreachable(#[from] DeliveryError),
}

const PUT_POLICY: RetryPolicy = RetryPolicy {
    max_attempts: 6,
    per_attempt: Duration::from_secs(5),
    base_delay: Duration::from_millis(200),
    max_delay: Duration::from_secs(2),
    retry_status: |s| s.is_server_error() || s.as_u16() == 429 || s.as_u16() == 408,
};

/// PUTs the answer to the pre-signed URL: empty Content-Type (the URL is signed without one) and an
/// exact Content-Length. Retries network errors and 5xx until `until`.
pub async fn put_answer(
    http: &reqwest::Client,
    url: &Url,
    body: Vec<u8>,
    until: Deadline,
) -> Result<(), AnswerError> {
    // Even with the deadline (nearly) gone, one short attempt beats certain silence.
    let until = until.max(Deadline::after(Duration::from_secs(1)));
    let body = Bytes::from(body);
    let len = body.len();
    let make = || {
        http.put(url.clone())
            .header(CONTENT_TYPE, "")
            .body(body.clone())
    };
    let answered = delivery::send(make, until, &PUT_POLICY).await?;
    if !answered.status.is_success() {
        return Err(AnswerError::Rejected {
            status: answered.status.as_u16(),
            excerpt: answered.excerpt,
        });
    }
    tracing::info!(url = %Redacted(url), bytes = len, attempts = answered.attempts, "CloudFormation answered");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply() -> ReplyTo {
        ReplyTo {
            response_url: Url::parse("https://b.s3.amazonaws.com/k").unwrap(),
            stack_id: "arn:aws:cloudformation:us-west-2:123456789012:stack/s/guid".into(),
            request_id: "req".into(),
            logical_resource_id: "Link".into(),
            physical_resource_id: None,
        }
    }

    #[test]
    fn body_has_the_documented_fields() {
        let mut a = Answer::success("link-1".into(), "ok");
        a.data.insert("VpcCount".into(), "2".into());
        let v: serde_json::Value = serde_json::from_slice(&render(&reply(), &a)).unwrap();
        assert_eq!(v["Status"], "SUCCESS");
        assert_eq!(v["Reason"], "ok");
        assert_eq!(v["PhysicalResourceId"], "link-1");
        assert_eq!(v["StackId"], reply().stack_id);
        assert_eq!(v["RequestId"], "req");
        assert_eq!(v["LogicalResourceId"], "Link");
        assert_eq!(v["NoEcho"], false);
        assert_eq!(v["Data"]["VpcCount"], "2");
        let f: serde_json::Value =
            serde_json::from_slice(&render(&reply(), &Answer::failed("x".into(), "bad"))).unwrap();
        assert_eq!(f["Status"], "FAILED");
    }

    #[test]
    fn oversized_answers_are_trimmed_to_the_limit() {
        let mut a = Answer::failed("link-1".into(), "\u{1}é\"".repeat(5000));
        a.data.insert("LinkId".into(), "link-1".into());
        a.optional_data.push((
            "SubnetIds".into(),
            "subnet-0123456789abcdef0,".repeat(10_000),
        ));
        let bytes = render(&reply(), &a);
        assert!(bytes.len() <= MAX_RESPONSE_BYTES, "{}", bytes.len());
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["Data"]["LinkId"], "link-1");
        assert_eq!(v["Data"]["Truncated"], "true");
        assert!(v["Data"].get("SubnetIds").is_none());
        assert!(
            v["Reason"].as_str().unwrap().len() > 1000,
            "reason kept as much as fits"
        );
    }
}
