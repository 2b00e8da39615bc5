//! The CloudFormation custom-resource protocol: the request it sends, the ids we answer with, and the
//! answer itself (a JSON body of at most 4096 bytes PUT to the pre-signed `ResponseURL`).

mod request;
mod response;

pub use request::{
    parse, parse_bytes, parse_stack_arn, CfnRequest, ReplyTo, RequestError, RequestType, StackArn,
};
pub use response::{put_answer, render, Answer, AnswerError, Status, MAX_RESPONSE_BYTES};

use sha2::{Digest, Sha256};

const LINK_PREFIX: &str = "link-";
const FAILED_CREATE_PREFIX: &str = "create-failed-";

/// The PhysicalResourceId of a link. It depends only on the stack and the resource's logical id, so it
/// never changes for the life of the resource: Updates return the same id (CloudFormation never deletes
/// the link by accident), and a re-sent Create returns the id it returned the first time. It changes only
/// when the resource gets a new logical id or moves to another stack, which CloudFormation treats as a
/// new resource anyway.
pub fn link_id(stack_id: &str, logical_resource_id: &str) -> String {
    let digest = Sha256::new()
        .chain_update(stack_id.as_bytes())
        .chain_update(b"\n")
        .chain_update(logical_resource_id.as_bytes())
        .finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{LINK_PREFIX}{hex}")
}

/// The PhysicalResourceId a failed Create answers with: recognisably not a link, so the Delete
/// CloudFormation sends while rolling back does nothing. Derived from the request so a re-sent request
/// gets the same one.
pub fn failed_create_id(request_id: &str) -> String {
    let safe: String = request_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    format!("{FAILED_CREATE_PREFIX}{safe}")
}

/// Whether `physical_id` is the link this stack's resource created (anything else is not ours to unlink).
pub fn is_link_id(physical_id: &str, stack_id: &str, logical_resource_id: &str) -> bool {
    physical_id == link_id(stack_id, logical_resource_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_id_is_stable_and_per_resource() {
        let s = "arn:aws:cloudformation:us-west-2:123456789012:stack/a/1";
        assert_eq!(link_id(s, "Link"), link_id(s, "Link"));
        assert_ne!(link_id(s, "Link"), link_id(s, "Link2"));
        assert_ne!(
            link_id(s, "Link"),
            link_id(
                "arn:aws:cloudformation:us-west-2:123456789012:stack/a/2",
                "Link"
            )
        );
        assert!(link_id(s, "Link").starts_with("link-") && link_id(s, "Link").len() == 37);
        assert!(is_link_id(&link_id(s, "Link"), s, "Link"));
        assert!(!is_link_id(&failed_create_id("r-1"), s, "Link"));
        assert_eq!(failed_create_id("9c5f-1 x"), "create-failed-9c5f-1x");
    }
}
