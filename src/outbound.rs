//! Every URL the function calls out to passes through here: which hosts are allowed, and how a URL is
//! written to a log without the credentials it carries (a pre-signed URL's query string is a signature).

use std::fmt;
use std::net::IpAddr;

use link_contract::partition::Partition;
use url::{Host, Url};

/// Environment switch that also allows plain `http` to loopback addresses (local runs and tests only).
pub const ALLOW_LOOPBACK_ENV: &str = "ACCOUNT_LINK_ALLOW_LOOPBACK";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OutboundError {
    #[error("{field} is not a valid URL: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{field} must use https (plain http is allowed only to loopback addresses with {ALLOW_LOOPBACK_ENV}=true), got {scheme}://")]
    Scheme { field: &'static str, scheme: String },
    /// `expected` names the bucket and an endpoint it is served from; `got` the URL's host and path.
    #[error("{field} must point to CloudFormation's response bucket of this region on Amazon S3 (such as {expected}), got {got}")]
    NotResponseBucket {
        field: &'static str,
        expected: String,
        got: String,
    },
    #[error("{field} must not carry a user name or password")]
    Credentials { field: &'static str },
}

/// Decides which URLs the function may call.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboundPolicy {
    allow_loopback: bool,
}

impl OutboundPolicy {
    pub fn new(allow_loopback: bool) -> Self {
        Self { allow_loopback }
    }

    pub fn allows_loopback(&self) -> bool {
        self.allow_loopback
    }

    /// CloudFormation's pre-signed `ResponseURL`: https, in CloudFormation's response bucket of the
    /// function's own region (`cloudformation-custom-resource-response-<region without dashes>`, as AWS
    /// documents for custom resources), virtual-hosted or path-style, on an S3 endpoint of the partition.
    /// Anything else could be a bucket someone else owns, who would receive the answer and its inventory.
    pub fn response_url(
        &self,
        raw: &str,
        partition: &'static Partition,
        region: &str,
    ) -> Result<Url, OutboundError> {
        const FIELD: &str = "ResponseURL";
        let url = self.parse(FIELD, raw)?;
        if self.is_allowed_loopback(&url) {
            return Ok(url);
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let bucket = response_bucket(region);
        let in_bucket = |endpoint: &String| {
            let virtual_hosted = host
                .strip_prefix(bucket.as_str())
                .and_then(|rest| rest.strip_prefix('.'))
                == Some(endpoint.as_str());
            let path_style = host == *endpoint
                && url
                    .path()
                    .strip_prefix('/')
                    .and_then(|p| p.strip_prefix(bucket.as_str()))
                    .is_some_and(|rest| rest.starts_with('/'));
            virtual_hosted || path_style
        };
        if url.port().is_some_and(|p| p != 443) || !partition.s3_hosts(region).iter().any(in_bucket)
        {
            let path: String = url.path().chars().take(80).collect();
            return Err(OutboundError::NotResponseBucket {
                field: FIELD,
                expected: format!("https://{bucket}.s3.{region}.{}/", partition.dns_suffix),
                got: format!("{host}{path}"),
            });
        }
        Ok(url)
    }

    /// The provider's callback URL: any https host (it is configured by the stack's author, not the event).
    pub fn provider_url(&self, field: &'static str, raw: &str) -> Result<Url, OutboundError> {
        let url = self.parse(field, raw)?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(OutboundError::Invalid {
                field,
                reason: "it has no host".into(),
            });
        }
        Ok(url)
    }

    fn parse(&self, field: &'static str, raw: &str) -> Result<Url, OutboundError> {
        let url = Url::parse(raw.trim()).map_err(|e| OutboundError::Invalid {
            field,
            reason: e.to_string(),
        })?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(OutboundError::Credentials { field });
        }
        match url.scheme() {
            "https" => Ok(url),
            "http" if self.is_allowed_loopback(&url) => Ok(url),
            other => Err(OutboundError::Scheme {
                field,
                scheme: other.to_string(),
            }),
        }
    }

    fn is_allowed_loopback(&self, url: &Url) -> bool {
        self.allow_loopback && is_loopback(url)
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// CloudFormation's bucket for custom resource answers in `region`.
pub fn response_bucket(region: &str) -> String {
    format!(
        "cloudformation-custom-resource-response-{}",
        region.replace('-', "")
    )
}

/// A URL as it may appear in a log: scheme, host, port and path; never the query string, fragment or
/// user info.
pub struct Redacted<'a>(pub &'a Url);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let u = self.0;
        write!(f, "{}://{}", u.scheme(), u.host_str().unwrap_or_default())?;
        if let Some(port) = u.port() {
            write!(f, ":{port}")?;
        }
        f.write_str(u.path())?;
        if u.query().is_some() {
            f.write_str("?<redacted>")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: &str) -> &'static Partition {
        Partition::named(name).unwrap()
    }

    #[test]
    fn the_response_bucket_of_the_region_is_allowed_in_every_form() {
        let p = OutboundPolicy::new(false);
        for (ok, partition, region) in [
            ("https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/arn%3A/x?X-Amz-Signature=a", "aws", "us-east-1"),
            ("https://cloudformation-custom-resource-response-useast1.s3-external-1.amazonaws.com/k", "aws", "us-east-1"),
            ("https://cloudformation-custom-resource-response-euwest1.s3.eu-west-1.amazonaws.com/k?sig", "aws", "eu-west-1"),
            ("https://cloudformation-custom-resource-response-euwest1.s3-eu-west-1.amazonaws.com/k", "aws", "eu-west-1"),
            ("https://s3.eu-west-1.amazonaws.com/cloudformation-custom-resource-response-euwest1/k", "aws", "eu-west-1"),
            ("https://s3.amazonaws.com/cloudformation-custom-resource-response-euwest1/k", "aws", "eu-west-1"),
            ("https://cloudformation-custom-resource-response-cnnorth1.s3.cn-north-1.amazonaws.com.cn/k", "aws-cn", "cn-north-1"),
            ("https://cloudformation-custom-resource-response-usgovwest1.s3.dualstack.us-gov-west-1.amazonaws.com/k", "aws-us-gov", "us-gov-west-1"),
            ("https://cloudformation-custom-resource-response-usgovwest1.s3-fips.us-gov-west-1.amazonaws.com/k", "aws-us-gov", "us-gov-west-1"),
            ("https://CLOUDFORMATION-CUSTOM-RESOURCE-RESPONSE-USEAST1.S3.AMAZONAWS.COM/key", "aws", "us-east-1"),
        ] {
            assert!(p.response_url(ok, part(partition), region).is_ok(), "{ok}");
        }
    }

    #[test]
    fn any_other_bucket_or_scheme_is_refused() {
        let p = OutboundPolicy::new(false);
        let aws = part("aws");
        for (bad, want) in [
            ("http://cloudformation-custom-resource-response-uswest2.s3.us-west-2.amazonaws.com/k", "https"),
            // Someone else's bucket on a genuine S3 host: the answer (and its inventory) would be theirs.
            ("https://attacker-bucket.s3.us-west-2.amazonaws.com/k", "response bucket"),
            ("https://s3.us-west-2.amazonaws.com/attacker-bucket/k", "response bucket"),
            ("https://s3.us-west-2.amazonaws.com/cloudformation-custom-resource-response-uswest2-x/k", "response bucket"),
            // Another region's response bucket, or this bucket through another region's endpoint.
            ("https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/k", "response bucket"),
            ("https://cloudformation-custom-resource-response-uswest2.s3.eu-west-1.amazonaws.com/k", "response bucket"),
            ("https://cloudformation-custom-resource-response-uswest2.s3.us-west-2.amazonaws.com.cn/k", "response bucket"),
            ("https://cloudformation-custom-resource-response-uswest2.s3.us-west-2.amazonaws.com.evil.com/k", "response bucket"),
            ("https://x.cloudformation-custom-resource-response-uswest2.s3.us-west-2.amazonaws.com/k", "response bucket"),
            ("https://evil.example.com/k", "response bucket"),
            ("https://ec2.us-west-2.amazonaws.com/k", "response bucket"),
            ("https://cloudformation-custom-resource-response-uswest2.s3.us-west-2.amazonaws.com:8443/k", "response bucket"),
            ("https://u:p@cloudformation-custom-resource-response-uswest2.s3.us-west-2.amazonaws.com/k", "user name"),
            ("http://127.0.0.1:5000/k", "https"),
            ("file:///etc/passwd", "https"),
            ("not a url", "not a valid URL"),
        ] {
            let err = p.response_url(bad, aws, "us-west-2").unwrap_err().to_string();
            assert!(
                err.contains(want) && err.contains("ResponseURL"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn loopback_http_only_with_the_switch() {
        let on = OutboundPolicy::new(true);
        for ok in [
            "http://127.0.0.1:5000/b/k?x=1",
            "http://localhost:1/k",
            "http://[::1]:9/k",
        ] {
            assert!(
                on.response_url(ok, part("aws"), "us-west-2").is_ok(),
                "{ok}"
            );
            assert!(on.provider_url("PROVIDER_CALLBACK_URL", ok).is_ok(), "{ok}");
        }
        assert!(on
            .response_url("http://10.0.0.1/k", part("aws"), "us-west-2")
            .is_err());
        assert!(on
            .provider_url("PROVIDER_CALLBACK_URL", "http://example.com/hook")
            .is_err());
        let off = OutboundPolicy::new(false);
        assert!(off
            .provider_url("PROVIDER_CALLBACK_URL", "http://127.0.0.1:1/hook")
            .is_err());
        assert!(off
            .provider_url("PROVIDER_CALLBACK_URL", "https://hooks.example.com/x")
            .is_ok());
    }

    #[test]
    fn redaction_drops_the_query_string() {
        let u = Url::parse("https://u:pw@b.s3.amazonaws.com:444/key%2F1?X-Amz-Signature=SECRET#f")
            .unwrap();
        let shown = Redacted(&u).to_string();
        assert_eq!(shown, "https://b.s3.amazonaws.com:444/key%2F1?<redacted>");
    }
}
