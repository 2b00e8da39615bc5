//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}`, base64, sent as `v1,<signature>`; several secrets (key
//! rotation) give several space-separated signatures.
//!
//! Verification is split so a receiver can refuse cheaply: [`WebhookHeaders::parse`] checks the headers
//! (id, timestamp window, signature syntax) before the body is read, and [`WebhookHeaders::verify`]
//! computes one HMAC per configured secret, however many candidates the header holds, and compares it
//! with each candidate in constant time.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// Receivers reject timestamps further than this from their clock (replay window).
pub const DEFAULT_TOLERANCE_SECS: u64 = 5 * 60;
/// Candidates in `webhook-signature` beyond this many are not looked at (a sender has one per secret
/// it signs with, two during a rotation).
pub const MAX_SIGNATURE_CANDIDATES: usize = 8;
/// Entries of `webhook-signature` beyond this many are not even decoded.
pub const MAX_SIGNATURE_ENTRIES: usize = 64;
/// Longer `webhook-id`s are refused before anything else is done with them.
pub const MAX_ID_LEN: usize = 256;

const SECRET_PREFIX: &str = "whsec_";
const SIGNATURE_LEN: usize = 32;

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

    fn tag(&self, id: &str, timestamp: &str, body: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }
}

/// The `webhook-signature` header value: one `v1,` signature per secret.
pub fn sign(secrets: &[SigningSecret], id: &str, timestamp: u64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    secrets
        .iter()
        .map(|s| format!("v1,{}", B64.encode(s.tag(id, &ts, body))))
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("webhook-id is longer than {MAX_ID_LEN} characters")]
    IdTooLong,
    #[error("webhook-timestamp is not a Unix timestamp in seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is {0} s away from now, outside the tolerance")]
    StaleTimestamp(u64),
    #[error("webhook-signature holds no v1 signature of 32 bytes")]
    NoCandidate,
    #[error("no signature in webhook-signature matches")]
    NoMatch,
}

impl VerifyError {
    /// The check that failed, as a stable word ([`crate::reason`]).
    pub fn reason(&self) -> &'static str {
        use crate::reason::{SIGNATURE, TIMESTAMP, WEBHOOK_ID};
        match self {
            Self::MissingHeader(HEADER_ID) | Self::IdTooLong => WEBHOOK_ID,
            Self::MissingHeader(HEADER_TIMESTAMP)
            | Self::BadTimestamp
            | Self::StaleTimestamp(_) => TIMESTAMP,
            Self::MissingHeader(_) | Self::NoCandidate | Self::NoMatch => SIGNATURE,
        }
    }
}

/// The signature headers of one delivery, checked for everything that needs no body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookHeaders {
    pub id: String,
    pub timestamp: u64,
    candidates: Vec<[u8; SIGNATURE_LEN]>,
}

impl WebhookHeaders {
    /// Checks the id, the timestamp (within `tolerance_secs` of `now`, Unix seconds) and the signature
    /// syntax. Of the first [`MAX_SIGNATURE_ENTRIES`] entries, those that are not `v1,` and 32 bytes of
    /// base64 are skipped, and at most [`MAX_SIGNATURE_CANDIDATES`] are kept.
    pub fn parse(
        id: Option<&str>,
        timestamp: Option<&str>,
        signature: Option<&str>,
        now: u64,
        tolerance_secs: u64,
    ) -> Result<Self, VerifyError> {
        let mut headers = Self::parse_unsigned(id, timestamp, now, tolerance_secs)?;
        let signature = signature.ok_or(VerifyError::MissingHeader(HEADER_SIGNATURE))?;
        headers.candidates = signature
            .split_whitespace()
            .take(MAX_SIGNATURE_ENTRIES)
            .filter_map(|c| c.strip_prefix("v1,"))
            // A base64 signature of 32 bytes is 44 characters: nothing longer is decoded.
            .filter(|b64| b64.len() <= 44)
            .filter_map(|b64| B64.decode(b64).ok()?.try_into().ok())
            .take(MAX_SIGNATURE_CANDIDATES)
            .collect();
        if headers.candidates.is_empty() {
            return Err(VerifyError::NoCandidate);
        }
        Ok(headers)
    }

    /// The id and the timestamp window only, for a receiver that authenticates deliveries by another
    /// means (an account proof binding the id and the body); [`Self::verify`] then matches nothing.
    pub fn parse_unsigned(
        id: Option<&str>,
        timestamp: Option<&str>,
        now: u64,
        tolerance_secs: u64,
    ) -> Result<Self, VerifyError> {
        let id = id
            .filter(|s| !s.is_empty())
            .ok_or(VerifyError::MissingHeader(HEADER_ID))?;
        if id.len() > MAX_ID_LEN {
            return Err(VerifyError::IdTooLong);
        }
        let ts_raw = timestamp.ok_or(VerifyError::MissingHeader(HEADER_TIMESTAMP))?;
        let ts: u64 = ts_raw
            .trim()
            .parse()
            .map_err(|_| VerifyError::BadTimestamp)?;
        let skew = now.abs_diff(ts);
        if skew > tolerance_secs {
            return Err(VerifyError::StaleTimestamp(skew));
        }
        Ok(Self {
            id: id.to_string(),
            timestamp: ts,
            candidates: Vec::new(),
        })
    }

    /// One HMAC per secret over the body, compared with every candidate in constant time.
    pub fn verify(&self, secrets: &[SigningSecret], body: &[u8]) -> Result<(), VerifyError> {
        let ts = self.timestamp.to_string();
        for secret in secrets {
            let tag = secret.tag(&self.id, &ts, body);
            let mut matched = subtle::Choice::from(0);
            for c in &self.candidates {
                matched |= tag.ct_eq(c);
            }
            if bool::from(matched) {
                return Ok(());
            }
        }
        Err(VerifyError::NoMatch)
    }
}

/// Checks headers and body against the secrets in one call. `now` is Unix seconds.
pub fn verify(
    secrets: &[SigningSecret],
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: u64,
    tolerance_secs: u64,
) -> Result<(), VerifyError> {
    WebhookHeaders::parse(id, timestamp, signature, now, tolerance_secs)?.verify(secrets, body)
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
            Err(VerifyError::NoCandidate)
        );
        assert_eq!(
            v("id", "1000", "", b"body", 1000),
            Err(VerifyError::NoCandidate)
        );
        assert_eq!(
            v("id", "1000", &sig.replace("v1,", "v2,"), b"body", 1000),
            Err(VerifyError::NoCandidate)
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
        assert_eq!(
            v(&"i".repeat(MAX_ID_LEN + 1), "1000", &sig, b"body", 1000),
            Err(VerifyError::IdTooLong)
        );
    }

    #[test]
    fn candidates_are_capped_and_only_32_byte_ones_count() {
        let s = [secret()];
        let sig = sign(&s, "id", 1000, b"body");
        let wrong = format!("v1,{}", B64.encode([0u8; 32]));
        // Thousands of well-formed wrong candidates: only the first few are kept, so the right one,
        // placed after them, is never looked at.
        let many = format!("{} {sig}", vec![wrong.as_str(); 5000].join(" "));
        let h = WebhookHeaders::parse(Some("id"), Some("1000"), Some(&many), 1000, 300).unwrap();
        assert_eq!(h.candidates.len(), MAX_SIGNATURE_CANDIDATES);
        assert_eq!(h.verify(&s, b"body"), Err(VerifyError::NoMatch));
        // Candidates of other lengths are skipped, not kept; entries past the first 64 are not read.
        let odd = format!("{} {sig}", vec!["v1,bm90aXQ="; 63].join(" "));
        assert!(verify(&s, Some("id"), Some("1000"), Some(&odd), b"body", 1000, 300).is_ok());
        let late = format!("{} {sig}", vec!["v1,bm90aXQ="; 64].join(" "));
        assert_eq!(
            verify(
                &s,
                Some("id"),
                Some("1000"),
                Some(&late),
                b"body",
                1000,
                300
            ),
            Err(VerifyError::NoCandidate)
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
