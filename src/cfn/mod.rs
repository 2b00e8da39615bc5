//! The CloudFormation custom-resource protocol: the request it sends, the ids we answer with, and the
//! answer itself (a JSON body of at most 4096 bytes PUT to the pre-signed `ResponseURL`).

mod request;
mod response;

pub use request::{
    parse, parse_bytes, parse_stack_arn, CfnRequest, Origin, ReplyTo, RequestError, RequestType,
    StackArn,
};
pub use response::{put_answer, render, Answer, AnswerError, Status, MAX_RESPONSE_BYTES};

const FAILED_CREATE_PREFIX: &str = "create-failed-";
const UNCONFIRMED_CREATE_PREFIX: &str = "create-unconfirmed-";

/// The PhysicalResourceId of a link. It depends only on the stack and the resource's logical id, so it
/// never changes for the life of the resource: Updates return the same id (CloudFormation never deletes
/// the link by accident), and a re-sent Create returns the id it returned the first time. It changes only
/// when the resource gets a new logical id or moves to another stack, which CloudFormation treats as a
/// new resource anyway. The derivation is the contract's: the provider's receiver recomputes it.
pub use link_contract::event::link_id;

/// 32 hex digits of SHA-256 over `a`, a newline and `b`: the ids derived from a request's fields.
pub(crate) use link_contract::event::id_digest as digest_hex;

/// The PhysicalResourceId a failed Create answers with: recognisably not a link, so the Delete
/// CloudFormation sends while rolling back does nothing. Derived from the request so a re-sent request
/// gets the same one.
pub fn failed_create_id(request_id: &str) -> String {
    placeholder_id(FAILED_CREATE_PREFIX, request_id)
}

fn placeholder_id(prefix: &str, request_id: &str) -> String {
    let safe: String = request_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    format!("{prefix}{safe}")
}

/// The PhysicalResourceId of a Create that failed after the provider may already have been told (the
/// callback timed out, SNS failed after the callback succeeded...): the rollback Delete then tells the
/// provider to unlink `link_id`, so no link is left behind on the provider's side.
pub fn unconfirmed_create_id(request_id: &str) -> String {
    placeholder_id(UNCONFIRMED_CREATE_PREFIX, request_id)
}

/// What a Delete's PhysicalResourceId means for this resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuedId {
    /// The link this resource created.
    Link,
    /// A Create that failed after the provider may have recorded the link.
    UnconfirmedCreate,
    /// A Create that failed before anyone was told, or an id this resource never issued.
    Nothing,
}

pub fn classify_id(physical_id: &str, stack_id: &str, logical_resource_id: &str) -> IssuedId {
    if physical_id == link_id(stack_id, logical_resource_id) {
        IssuedId::Link
    } else if physical_id.starts_with(UNCONFIRMED_CREATE_PREFIX) {
        IssuedId::UnconfirmedCreate
    } else {
        IssuedId::Nothing
    }
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
        assert_eq!(classify_id(&link_id(s, "Link"), s, "Link"), IssuedId::Link);
        assert_eq!(
            classify_id(&link_id(s, "Other"), s, "Link"),
            IssuedId::Nothing
        );
        assert_eq!(
            classify_id(&failed_create_id("r-1"), s, "Link"),
            IssuedId::Nothing
        );
        assert_eq!(
            classify_id(&unconfirmed_create_id("r-1"), s, "Link"),
            IssuedId::UnconfirmedCreate
        );
        assert_eq!(unconfirmed_create_id("r-1"), "create-unconfirmed-r-1");
        assert_eq!(failed_create_id("9c5f-1 x"), "create-failed-9c5f-1x");
    }
}
