//! The one ARN parser: stack ids, role ARNs, the invoked function's ARN, topic and secret ARNs, and the
//! caller STS names. Partition, region and account are checked here, once, so every user of an ARN can
//! compare them without re-validating.

use std::fmt;

use crate::partition::Partition;

/// `arn:<partition>:<service>:<region>:<account>:<resource>`, with a known partition, a region of that
/// partition (or none) and a 12-digit account (or none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn<'a> {
    pub partition: &'static Partition,
    pub service: &'a str,
    /// Empty for global resources (IAM roles, STS callers).
    pub region: &'a str,
    /// Empty for AWS-owned resources (managed policies).
    pub account: &'a str,
    pub resource: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArnError {
    #[error("is not an ARN (arn:partition:service:region:account:resource)")]
    Shape,
    #[error("names partition '{0}', which is not an AWS partition")]
    Partition(String),
    #[error("names region '{0}', which is not a region of its partition")]
    Region(String),
    #[error("has account id '{0}'; an AWS account id is 12 digits")]
    Account(String),
}

/// ARNs longer than this are refused before they are split (IAM's own limit is 2048).
const MAX_ARN_LEN: usize = 2048;

impl<'a> Arn<'a> {
    pub fn parse(s: &'a str) -> Result<Self, ArnError> {
        if s.len() > MAX_ARN_LEN {
            return Err(ArnError::Shape);
        }
        let mut it = s.splitn(6, ':');
        let (
            Some("arn"),
            Some(partition),
            Some(service),
            Some(region),
            Some(account),
            Some(resource),
        ) = (
            it.next(),
            it.next(),
            it.next(),
            it.next(),
            it.next(),
            it.next(),
        )
        else {
            return Err(ArnError::Shape);
        };
        let valid_service = !service.is_empty()
            && service
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_service || resource.is_empty() {
            return Err(ArnError::Shape);
        }
        let partition =
            Partition::named(partition).ok_or_else(|| ArnError::Partition(shown(partition)))?;
        if !region.is_empty() && !partition.has_region(region) {
            return Err(ArnError::Region(shown(region)));
        }
        if !account.is_empty() && !is_account_id(account) {
            return Err(ArnError::Account(shown(account)));
        }
        Ok(Self {
            partition,
            service,
            region,
            account,
            resource,
        })
    }

    /// The resource's type and the rest: `stack/name/id` gives `("stack", "name/id")`.
    pub fn resource_type(&self) -> Option<(&'a str, &'a str)> {
        self.resource
            .split_once(['/', ':'])
            .filter(|(t, rest)| !t.is_empty() && !rest.is_empty())
    }

    /// A CloudFormation stack: `(name, id)`.
    pub fn stack(&self) -> Option<(&'a str, &'a str)> {
        match (self.service, self.resource_type()?) {
            ("cloudformation", ("stack", rest)) => {
                let (name, id) = rest.split_once('/')?;
                (!name.is_empty() && !id.is_empty() && !id.contains('/')).then_some((name, id))
            }
            _ => None,
        }
    }

    /// An IAM role: its name (the part after the last `/` of its path).
    pub fn role_name(&self) -> Option<&'a str> {
        match (self.service, self.resource_type()?) {
            ("iam", ("role", path)) if self.region.is_empty() && !self.account.is_empty() => {
                let name = path.rsplit('/').next()?;
                let valid = !name.is_empty()
                    && name.len() <= 64
                    && path
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b));
                valid.then_some(name)
            }
            _ => None,
        }
    }

    /// An STS assumed-role session (what a Lambda function's credentials are): `(role name, session)`.
    pub fn assumed_role(&self) -> Option<(&'a str, &'a str)> {
        match (self.service, self.resource_type()?) {
            ("sts", ("assumed-role", rest)) if !self.account.is_empty() => {
                let (role, session) = rest.split_once('/')?;
                (!role.is_empty() && !session.is_empty()).then_some((role, session))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Arn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:{}:{}:{}:{}",
            self.partition.name, self.service, self.region, self.account, self.resource
        )
    }
}

/// Twelve digits.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn shown(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_ids() {
        let a = Arn::parse(
            "arn:aws-us-gov:cloudformation:us-gov-west-1:123456789012:stack/my-stack/1-2-3",
        )
        .unwrap();
        assert_eq!(
            (a.partition.name, a.region, a.account, a.stack()),
            (
                "aws-us-gov",
                "us-gov-west-1",
                "123456789012",
                Some(("my-stack", "1-2-3"))
            )
        );
        assert_eq!(
            a.to_string(),
            "arn:aws-us-gov:cloudformation:us-gov-west-1:123456789012:stack/my-stack/1-2-3"
        );
        assert!(
            Arn::parse("arn:aws:cloudformation:us-east-1:123456789012:stack/a")
                .unwrap()
                .stack()
                .is_none()
        );
        assert!(Arn::parse("arn:aws:s3:us-east-1:123456789012:stack/a/b")
            .unwrap()
            .stack()
            .is_none());
    }

    #[test]
    fn roles_and_sessions() {
        let r = Arn::parse("arn:aws:iam::123456789012:role/path/Remote").unwrap();
        assert_eq!(r.role_name(), Some("Remote"));
        assert_eq!(
            Arn::parse("arn:aws:iam::123456789012:user/u")
                .unwrap()
                .role_name(),
            None
        );
        assert_eq!(
            Arn::parse("arn:aws:iam::123456789012:role/a b")
                .unwrap()
                .role_name(),
            None
        );
        let s = Arn::parse("arn:aws:sts::123456789012:assumed-role/fn-role/fn-name").unwrap();
        assert_eq!(s.assumed_role(), Some(("fn-role", "fn-name")));
        assert_eq!(
            Arn::parse("arn:aws:sts::123456789012:federated-user/x")
                .unwrap()
                .assumed_role(),
            None
        );
        assert_eq!(
            Arn::parse("arn:aws:iam::123456789012:user/x")
                .unwrap()
                .assumed_role(),
            None
        );
    }

    #[test]
    fn errors() {
        assert_eq!(Arn::parse("not-an-arn"), Err(ArnError::Shape));
        assert_eq!(Arn::parse("arn:aws:s3:::"), Err(ArnError::Shape));
        assert_eq!(Arn::parse("arn:aws:S3:::b"), Err(ArnError::Shape));
        assert_eq!(
            Arn::parse("arn:moon:s3:::b"),
            Err(ArnError::Partition("moon".into()))
        );
        assert_eq!(
            Arn::parse("arn:aws:sns:cn-north-1:123456789012:t"),
            Err(ArnError::Region("cn-north-1".into()))
        );
        assert_eq!(
            Arn::parse("arn:aws:sns:us-east-1:12:t"),
            Err(ArnError::Account("12".into()))
        );
        assert_eq!(
            Arn::parse(&format!("arn:aws:s3:::{}", "b".repeat(3000))),
            Err(ArnError::Shape)
        );
        assert_eq!(
            Arn::parse("arn:aws:s3:::bucket").unwrap().resource,
            "bucket"
        );
    }
}
