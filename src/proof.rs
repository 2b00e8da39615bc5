//! The proof of the account each delivery carries (`link_contract::proof`): an `sts:GetCallerIdentity`
//! request signed with the function's own credentials (the execution role's, session token included and
//! signed) by the AWS SDK's SigV4 signer, for the STS endpoint of the stack's partition and region. The
//! provider replays it to STS, which names the account and role that signed it.

use std::time::SystemTime;

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use link_contract::partition::Partition;
use link_contract::proof::{Binding, SignedRequest, CONTENT_TYPE, STS_BODY};

use crate::deadline::Deadline;

/// Makes the proof of each delivery.
pub struct Prover {
    credentials: Option<SharedCredentialsProvider>,
    audience: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    #[error("the proof of the account could not be made: the function has no AWS credentials")]
    NoCredentials,
    #[error("the proof of the account could not be made: the function's credentials could not be loaded: {0}")]
    Credentials(String),
    #[error("the proof of the account could not be made for partition '{0}'")]
    Partition(String),
    #[error("the proof of the account could not be signed: {0}")]
    Sign(String),
    #[error("the proof of the account could not be made before the invocation's time ran out")]
    OutOfTime,
}

impl Prover {
    /// Uses the SDK configuration's credentials provider (in Lambda: the execution role's credentials).
    pub fn new(sdk: &aws_config::SdkConfig, audience: String) -> Self {
        Self {
            credentials: sdk.credentials_provider(),
            audience,
        }
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The proof for one delivery: `event_id` is its `webhook-id`, `body` its exact bytes; the stack's
    /// `partition` and `region` choose the STS endpoint.
    pub async fn prove(
        &self,
        partition: &str,
        region: &str,
        event_id: &str,
        body: &[u8],
        until: Deadline,
    ) -> Result<String, ProveError> {
        let provider = self.credentials.as_ref().ok_or(ProveError::NoCredentials)?;
        let credentials = tokio::time::timeout_at(until.instant(), provider.provide_credentials())
            .await
            .map_err(|_| ProveError::OutOfTime)?
            .map_err(|e| ProveError::Credentials(e.to_string()))?;
        let partition =
            Partition::named(partition).ok_or_else(|| ProveError::Partition(partition.into()))?;
        let binding = Binding {
            audience: &self.audience,
            event_id,
            body,
        };
        Ok(sign_request(&credentials, partition, region, &binding, SystemTime::now())?.encode())
    }
}

/// The signed GetCallerIdentity request for `binding`, to `partition`'s regional STS endpoint of
/// `region`, signed at `time`. Pure, so a test can compare it with botocore's signature.
pub fn sign_request(
    credentials: &Credentials,
    partition: &Partition,
    region: &str,
    binding: &Binding<'_>,
    time: SystemTime,
) -> Result<SignedRequest, ProveError> {
    let host = partition.sts_host(region);
    let url = format!("https://{host}/");
    let mut headers: Vec<(String, String)> = vec![
        ("content-type".into(), CONTENT_TYPE.into()),
        ("host".into(), host),
    ];
    headers.extend(
        binding
            .headers()
            .into_iter()
            .map(|(name, value)| (name.to_string(), value)),
    );
    let identity: Identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| ProveError::Sign(e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        "POST",
        url.as_str(),
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(STS_BODY.as_bytes()),
    )
    .map_err(|e| ProveError::Sign(e.to_string()))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| ProveError::Sign(e.to_string()))?
        .into_parts();
    // x-amz-date, x-amz-security-token (when the credentials have one) and authorization.
    headers.extend(
        instructions
            .headers()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.to_string())),
    );
    Ok(SignedRequest {
        method: "POST".into(),
        url,
        headers: headers.into_iter().collect(),
        body: STS_BODY.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use link_contract::proof::{check, Expected};
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn what_the_function_signs_passes_the_receivers_check() {
        let creds = Credentials::new("ASIAEXAMPLE", "secret", Some("token-1".into()), None, "t");
        let at = UNIX_EPOCH + Duration::from_secs(1_795_435_200);
        let body = br#"{"type":"account.linked"}"#;
        let binding = Binding {
            audience: "https://hooks.p.example",
            event_id: "msg_1",
            body,
        };
        let aws = Partition::named("aws").unwrap();
        let req = sign_request(&creds, aws, "eu-west-1", &binding, at).unwrap();
        assert_eq!(req.url, "https://sts.eu-west-1.amazonaws.com/");
        assert_eq!(req.headers["x-amz-security-token"], "token-1");
        assert_eq!(req.headers["x-amz-date"], "20261123T120000Z");
        let auth = &req.headers["authorization"];
        assert!(
            auth.contains("Credential=ASIAEXAMPLE/20261123/eu-west-1/sts/aws4_request"),
            "{auth}"
        );
        assert!(auth.contains("SignedHeaders=content-type;host;x-account-link-audience;x-account-link-body-sha256;x-account-link-event-id;x-amz-date;x-amz-security-token,"), "{auth}");
        let expected = Expected {
            audience: "https://hooks.p.example",
            event_id: "msg_1",
            body,
            partition: "aws",
            account_id: "123456789012",
        };
        let replay = check(&req.encode(), &expected, 1_795_435_200 + 60).unwrap();
        assert_eq!(replay.url, req.url);
        // The secret key never travels; the signature changes with it.
        assert!(!req.encode().contains("secret"));
        let other = Credentials::new("ASIAEXAMPLE", "other", Some("token-1".into()), None, "t");
        let again = sign_request(&other, aws, "eu-west-1", &binding, at).unwrap();
        assert_ne!(again.headers["authorization"], req.headers["authorization"]);
        let cn = sign_request(
            &creds,
            Partition::named("aws-cn").unwrap(),
            "cn-north-1",
            &binding,
            at,
        )
        .unwrap();
        assert_eq!(cn.url, "https://sts.cn-north-1.amazonaws.com.cn/");
    }
}
