//! One way to send an HTTP request with retries inside a deadline, shared by the CloudFormation answer
//! and the provider callback: per-attempt timeout, exponential backoff with full jitter, `Retry-After`.
//! Errors never carry the URL (a pre-signed URL's query string is a credential).

use std::time::Duration;

use reqwest::header::RETRY_AFTER;
use reqwest::{RequestBuilder, Response, StatusCode};

use crate::deadline::Deadline;

/// Below this much time left, another attempt could not finish: give up instead.
const MIN_ATTEMPT: Duration = Duration::from_millis(100);
const EXCERPT_BYTES: usize = 300;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub per_attempt: Duration,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Statuses worth another attempt (network errors always are).
    pub retry_status: fn(StatusCode) -> bool,
}

/// The answer that ended the attempts: a success, or a status not worth retrying.
#[derive(Debug, Clone)]
pub struct Answered {
    pub status: StatusCode,
    pub excerpt: String,
    pub attempts: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("gave up after {attempts} attempt(s); last: {last}")]
    Exhausted { attempts: u32, last: String },
    #[error("ran out of time after {attempts} attempt(s); last: {last}")]
    OutOfTime { attempts: u32, last: String },
}

impl DeliveryError {
    pub fn attempts(&self) -> u32 {
        match self {
            Self::Exhausted { attempts, .. } | Self::OutOfTime { attempts, .. } => *attempts,
        }
    }
}

/// Sends the request built by `make` until it gets a final answer, the attempts run out or the deadline
/// would pass. `make` is called once per attempt.
pub async fn send(
    make: impl Fn() -> RequestBuilder,
    until: Deadline,
    policy: &RetryPolicy,
) -> Result<Answered, DeliveryError> {
    let mut last = String::from("no attempt was made: no time was left");
    let mut attempts = 0;
    while attempts < policy.max_attempts {
        let left = until.remaining();
        if left < MIN_ATTEMPT {
            return Err(DeliveryError::OutOfTime { attempts, last });
        }
        attempts += 1;
        let timeout = policy.per_attempt.min(left);
        let mut retry_after = None;
        match make().timeout(timeout).send().await {
            Ok(resp) => {
                let status = resp.status();
                retry_after = parse_retry_after(&resp);
                let excerpt = excerpt(resp, until).await;
                if !(policy.retry_status)(status) {
                    return Ok(Answered {
                        status,
                        excerpt,
                        attempts,
                    });
                }
                last = describe_status(status, &excerpt);
            }
            Err(e) => last = describe_error(&e, timeout),
        }
        if attempts == policy.max_attempts {
            break;
        }
        let delay = retry_after.unwrap_or_else(|| full_jitter(attempts, policy));
        if delay + MIN_ATTEMPT > until.remaining() {
            return Err(DeliveryError::OutOfTime { attempts, last });
        }
        tracing::info!(attempt = attempts, delay_ms = delay.as_millis() as u64, %last, "retrying");
        tokio::time::sleep(delay).await;
    }
    Err(DeliveryError::Exhausted { attempts, last })
}

pub fn describe_status(status: StatusCode, excerpt: &str) -> String {
    if excerpt.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {excerpt}")
    }
}

/// "Full jitter" backoff: a random delay between zero and the exponential ceiling.
fn full_jitter(attempt: u32, policy: &RetryPolicy) -> Duration {
    let ceiling = policy
        .base_delay
        .saturating_mul(1u32 << attempt.min(16))
        .min(policy.max_delay);
    ceiling.mul_f64(fastrand::f64())
}

fn parse_retry_after(resp: &Response) -> Option<Duration> {
    let value = resp.headers().get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when =
        aws_smithy_types::DateTime::from_str(value, aws_smithy_types::date_time::Format::HttpDate)
            .ok()?;
    let now = aws_smithy_types::DateTime::from(std::time::SystemTime::now());
    let secs = when.as_secs_f64() - now.as_secs_f64();
    Some(Duration::from_secs_f64(secs.max(0.0)))
}

/// The start of a response body, printable and short: enough to say what the other side answered.
async fn excerpt(mut resp: Response, until: Deadline) -> String {
    let mut buf = Vec::new();
    let read = async {
        while buf.len() < EXCERPT_BYTES {
            match resp.chunk().await {
                Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(until.remaining().min(Duration::from_secs(2)), read).await;
    buf.truncate(EXCERPT_BYTES);
    let text = String::from_utf8_lossy(&buf);
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let cleaned = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::text::truncate_chars(&cleaned, 200)
}

/// A transport error in words, without the URL.
pub fn describe_error(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {:.1}s", timeout.as_secs_f64());
    }
    let mut msg = String::from(if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    });
    let mut source = std::error::Error::source(e);
    let mut seen = Vec::new();
    while let Some(s) = source {
        let text = s.to_string();
        if !text.contains("://") && !seen.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
            seen.push(text);
        }
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            per_attempt: Duration::from_secs(1),
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            retry_status: |s| s.is_server_error(),
        }
    }

    #[test]
    fn jitter_stays_under_the_exponential_ceiling() {
        let p = policy();
        for attempt in 1..10 {
            let ceiling = (p.base_delay * (1 << attempt)).min(p.max_delay);
            for _ in 0..50 {
                assert!(full_jitter(attempt, &p) <= ceiling);
            }
        }
    }
}
