//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}`, base64, sent as `v1,<signature>`; several secrets (key
//! rotation) give several space-separated signatures. The provider's receiver verifies with the same code.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// Receivers reject timestamps further than this from their clock (replay window).
pub const DEFAULT_TOLERANCE_SECS: u64 = 5 * 60;

const SECRET_PREFIX: &str = "whsec_";

/// A signing key. Its bytes never appear in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningSecret(<{} bytes, redacted>)", self.0.len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("is empty; set it to one or more secrets of the form whsec_<base64>")]
    Empty,
    #[error("secret #{index} does not start with whsec_")]
    Prefix { index: usize },
    #[error("secret #{index} is not valid base64 after whsec_")]
    Base64 { index: usize },
    #[error("secret #{index} is {len} bytes long; Standard Webhooks secrets are 24 to 64 bytes")]
    Length { index: usize, len: usize },
}

impl SigningSecret {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// Parses a space-separated list of `whsec_<base64>` secrets (several during key rotation).
    pub fn parse_list(raw: &str) -> Result<Vec<Self>, SecretError> {
        let secrets: Vec<Self> = raw
            .split_whitespace()
            .enumerate()
            .map(|(i, s)| Self::parse(s, i + 1))
            .collect::<Result<_, _>>()?;
        if secrets.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(secrets)
    }

    fn parse(s: &str, index: usize) -> Result<Self, SecretError> {
        let b64 = s
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::Prefix { index })?;
        let bytes = B64.decode(b64).map_err(|_| SecretError::Base64 { index })?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(SecretError::Length {
                index,
                len: bytes.len(),
            });
        }
        Ok(Self(bytes))
    }

    /// The secret in its `whsec_` form (for tests and tools that hand it to another implementation).
    pub fn to_whsec(&self) -> String {
        format!("{SECRET_PREFIX}{}", B64.encode(&self.0))
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

/// The `webhook-signature` header value: one `v1,` signature per secret.
pub fn sign(secrets: &[SigningSecret], id: &str, timestamp: u64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    secrets
        .iter()
        .map(|s| {
            format!(
                "v1,{}",
                B64.encode(s.mac(id, &ts, body).finalize().into_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("webhook-timestamp is not a Unix timestamp in seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is {0} s away from now, outside the tolerance")]
    StaleTimestamp(u64),
    #[error("no signature in webhook-signature matches")]
    NoMatch,
}

/// Checks headers and body against the secrets. `now` is Unix seconds. Comparison is constant-time.
pub fn verify(
    secrets: &[SigningSecret],
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: u64,
    tolerance_secs: u64,
) -> Result<(), VerifyError> {
    let id = id
        .filter(|s| !s.is_empty())
        .ok_or(VerifyError::MissingHeader(HEADER_ID))?;
    let ts_raw = timestamp.ok_or(VerifyError::MissingHeader(HEADER_TIMESTAMP))?;
    let signature = signature.ok_or(VerifyError::MissingHeader(HEADER_SIGNATURE))?;
    let ts: u64 = ts_raw
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    let skew = now.abs_diff(ts);
    if skew > tolerance_secs {
        return Err(VerifyError::StaleTimestamp(skew));
    }
    let ts_canonical = ts.to_string();
    for candidate in signature.split_whitespace() {
        let Some(b64) = candidate.strip_prefix("v1,") else {
            continue;
        };
        let Ok(sig) = B64.decode(b64) else { continue };
        if sig.is_empty() {
            continue;
        }
        if secrets
            .iter()
            .any(|s| s.mac(id, &ts_canonical, body).verify_slice(&sig).is_ok())
        {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> SigningSecret {
        SigningSecret::parse_list("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap()
            .remove(0)
    }

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // The example from the Standard Webhooks specification.
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(
            &[secret()],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify(
            &[secret()],
            Some("msg_p5jXN8AQM9LWM0D4loKWxJek"),
            Some("1614265330"),
            Some(&sig),
            body,
            1614265330,
            300
        )
        .is_ok());
    }

    #[test]
    fn rotation_signs_with_every_secret_and_verifies_with_any() {
        let other = SigningSecret::from_bytes(vec![7; 32]);
        let sig = sign(&[secret(), other.clone()], "id", 10, b"x");
        assert_eq!(sig.split(' ').count(), 2);
        assert!(verify(&[other], Some("id"), Some("10"), Some(&sig), b"x", 10, 300).is_ok());
    }

    #[test]
    fn rejects_what_it_should() {
        let s = [secret()];
        let sig = sign(&s, "id", 1000, b"body");
        let v = |id, ts, sig: &str, body: &[u8], now| {
            verify(&s, Some(id), Some(ts), Some(sig), body, now, 300)
        };
        assert_eq!(
            v("id", "1000", &sig, b"tampered", 1000),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            v("other", "1000", &sig, b"body", 1000),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            v("id", "1000", "v1,", b"body", 1000),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            v("id", "1000", "", b"body", 1000),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            v("id", "1000", &sig.replace("v1,", "v2,"), b"body", 1000),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            v("id", "1000", &sig, b"body", 1301),
            Err(VerifyError::StaleTimestamp(301))
        );
        assert_eq!(
            v("id", "1000", &sig, b"body", 699),
            Err(VerifyError::StaleTimestamp(301))
        );
        assert_eq!(
            v("id", "10x", &sig, b"body", 1000),
            Err(VerifyError::BadTimestamp)
        );
        assert!(v("id", "1000", &format!("v1,bm90aXQ= {sig}"), b"body", 1000).is_ok());
        assert_eq!(
            verify(&s, None, Some("1"), Some(&sig), b"", 1, 300),
            Err(VerifyError::MissingHeader(HEADER_ID))
        );
    }

    #[test]
    fn secret_parsing_errors_and_redaction() {
        assert_eq!(SigningSecret::parse_list("  "), Err(SecretError::Empty));
        assert_eq!(
            SigningSecret::parse_list("abc"),
            Err(SecretError::Prefix { index: 1 })
        );
        assert_eq!(
            SigningSecret::parse_list("whsec_!!"),
            Err(SecretError::Base64 { index: 1 })
        );
        assert_eq!(
            SigningSecret::parse_list("whsec_AAAA"),
            Err(SecretError::Length { index: 1, len: 3 })
        );
        let dbg = format!("{:?}", secret());
        assert!(!dbg.contains("MfKQ") && dbg.contains("redacted"));
        assert_eq!(
            secret().to_whsec(),
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        );
    }
}
