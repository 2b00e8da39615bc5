//! The function's environment, read once at start-up. A bad value does not stop the process: the handler
//! answers every Create and Update with the problem (a crash at init would leave CloudFormation waiting).

use url::Url;

use crate::outbound::{OutboundPolicy, ALLOW_LOOPBACK_ENV};
use link_contract::arn::Arn;
use link_contract::signing::SigningSecret;

pub const CALLBACK_URL_ENV: &str = "PROVIDER_CALLBACK_URL";
/// The signing secret itself: for local runs only (a stack passes [`SIGNING_SECRET_ARN_ENV`], so the
/// secret is not readable by whoever may read the function's configuration).
pub const SIGNING_SECRET_ENV: &str = "PROVIDER_SIGNING_SECRET";
/// The Secrets Manager secret holding the signing secret(s) (`whsec_...`, space-separated while rotating).
pub const SIGNING_SECRET_ARN_ENV: &str = "PROVIDER_SIGNING_SECRET_ARN";
pub const SNS_TOPIC_ENV: &str = "PROVIDER_SNS_TOPIC_ARN";
pub const MAX_BODY_ENV: &str = "PROVIDER_MAX_BODY_BYTES";
/// `hmac-and-proof` (default), `proof-only` or `hmac-only`: see [`AuthMode`].
pub const AUTH_MODE_ENV: &str = "PROVIDER_AUTH_MODE";
/// The audience bound into every proof; defaults to the origin of the callback URL.
pub const AUDIENCE_ENV: &str = "PROVIDER_AUDIENCE";

/// The largest callback body by default: what an ALB in front of a Lambda target accepts.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// A smaller limit would split even a small account into many deliveries.
const MIN_MAX_BODY_BYTES: usize = 16 * 1024;
const MAX_AUDIENCE_LEN: usize = 256;

/// Variables for local runs only: a stack must never set them (tests/template_contract.rs checks).
pub const LOCAL_ONLY_ENV_VARS: &[&str] = &[SIGNING_SECRET_ENV, ALLOW_LOOPBACK_ENV];

/// How each delivery shows the provider where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// A Standard Webhooks signature (shared secret) and a proof of the account (default).
    #[default]
    HmacAndProof,
    /// Only the proof of the account: no secret anywhere.
    ProofOnly,
    /// Only the signature, for receivers that cannot reach STS.
    HmacOnly,
}

impl AuthMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hmac-and-proof" => Some(Self::HmacAndProof),
            "proof-only" => Some(Self::ProofOnly),
            "hmac-only" => Some(Self::HmacOnly),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::HmacAndProof => "hmac-and-proof",
            Self::ProofOnly => "proof-only",
            Self::HmacOnly => "hmac-only",
        }
    }

    pub fn signs(self) -> bool {
        self != Self::ProofOnly
    }

    pub fn proves(self) -> bool {
        self != Self::HmacOnly
    }
}

#[derive(Debug, Clone, Default)]
pub struct Config {
    pub outbound: OutboundPolicy,
    pub auth_mode: AuthMode,
    /// Set when events carry a proof and there is a channel to carry it.
    pub audience: Option<String>,
    pub callback: Option<Callback>,
    pub sns_topic_arn: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Callback {
    pub url: Url,
    /// Where the HMAC secret comes from; `None` in `proof-only` mode.
    pub secret: Option<SecretSource>,
    /// Larger events are delivered in parts.
    pub max_body_bytes: usize,
}

/// Where the Standard Webhooks secret(s) come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A Secrets Manager secret, read once per process (the stack's).
    SecretsManager { arn: String, region: String },
    /// The value itself, from [`SIGNING_SECRET_ENV`] (local runs).
    Inline(Vec<SigningSecret>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {var} {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

fn config_err(var: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        problem: problem.into(),
    }
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
            Some(_) => return Err(config_err(ALLOW_LOOPBACK_ENV, "must be true or false")),
        };
        let outbound = OutboundPolicy::new(allow_loopback);
        let auth_mode = match get(AUTH_MODE_ENV) {
            None => AuthMode::default(),
            Some(v) => AuthMode::parse(&v).ok_or_else(|| {
                config_err(
                    AUTH_MODE_ENV,
                    "must be hmac-and-proof (the default), proof-only or hmac-only",
                )
            })?,
        };
        let max_body_bytes = match get(MAX_BODY_ENV) {
            None => DEFAULT_MAX_BODY_BYTES,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= MIN_MAX_BODY_BYTES)
                .ok_or_else(|| {
                    config_err(
                        MAX_BODY_ENV,
                        format!("must be a number of bytes, at least {MIN_MAX_BODY_BYTES}"),
                    )
                })?,
        };
        let secret = secret_source(get(SIGNING_SECRET_ENV), get(SIGNING_SECRET_ARN_ENV))?;
        let callback = match (get(CALLBACK_URL_ENV), secret) {
            (None, None) => None,
            (None, Some((var, _))) => {
                return Err(config_err(
                    var,
                    format!("is set but {CALLBACK_URL_ENV} is not (the secret signs callbacks)"),
                ))
            }
            (Some(url), secret) => {
                let secret = match (auth_mode.signs(), secret) {
                    (true, None) => {
                        return Err(config_err(
                            SIGNING_SECRET_ARN_ENV,
                            format!(
                                "must be set when {CALLBACK_URL_ENV} is and {AUTH_MODE_ENV} is {} (callbacks are signed); or use {AUTH_MODE_ENV}=proof-only",
                                auth_mode.as_str()
                            ),
                        ))
                    }
                    (false, Some((var, _))) => {
                        return Err(config_err(
                            var,
                            format!("must be empty when {AUTH_MODE_ENV} is proof-only (no secret anywhere)"),
                        ))
                    }
                    (_, s) => s.map(|(_, s)| s),
                };
                Some(Callback {
                    url: outbound
                        .provider_url(CALLBACK_URL_ENV, &url)
                        .map_err(|e| config_err(CALLBACK_URL_ENV, format!("is invalid: {e}")))?,
                    secret,
                    max_body_bytes,
                })
            }
        };
        let sns_topic_arn = get(SNS_TOPIC_ENV);
        if let Some(arn) = &sns_topic_arn {
            if topic_region(arn).is_none() {
                return Err(config_err(
                    SNS_TOPIC_ENV,
                    format!("'{arn}' is not an SNS topic ARN"),
                ));
            }
        }
        let has_channel = callback.is_some() || sns_topic_arn.is_some();
        let audience = match (auth_mode.proves() && has_channel, get(AUDIENCE_ENV)) {
            (false, _) => None,
            (true, Some(a)) => Some(check_audience(a)?),
            (true, None) => match &callback {
                Some(c) => Some(c.url.origin().ascii_serialization()),
                None => {
                    return Err(config_err(
                        AUDIENCE_ENV,
                        format!(
                            "must be set when events carry a proof of the account ({AUTH_MODE_ENV}={}) and there is no {CALLBACK_URL_ENV} to take it from",
                            auth_mode.as_str()
                        ),
                    ))
                }
            },
        };
        Ok(Self {
            outbound,
            auth_mode,
            audience,
            callback,
            sns_topic_arn,
        })
    }
}

/// The region of an SNS topic ARN (a client must be built for it: SNS publishes only to topics of the
/// client's region).
pub fn topic_region(arn: &str) -> Option<String> {
    Arn::parse(arn)
        .ok()
        .filter(|t| t.service == "sns" && !t.region.is_empty() && !t.account.is_empty())
        .map(|t| t.region.to_string())
}

fn secret_source(
    inline: Option<String>,
    arn: Option<String>,
) -> Result<Option<(&'static str, SecretSource)>, ConfigError> {
    match (inline, arn) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(config_err(
            SIGNING_SECRET_ENV,
            format!("and {SIGNING_SECRET_ARN_ENV} are both set; set only {SIGNING_SECRET_ARN_ENV} ({SIGNING_SECRET_ENV} is for local runs)"),
        )),
        (Some(value), None) => {
            let secrets = SigningSecret::parse_list(&value)
                .map_err(|e| config_err(SIGNING_SECRET_ENV, e.to_string()))?;
            Ok(Some((SIGNING_SECRET_ENV, SecretSource::Inline(secrets))))
        }
        (None, Some(arn)) => {
            let region = Arn::parse(&arn)
                .ok()
                .filter(|a| {
                    a.service == "secretsmanager"
                        && !a.region.is_empty()
                        && !a.account.is_empty()
                        && a.resource.starts_with("secret:")
                })
                .map(|a| a.region.to_string())
                .ok_or_else(|| {
                    config_err(
                        SIGNING_SECRET_ARN_ENV,
                        format!(
                            "'{}' is not a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>)",
                            crate::text::truncate_chars(&arn, 160)
                        ),
                    )
                })?;
            Ok(Some((
                SIGNING_SECRET_ARN_ENV,
                SecretSource::SecretsManager { arn, region },
            )))
        }
    }
}

/// An audience travels as a signed header: printable ASCII, bounded.
fn check_audience(a: String) -> Result<String, ConfigError> {
    if a.len() > MAX_AUDIENCE_LEN || !a.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(config_err(
            AUDIENCE_ENV,
            format!("must be at most {MAX_AUDIENCE_LEN} printable ASCII characters without spaces (e.g. https://hooks.provider.example)"),
        ));
    }
    Ok(a)
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

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SECRET_ARN: &str =
        "arn:aws:secretsmanager:us-west-2:123456789012:secret:account-link-AbCdEf";

    #[test]
    fn empty_environment_is_valid() {
        let c = cfg(&[]).unwrap();
        assert!(c.callback.is_none() && c.sns_topic_arn.is_none() && !c.outbound.allows_loopback());
        assert_eq!((c.auth_mode, c.audience), (AuthMode::HmacAndProof, None));
    }

    #[test]
    fn errors_name_the_variable_and_never_the_secret() {
        let url = (CALLBACK_URL_ENV, "https://p.example/h");
        for (vars, var) in [
            (vec![url], SIGNING_SECRET_ARN_ENV),
            (vec![(SIGNING_SECRET_ENV, SECRET)], SIGNING_SECRET_ENV),
            (
                vec![(SIGNING_SECRET_ARN_ENV, SECRET_ARN)],
                SIGNING_SECRET_ARN_ENV,
            ),
            (
                vec![
                    (CALLBACK_URL_ENV, "http://p.example/h"),
                    (SIGNING_SECRET_ENV, SECRET),
                ],
                CALLBACK_URL_ENV,
            ),
            (
                vec![url, (SIGNING_SECRET_ENV, "whsec_AAAA")],
                SIGNING_SECRET_ENV,
            ),
            (
                vec![
                    url,
                    (SIGNING_SECRET_ENV, SECRET),
                    (SIGNING_SECRET_ARN_ENV, SECRET_ARN),
                ],
                SIGNING_SECRET_ENV,
            ),
            (
                vec![
                    url,
                    (
                        SIGNING_SECRET_ARN_ENV,
                        "arn:aws:sns:us-west-2:123456789012:t",
                    ),
                ],
                SIGNING_SECRET_ARN_ENV,
            ),
            (
                vec![
                    url,
                    (SIGNING_SECRET_ENV, SECRET),
                    (AUTH_MODE_ENV, "proof-only"),
                ],
                SIGNING_SECRET_ENV,
            ),
            (vec![url, (AUTH_MODE_ENV, "hmac")], AUTH_MODE_ENV),
            (
                vec![url, (AUTH_MODE_ENV, "hmac-only")],
                SIGNING_SECRET_ARN_ENV,
            ),
            (
                vec![
                    url,
                    (AUTH_MODE_ENV, "proof-only"),
                    (AUDIENCE_ENV, "has space"),
                ],
                AUDIENCE_ENV,
            ),
            (vec![(SNS_TOPIC_ENV, "topic")], SNS_TOPIC_ENV),
            (
                vec![(SNS_TOPIC_ENV, "arn:aws:sns:eu-west-1:123456789012:links")],
                AUDIENCE_ENV,
            ),
            (vec![(ALLOW_LOOPBACK_ENV, "yes")], ALLOW_LOOPBACK_ENV),
            (vec![(MAX_BODY_ENV, "1000")], MAX_BODY_ENV),
        ] {
            let e = cfg(&vars).unwrap_err();
            assert_eq!(e.var, var, "{vars:?}: {e}");
            assert!(!e.to_string().contains("MfKQ"), "{e}");
        }
    }

    #[test]
    fn modes_secrets_and_audience() {
        let url = (CALLBACK_URL_ENV, "https://hooks.p.example:8443/aws/h?x=1");
        let c = cfg(&[url, (SIGNING_SECRET_ARN_ENV, SECRET_ARN)]).unwrap();
        assert_eq!(c.auth_mode, AuthMode::HmacAndProof);
        assert_eq!(c.audience.as_deref(), Some("https://hooks.p.example:8443"));
        assert_eq!(
            c.callback.unwrap().secret,
            Some(SecretSource::SecretsManager {
                arn: SECRET_ARN.into(),
                region: "us-west-2".into()
            })
        );
        let local = cfg(&[url, (SIGNING_SECRET_ENV, SECRET)]).unwrap();
        assert!(
            matches!(local.callback.unwrap().secret, Some(SecretSource::Inline(s)) if s.len() == 1)
        );
        let proof_only = cfg(&[
            url,
            (AUTH_MODE_ENV, "proof-only"),
            (AUDIENCE_ENV, "urn:acme:links"),
        ])
        .unwrap();
        assert!(proof_only.callback.unwrap().secret.is_none());
        assert_eq!(proof_only.audience.as_deref(), Some("urn:acme:links"));
        let hmac_only = cfg(&[
            url,
            (SIGNING_SECRET_ENV, SECRET),
            (AUTH_MODE_ENV, "hmac-only"),
        ])
        .unwrap();
        assert_eq!(hmac_only.audience, None);
        let sns = cfg(&[
            (SNS_TOPIC_ENV, "arn:aws:sns:eu-west-1:123456789012:links"),
            (AUDIENCE_ENV, "https://p.example"),
        ])
        .unwrap();
        assert_eq!(sns.audience.as_deref(), Some("https://p.example"));
        assert_eq!(
            topic_region(sns.sns_topic_arn.as_deref().unwrap()).as_deref(),
            Some("eu-west-1")
        );
    }
}
