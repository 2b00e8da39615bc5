//! The stable, short machine words that name the check a delivery failed. The Rust errors give them with
//! `reason()` ([`crate::signing::VerifyError::reason`], [`crate::proof::ProofError::reason`],
//! [`crate::parts::PartError::reason`], [`crate::parts::ReassemblyError::reason`],
//! [`crate::event::ClaimError::reason`]); the Python and
//! TypeScript verifiers (`verifiers/`) raise the same words, and `verifiers/vectors.json` expects them.
//! A word is never renamed or reused for another check: receivers may branch and alert on it.

/// `webhook-id` missing, empty, too long, or not the delivery id the event names.
pub const WEBHOOK_ID: &str = "webhook-id";
/// `webhook-timestamp` missing, not Unix seconds, or outside the tolerance.
pub const TIMESTAMP: &str = "timestamp";
/// `webhook-signature` missing, without a usable `v1,` candidate, or matching no secret.
pub const SIGNATURE: &str = "signature";
/// The body is not a UTF-8 JSON link event.
pub const EVENT: &str = "event";
/// `data.schemaVersion` is not one this verifier reads.
pub const SCHEMA_VERSION: &str = "schema-version";
pub const PART_COUNT: &str = "part-count";
pub const PART_INDEX: &str = "part-index";
pub const PART_SET: &str = "part-set";
pub const PART_SET_SIZE: &str = "part-set-size";
pub const PART_ENVELOPE: &str = "part-envelope";
/// The event's `timestamp` is further ahead of the verifier's clock than the tolerance: it would win the
/// ordering against every real event of its link to come.
pub const TIMESTAMP_AHEAD: &str = "timestamp-ahead";
/// `data.stackId` is not a CloudFormation stack ARN.
pub const STACK_ID: &str = "stack-id";
/// `data.partition`, `data.region` or `data.accountId` is not what `data.stackId` names.
pub const STACK_MISMATCH: &str = "stack-mismatch";
/// `data.logicalResourceId` is not 1 to 255 letters and digits.
pub const LOGICAL_RESOURCE_ID: &str = "logical-resource-id";
/// `data.physicalResourceId` is not the link id of `data.stackId` and `data.logicalResourceId`.
pub const LINK_ID: &str = "link-id";
/// A `data.roles` entry is not an IAM role of the event's account and partition (or there are too many).
pub const ROLE: &str = "role";
/// `data.externalId` is not what IAM accepts as `sts:ExternalId`.
pub const EXTERNAL_ID: &str = "external-id";
/// `data.vpcId` is not a VPC id.
pub const VPC_ID: &str = "vpc-id";
/// A `data.regions` entry is not a region of the event's partition (or there are too many).
pub const REGION: &str = "region";
/// A reassembler holds as many open splits (or bytes) as it may: retry later.
pub const REASSEMBLY_FULL: &str = "reassembly-full";
/// The delivery carries no proof of the account where one is required.
pub const PROOF_MISSING: &str = "proof-missing";
pub const PROOF_LENGTH: &str = "proof-length";
pub const PROOF_ENCODING: &str = "proof-encoding";
pub const PROOF_METHOD: &str = "proof-method";
pub const PROOF_SCHEME: &str = "proof-scheme";
pub const PROOF_URL: &str = "proof-url";
pub const PROOF_HOST: &str = "proof-host";
pub const PROOF_PARTITION: &str = "proof-partition";
pub const PROOF_BODY: &str = "proof-body";
pub const PROOF_HEADER: &str = "proof-header";
pub const PROOF_HEADER_VALUE: &str = "proof-header-value";
pub const PROOF_HEADER_MISSING: &str = "proof-header-missing";
pub const PROOF_UNSIGNED_HEADER: &str = "proof-unsigned-header";
pub const PROOF_SIGNED_HEADER_ABSENT: &str = "proof-signed-header-absent";
pub const PROOF_HOST_HEADER: &str = "proof-host-header";
pub const PROOF_CONTENT_TYPE: &str = "proof-content-type";
pub const PROOF_AUTHORIZATION: &str = "proof-authorization";
pub const PROOF_SCOPE: &str = "proof-scope";
pub const PROOF_AUDIENCE: &str = "proof-audience";
pub const PROOF_EVENT_ID: &str = "proof-event-id";
pub const PROOF_BODY_SHA256: &str = "proof-body-sha256";
pub const PROOF_DATE: &str = "proof-date";
pub const PROOF_AGE: &str = "proof-age";
/// `data.accountId` is not 12 digits, so no proof can name it.
pub const ACCOUNT_ID: &str = "account-id";
/// STS answered with a redirect; redirects are never followed.
pub const STS_REDIRECT: &str = "sts-redirect";
/// STS refused the signed request (bad signature, expired or revoked credentials): the proof is not genuine.
pub const STS_REFUSED: &str = "sts-refused";
/// STS could not be reached, timed out, throttled or failed: retry later.
pub const STS_UNAVAILABLE: &str = "sts-unavailable";
/// STS's 2xx answer is not a GetCallerIdentityResponse with Account and Arn.
pub const STS_ANSWER: &str = "sts-answer";
/// STS names another account than `data.accountId`.
pub const PROOF_ACCOUNT: &str = "proof-account";
/// STS names a caller that is not an assumed-role session of the event's account and partition.
pub const PROOF_CALLER: &str = "proof-caller";
/// Too many proofs are being sent to STS at once: retry later.
pub const BUSY: &str = "busy";

/// Every reason, with what it means.
pub const ALL: &[(&str, &str)] = &[
    (WEBHOOK_ID, "webhook-id is missing, empty, longer than 256 characters, or not the delivery id the event names"),
    (TIMESTAMP, "webhook-timestamp is missing, not Unix seconds, or further from now than the tolerance"),
    (SIGNATURE, "webhook-signature is missing, has no v1 signature of 32 bytes among its first entries, or none matches a secret"),
    (EVENT, "the body is not a UTF-8 JSON link event (the message names the field)"),
    (SCHEMA_VERSION, "data.schemaVersion is not a version this verifier reads"),
    (TIMESTAMP_AHEAD, "the event's timestamp is further ahead of the verifier's clock than the tolerance"),
    (PART_COUNT, "data.part.count is not 1 to 64"),
    (PART_INDEX, "data.part.index is not 1 to data.part.count"),
    (PART_SET, "data.part.set is not 16 lowercase hex digits"),
    (PART_SET_SIZE, "the parts of one split carry more than 16 MiB"),
    (PART_ENVELOPE, "a part's envelope (type, timestamp, ids, account, stack, roles, count) differs from its split's other parts"),
    (STACK_ID, "data.stackId is not a CloudFormation stack ARN (arn:<partition>:cloudformation:<region>:<account>:stack/<name>/<id>)"),
    (STACK_MISMATCH, "data.partition, data.region or data.accountId is not the partition, region or account data.stackId names"),
    (LOGICAL_RESOURCE_ID, "data.logicalResourceId is not 1 to 255 letters and digits"),
    (LINK_ID, "data.physicalResourceId is not link- and the first 32 hex digits of SHA-256(stackId, newline, logicalResourceId)"),
    (ROLE, "a data.roles entry is not an IAM role ARN of the event's account and partition, its key is not 1 to 64 letters and digits, or there are more than 16"),
    (EXTERNAL_ID, "data.externalId is not 2 to 1224 letters, digits and _+=,.@:/- (what IAM accepts as sts:ExternalId)"),
    (VPC_ID, "data.vpcId is not a VPC id (vpc- and 8 or 17 lowercase hex digits)"),
    (REGION, "a data.regions entry is not a region name of the event's partition, or there are more than 64"),
    (REASSEMBLY_FULL, "the reassembler holds as many open splits or bytes as it may (retry later)"),
    (PROOF_MISSING, "there is no account-link-proof header (accountLinkProof attribute on SNS)"),
    (PROOF_LENGTH, "the proof is longer than 12 KiB"),
    (PROOF_ENCODING, "the proof is not v1. and the unpadded base64url of {method, url, headers, body}"),
    (PROOF_METHOD, "the proof's method is not POST"),
    (PROOF_SCHEME, "the proof's URL is not https"),
    (PROOF_URL, "the proof's URL is not https://<host>/ (a port, user, path, query or fragment)"),
    (PROOF_HOST, "the proof's host is not an STS endpoint of a region that exists"),
    (PROOF_PARTITION, "the proof's STS endpoint is in another partition than data.partition"),
    (PROOF_BODY, "the proof's body is not exactly Action=GetCallerIdentity&Version=2011-06-15"),
    (PROOF_HEADER, "the proof carries a header a GetCallerIdentity proof may not carry"),
    (PROOF_HEADER_VALUE, "a proof header is empty, not printable ASCII, or repeated"),
    (PROOF_HEADER_MISSING, "the proof lacks authorization, host, content-type, x-amz-date or a binding header"),
    (PROOF_UNSIGNED_HEADER, "a proof header is not listed in SignedHeaders"),
    (PROOF_SIGNED_HEADER_ABSENT, "SignedHeaders lists a header the proof does not carry"),
    (PROOF_HOST_HEADER, "the proof's host header differs from its URL's host"),
    (PROOF_CONTENT_TYPE, "the proof's content-type is not application/x-www-form-urlencoded"),
    (PROOF_AUTHORIZATION, "the proof's authorization is not AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=<64 hex>"),
    (PROOF_SCOPE, "the credential scope's date, region, service or terminator is not the proof's date, the endpoint's region, sts, aws4_request"),
    (PROOF_AUDIENCE, "the proof is for another audience than this receiver's"),
    (PROOF_EVENT_ID, "the proof is for another delivery id"),
    (PROOF_BODY_SHA256, "the proof is for another body"),
    (PROOF_DATE, "the proof's x-amz-date is not YYYYMMDDTHHMMSSZ"),
    (PROOF_AGE, "the proof was signed more than 15 minutes from now"),
    (ACCOUNT_ID, "data.accountId is not a 12-digit account id"),
    (STS_REDIRECT, "STS answered with a redirect, which is not followed"),
    (STS_REFUSED, "STS refused the signed request: the proof is not genuine, or its credentials expired"),
    (STS_UNAVAILABLE, "STS could not be reached, timed out, throttled or failed (retry later)"),
    (STS_ANSWER, "STS's answer is not a GetCallerIdentityResponse with Account and Arn"),
    (PROOF_ACCOUNT, "STS names another account than data.accountId"),
    (PROOF_CALLER, "STS names a caller that is not an assumed-role session of the event's account and partition"),
    (BUSY, "too many proofs are being sent to STS at once (retry later)"),
];

/// The reasons after which the same delivery may succeed later: answer 503 so the sender retries.
pub const RETRYABLE: &[&str] = &[REASSEMBLY_FULL, STS_UNAVAILABLE, BUSY];

/// The claims that name another stack's link or contradict the event's own stack: a sender that may send
/// events at all attempts to change a link that is not its own. link-receiver checks them after the proof
/// (so that it knows who tried), keeps the event apart and answers 409; every other claim is refused
/// before the proof (400). [`crate::event::ClaimError::is_conflict`].
pub const CONFLICTS: &[&str] = &[STACK_MISMATCH, LINK_ID];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn words_are_unique_short_and_lowercase() {
        let words: BTreeSet<&str> = ALL.iter().map(|(w, _)| *w).collect();
        assert_eq!(words.len(), ALL.len());
        for w in &words {
            assert!(
                w.len() <= 32
                    && w.bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'-' || b.is_ascii_digit()),
                "{w}"
            );
        }
        assert!(RETRYABLE.iter().all(|r| words.contains(r)));
        assert!(CONFLICTS.iter().all(|r| words.contains(r)));
    }
}
