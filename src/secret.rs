//! The Standard Webhooks signing secret. In a stack it lives in Secrets Manager (the function's
//! environment holds only its ARN, and the execution role may read that one secret): it is read once per
//! process, on first use, and kept in memory. Locally it may come from the environment.

use aws_smithy_types::error::display::DisplayErrorContext;
use tokio::sync::OnceCell;

use link_contract::signing::SigningSecret;

use crate::config::SecretSource;
use crate::deadline::Deadline;

pub struct SigningKeys {
    source: Source,
    loaded: OnceCell<Vec<SigningSecret>>,
}

enum Source {
    Inline,
    SecretsManager {
        client: aws_sdk_secretsmanager::Client,
        arn: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the signing secret {arn} could not be read from Secrets Manager: {message}")]
    Read { arn: String, message: String },
    #[error("the signing secret {arn} is not one or more whsec_ secrets: {problem}")]
    Invalid { arn: String, problem: String },
    #[error("the signing secret {arn} could not be read before the invocation's time ran out")]
    OutOfTime { arn: String },
}

impl SigningKeys {
    /// Secrets known in advance (local runs, tests).
    pub fn inline(secrets: Vec<SigningSecret>) -> Self {
        Self {
            source: Source::Inline,
            loaded: OnceCell::new_with(Some(secrets)),
        }
    }

    /// The configured source; a Secrets Manager client is built for the secret's own region.
    pub fn from_source(source: SecretSource, sdk: &aws_config::SdkConfig) -> Self {
        match source {
            SecretSource::Inline(secrets) => Self::inline(secrets),
            SecretSource::SecretsManager { arn, region } => {
                let config = aws_sdk_secretsmanager::config::Builder::from(sdk)
                    .region(aws_config::Region::new(region))
                    .build();
                Self {
                    source: Source::SecretsManager {
                        client: aws_sdk_secretsmanager::Client::from_conf(config),
                        arn,
                    },
                    loaded: OnceCell::new(),
                }
            }
        }
    }

    /// The secrets, read on first use. A failed read is not kept: the next call tries again.
    pub async fn get(&self, until: Deadline) -> Result<&[SigningSecret], SecretError> {
        let Source::SecretsManager { client, arn } = &self.source else {
            return Ok(self.loaded.get().map_or(&[][..], Vec::as_slice));
        };
        let read = async {
            let out = client
                .get_secret_value()
                .secret_id(arn)
                .send()
                .await
                .map_err(|e| SecretError::Read {
                    arn: arn.clone(),
                    message: DisplayErrorContext(&e).to_string(),
                })?;
            let value = out.secret_string().ok_or_else(|| SecretError::Invalid {
                arn: arn.clone(),
                problem: "it has no SecretString".into(),
            })?;
            let secrets = SigningSecret::parse_list(value).map_err(|e| SecretError::Invalid {
                arn: arn.clone(),
                problem: e.to_string(),
            })?;
            tracing::info!(secret_arn = %arn, secrets = secrets.len(), "signing secret read from Secrets Manager");
            Ok::<_, SecretError>(secrets)
        };
        let loaded = tokio::time::timeout_at(until.instant(), self.loaded.get_or_try_init(|| read))
            .await
            .map_err(|_| SecretError::OutOfTime { arn: arn.clone() })??;
        Ok(loaded)
    }
}
