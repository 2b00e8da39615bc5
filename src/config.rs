//! The function's environment, read once at start-up. A bad value does not stop the process: the handler
//! answers every Create and Update with the problem (a crash at init would leave CloudFormation waiting).

use url::Url;

use crate::outbound::{OutboundPolicy, ALLOW_LOOPBACK_ENV};
use link_contract::arn::Arn;
use link_contract::signing::SigningSecret;

pub const CALLBACK_URL_ENV: &str = "PROVIDER_CALLBACK_URL";
pub const SIGNING_SECRET_ENV: &str = "PROVIDER_SIGNING_SECRET";
pub const SNS_TOPIC_ENV: &str = "PROVIDER_SNS_TOPIC_ARN";
pub const MAX_BODY_ENV: &str = "PROVIDER_MAX_BODY_BYTES";

/// The largest callback body by default: what an ALB in front of a Lambda target accepts.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// A smaller limit would split even a small account into many deliveries.
const MIN_MAX_BODY_BYTES: usize = 16 * 1024;

/// Every variable the function reads besides the AWS SDK's standard ones (`AWS_REGION`,
/// `AWS_ENDPOINT_URL*`, credentials) and the runtime's.
pub const ENV_VARS: &[&str] = &[
    CALLBACK_URL_ENV,
    SIGNING_SECRET_ENV,
    SNS_TOPIC_ENV,
    MAX_BODY_ENV,
    ALLOW_LOOPBACK_ENV,
];

#[derive(Debug, Clone, Default)]
pub struct Config {
    pub outbound: OutboundPolicy,
    pub callback: Option<Callback>,
    pub sns_topic_arn: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Callback {
    pub url: Url,
    pub secrets: Vec<SigningSecret>,
    /// Larger events are delivered in parts.
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {var} {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

/// The AWS SDK configuration from the standard sources (`AWS_REGION`, `AWS_ENDPOINT_URL*`, the execution
/// role's credentials), with bounds that suit a function racing a deadline: a hung connection is
/// abandoned and retried instead of eating the whole budget.
pub async fn load_aws_config() -> aws_config::SdkConfig {
    use std::time::Duration;
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(10))
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(aws_https_client())
        .timeout_config(timeouts)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(4))
        .load()
        .await
}

/// The AWS SDK's HTTPS client: rustls with ring, like every other connection the function makes.
pub fn aws_https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let allow_loopback = match get(ALLOW_LOOPBACK_ENV).as_deref() {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(_) => {
                return Err(ConfigError {
                    var: ALLOW_LOOPBACK_ENV,
                    problem: "must be true or false".into(),
                })
            }
        };
        let outbound = OutboundPolicy::new(allow_loopback);
        let max_body_bytes = match get(MAX_BODY_ENV) {
            None => DEFAULT_MAX_BODY_BYTES,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= MIN_MAX_BODY_BYTES)
                .ok_or_else(|| ConfigError {
                    var: MAX_BODY_ENV,
                    problem: format!("must be a number of bytes, at least {MIN_MAX_BODY_BYTES}"),
                })?,
        };
        let callback = match (get(CALLBACK_URL_ENV), get(SIGNING_SECRET_ENV)) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError {
                    var: SIGNING_SECRET_ENV,
                    problem: format!(
                        "must be set when {CALLBACK_URL_ENV} is (events are always signed)"
                    ),
                })
            }
            (None, Some(_)) => {
                return Err(ConfigError {
                    var: CALLBACK_URL_ENV,
                    problem: format!("must be set when {SIGNING_SECRET_ENV} is"),
                })
            }
            (Some(url), Some(secret)) => Some(Callback {
                url: outbound
                    .provider_url(CALLBACK_URL_ENV, &url)
                    .map_err(|e| ConfigError {
                        var: CALLBACK_URL_ENV,
                        problem: format!("is invalid: {e}"),
                    })?,
                secrets: SigningSecret::parse_list(&secret).map_err(|e| ConfigError {
                    var: SIGNING_SECRET_ENV,
                    problem: e.to_string(),
                })?,
                max_body_bytes,
            }),
        };
        let sns_topic_arn = get(SNS_TOPIC_ENV);
        if let Some(arn) = &sns_topic_arn {
            let topic = Arn::parse(arn).ok();
            if !topic.is_some_and(|t| {
                t.service == "sns" && !t.region.is_empty() && !t.account.is_empty()
            }) {
                return Err(ConfigError {
                    var: SNS_TOPIC_ENV,
                    problem: format!("'{arn}' is not an SNS topic ARN"),
                });
            }
        }
        Ok(Self {
            outbound,
            callback,
            sns_topic_arn,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn empty_environment_is_valid() {
        let c = cfg(&[]).unwrap();
        assert!(c.callback.is_none() && c.sns_topic_arn.is_none() && !c.outbound.allows_loopback());
    }

    #[test]
    fn errors_name_the_variable_and_never_the_secret() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        for (vars, var) in [
            (
                vec![(CALLBACK_URL_ENV, "https://p.example/h")],
                SIGNING_SECRET_ENV,
            ),
            (vec![(SIGNING_SECRET_ENV, secret)], CALLBACK_URL_ENV),
            (
                vec![
                    (CALLBACK_URL_ENV, "http://p.example/h"),
                    (SIGNING_SECRET_ENV, secret),
                ],
                CALLBACK_URL_ENV,
            ),
            (
                vec![
                    (CALLBACK_URL_ENV, "https://p.example/h"),
                    (SIGNING_SECRET_ENV, "whsec_AAAA"),
                ],
                SIGNING_SECRET_ENV,
            ),
            (vec![(SNS_TOPIC_ENV, "topic")], SNS_TOPIC_ENV),
            (vec![(ALLOW_LOOPBACK_ENV, "yes")], ALLOW_LOOPBACK_ENV),
            (vec![(MAX_BODY_ENV, "1000")], MAX_BODY_ENV),
        ] {
            let e = cfg(&vars).unwrap_err();
            assert_eq!(e.var, var);
            assert!(!e.to_string().contains("MfKQ"), "{e}");
        }
        let ok = cfg(&[
            (CALLBACK_URL_ENV, "https://p.example/h"),
            (SIGNING_SECRET_ENV, secret),
        ])
        .unwrap();
        assert_eq!(ok.callback.unwrap().secrets.len(), 1);
    }
}
