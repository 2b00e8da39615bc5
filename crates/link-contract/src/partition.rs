//! The AWS partitions: which regions belong to each, the DNS suffix of its service endpoints and its
//! console. One table, used by the function (which regions and hosts it may use), the registry (which STS
//! hosts a proof may name) and the console (the quick-create link).

/// One AWS partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// As in ARNs: `aws`, `aws-cn`, `aws-us-gov`, ...
    pub name: &'static str,
    /// Service endpoints are `<service>.<region>.<dns_suffix>`.
    pub dns_suffix: &'static str,
    /// The AWS console's host, where the partition has a public one.
    pub console_host: Option<&'static str>,
    /// The region the partition's global endpoints (IAM, the global STS endpoint) sign for.
    pub global_region: &'static str,
    region_prefix: &'static str,
    /// The partition-wide STS endpoint, where there is one besides the regional ones.
    global_sts_host: Option<&'static str>,
    /// Whether the partition has FIPS endpoints (`sts-fips.<region>`, `s3-fips.<region>`).
    fips: bool,
}

const fn p(
    name: &'static str,
    dns_suffix: &'static str,
    console_host: Option<&'static str>,
    global_region: &'static str,
    region_prefix: &'static str,
    global_sts_host: Option<&'static str>,
    fips: bool,
) -> Partition {
    Partition {
        name,
        dns_suffix,
        console_host,
        global_region,
        region_prefix,
        global_sts_host,
        fips,
    }
}

/// Every partition; `aws` (no region prefix) is last so that the prefixed ones match first.
const PARTITIONS: &[Partition] = &[
    p(
        "aws-cn",
        "amazonaws.com.cn",
        Some("console.amazonaws.cn"),
        "cn-north-1",
        "cn-",
        None,
        false,
    ),
    p(
        "aws-us-gov",
        "amazonaws.com",
        Some("console.amazonaws-us-gov.com"),
        "us-gov-west-1",
        "us-gov-",
        None,
        true,
    ),
    p(
        "aws-iso-b",
        "sc2s.sgov.gov",
        None,
        "us-isob-east-1",
        "us-isob-",
        None,
        false,
    ),
    p(
        "aws-iso-f",
        "csp.hci.ic.gov",
        None,
        "us-isof-south-1",
        "us-isof-",
        None,
        false,
    ),
    p(
        "aws-iso",
        "c2s.ic.gov",
        None,
        "us-iso-east-1",
        "us-iso-",
        None,
        false,
    ),
    p(
        "aws-iso-e",
        "cloud.adc-e.uk",
        None,
        "eu-isoe-west-1",
        "eu-isoe-",
        None,
        false,
    ),
    p(
        "aws-eusc",
        "amazonaws.eu",
        None,
        "eusc-de-east-1",
        "eusc-",
        None,
        false,
    ),
    p(
        "aws",
        "amazonaws.com",
        Some("console.aws.amazon.com"),
        "us-east-1",
        "",
        Some("sts.amazonaws.com"),
        true,
    ),
];

impl Partition {
    /// Every partition (for tools that export the table, such as the verifiers' test vectors).
    pub fn all() -> &'static [Partition] {
        PARTITIONS
    }

    /// The regions of this partition that exist, sorted ([`Self::region_exists`]).
    pub fn regions(&self) -> &'static [&'static str] {
        crate::regions::REGIONS
            .iter()
            .find(|(name, _)| *name == self.name)
            .map_or(&[], |(_, regions)| regions)
    }

    /// The partition named `name` (as in an ARN).
    pub fn named(name: &str) -> Option<&'static Partition> {
        PARTITIONS.iter().find(|p| p.name == name)
    }

    /// The partition a region name belongs to.
    pub fn of_region(region: &str) -> &'static Partition {
        PARTITIONS
            .iter()
            .find(|p| region.starts_with(p.region_prefix))
            .expect("the aws partition matches every region")
    }

    /// Every partition's DNS suffix (several partitions share one).
    pub fn dns_suffixes() -> impl Iterator<Item = &'static str> {
        PARTITIONS.iter().map(|p| p.dns_suffix)
    }

    /// The AWS console host that serves `region` (the `aws` partition has one per region), where the
    /// partition has a public console.
    pub fn console_host_for(&self, region: &str) -> Option<String> {
        self.console_host.map(|host| match self.name {
            "aws" => format!("{region}.{host}"),
            _ => host.to_string(),
        })
    }

    /// Whether `region` is named like a region of this partition (a region launched after this release
    /// included: the function lists what the customer asks for and lets EC2 say whether it exists).
    pub fn has_region(&self, region: &str) -> bool {
        is_region_name(region) && Self::of_region(region).name == self.name
    }

    /// Whether `region` is a region of this partition that exists, by the SDKs' endpoint data
    /// ([`crate::regions`], from botocore). The registry sends proofs only to STS endpoints of these.
    pub fn region_exists(&self, region: &str) -> bool {
        self.regions().binary_search(&region).is_ok()
    }
}

impl Partition {
    /// The regional STS endpoint, `sts.<region>.<dns suffix>`: where the function signs its proof of
    /// the account for (the stack's own region).
    pub fn sts_host(&self, region: &str) -> String {
        format!("sts.{region}.{}", self.dns_suffix)
    }

    /// The hosts of the S3 endpoints that serve buckets of `region`: regional (`s3.<region>`), legacy
    /// (`s3-<region>`), dual-stack and, where the partition has them, FIPS forms; in `aws` also the
    /// global ones (`s3.amazonaws.com`, and `s3-external-1` for us-east-1). Both virtual-hosted
    /// (`<bucket>.<host>`) and path-style (`<host>/<bucket>`) URLs use these hosts.
    pub fn s3_hosts(&self, region: &str) -> Vec<String> {
        let sfx = self.dns_suffix;
        let mut hosts = vec![
            format!("s3.{region}.{sfx}"),
            format!("s3-{region}.{sfx}"),
            format!("s3.dualstack.{region}.{sfx}"),
        ];
        if self.fips {
            hosts.push(format!("s3-fips.{region}.{sfx}"));
            hosts.push(format!("s3-fips.dualstack.{region}.{sfx}"));
        }
        if self.global_sts_host.is_some() {
            // The partition-wide endpoints route any bucket to its region.
            hosts.push(format!("s3.{sfx}"));
            if region == self.global_region {
                hosts.push(format!("s3-external-1.{sfx}"));
            }
        }
        hosts
    }
}

/// An STS endpoint a proof of the account may name, and the region a request to it is signed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsEndpoint {
    pub partition: &'static Partition,
    /// The credential scope's region: the endpoint's region, or the partition's global region for the
    /// global endpoint.
    pub signing_region: String,
}

/// The STS endpoint `host` is, if it is one: the global endpoint (`sts.amazonaws.com`), a regional one
/// (`sts.<region>.<dns suffix>`) or a FIPS one (`sts-fips.<region>.<dns suffix>`) of a known partition,
/// with a region that exists in that partition ([`Partition::region_exists`]): a well-formed name is not
/// enough (`sts.zz-fake-9.amazonaws.com`). Nothing else is an STS endpoint (a receiver sends proofs
/// nowhere else).
pub fn sts_endpoint(host: &str) -> Option<StsEndpoint> {
    if let Some(p) = PARTITIONS.iter().find(|p| p.global_sts_host == Some(host)) {
        return Some(StsEndpoint {
            partition: p,
            signing_region: p.global_region.to_string(),
        });
    }
    let (fips, rest) = match host.strip_prefix("sts-fips.") {
        Some(rest) => (true, rest),
        None => (false, host.strip_prefix("sts.")?),
    };
    let (region, suffix) = rest.split_once('.')?;
    let partition = Partition::of_region(region);
    (is_region_name(region)
        && partition.region_exists(region)
        && partition.dns_suffix == suffix
        && (!fips || partition.fips))
        .then(|| StsEndpoint {
            partition,
            signing_region: region.to_string(),
        })
}

/// `eu-west-1`, `us-gov-west-1`, `ap-southeast-5`, `us-isob-east-1`: lowercase words and a number.
pub fn is_region_name(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let Some((number, words)) = parts.split_last() else {
        return false;
    };
    (3..=5).contains(&parts.len())
        && s.len() <= 30
        && words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        && (1..=2).contains(&number.len())
        && number.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_names() {
        for r in [
            "us-east-1",
            "us-gov-west-1",
            "ap-southeast-5",
            "il-central-1",
            "us-isob-east-1",
            "eusc-de-east-1",
        ] {
            assert!(is_region_name(r), "{r}");
        }
        for r in [
            "us-east",
            "US-EAST-1",
            "us_east_1",
            "us-east-1a",
            "-1",
            "us--1",
            "",
            "a-b-c-d-e-1",
        ] {
            assert!(!is_region_name(r), "{r}");
        }
    }

    #[test]
    fn regions_map_to_their_partition() {
        for (region, partition) in [
            ("us-gov-east-1", "aws-us-gov"),
            ("cn-northwest-1", "aws-cn"),
            ("eu-central-1", "aws"),
            ("us-isob-east-1", "aws-iso-b"),
            ("us-iso-east-1", "aws-iso"),
            ("us-isof-south-1", "aws-iso-f"),
            ("eu-isoe-west-1", "aws-iso-e"),
            ("eusc-de-east-1", "aws-eusc"),
        ] {
            assert_eq!(Partition::of_region(region).name, partition, "{region}");
            assert!(Partition::named(partition).unwrap().has_region(region));
        }
        assert!(!Partition::named("aws").unwrap().has_region("cn-north-1"));
        assert_eq!(
            Partition::of_region("eu-west-1")
                .console_host_for("eu-west-1")
                .as_deref(),
            Some("eu-west-1.console.aws.amazon.com")
        );
        assert_eq!(
            Partition::of_region("cn-north-1")
                .console_host_for("cn-north-1")
                .as_deref(),
            Some("console.amazonaws.cn")
        );
        assert_eq!(
            Partition::of_region("us-isob-east-1").console_host_for("us-isob-east-1"),
            None
        );
        assert!(Partition::named("aws-moon").is_none());
        for p in PARTITIONS {
            assert_eq!(Partition::of_region(p.global_region).name, p.name);
        }
    }
    #[test]
    fn sts_endpoints() {
        for (host, partition, region) in [
            ("sts.amazonaws.com", "aws", "us-east-1"),
            ("sts.eu-west-1.amazonaws.com", "aws", "eu-west-1"),
            ("sts-fips.us-east-2.amazonaws.com", "aws", "us-east-2"),
            (
                "sts.us-gov-west-1.amazonaws.com",
                "aws-us-gov",
                "us-gov-west-1",
            ),
            (
                "sts-fips.us-gov-east-1.amazonaws.com",
                "aws-us-gov",
                "us-gov-east-1",
            ),
            ("sts.cn-north-1.amazonaws.com.cn", "aws-cn", "cn-north-1"),
            ("sts.us-iso-east-1.c2s.ic.gov", "aws-iso", "us-iso-east-1"),
        ] {
            let e = sts_endpoint(host).unwrap_or_else(|| panic!("{host}"));
            assert_eq!(
                (e.partition.name, e.signing_region.as_str()),
                (partition, region)
            );
            assert_eq!(
                Partition::named(partition).unwrap().sts_host(region) == host,
                !host.starts_with("sts-fips") && host != "sts.amazonaws.com"
            );
        }
        for host in [
            "sts.amazonaws.com.cn",
            "sts.us-east-1.amazonaws.com.cn",
            "sts.cn-north-1.amazonaws.com",
            "sts-fips.cn-north-1.amazonaws.com.cn",
            "sts.eu-west-1.amazonaws.com.evil.example",
            "evil.example",
            "sts.evil.example",
            "iam.amazonaws.com",
            "sts.eu-west-1.amazonaws.com:8443",
            "x.sts.eu-west-1.amazonaws.com",
            "sts.EU-WEST-1.amazonaws.com",
            "sts..amazonaws.com",
            // Well-formed, in no partition's region list.
            "sts.zz-fake-9.amazonaws.com",
            "sts.us-east-9.amazonaws.com",
            "sts-fips.us-gov-north-7.amazonaws.com",
            "sts.cn-south-5.amazonaws.com.cn",
            "127.0.0.1",
            "",
        ] {
            assert!(sts_endpoint(host).is_none(), "{host}");
        }
    }

    #[test]
    fn the_region_table_is_sorted_and_names_known_partitions() {
        for (name, regions) in crate::regions::REGIONS {
            let partition = Partition::named(name).unwrap_or_else(|| panic!("{name}"));
            assert!(regions.windows(2).all(|w| w[0] < w[1]), "{name}");
            for r in *regions {
                assert!(partition.has_region(r) && partition.region_exists(r), "{r}");
            }
        }
        let aws = Partition::named("aws").unwrap();
        assert!(aws.region_exists("eu-west-1") && !aws.region_exists("eu-west-9"));
        assert!(!aws.region_exists("cn-north-1"));
    }

    #[test]
    fn s3_hosts_per_partition() {
        let aws = Partition::named("aws").unwrap();
        let east = aws.s3_hosts("us-east-1");
        assert!(east.contains(&"s3.amazonaws.com".to_string()));
        assert!(east.contains(&"s3-external-1.amazonaws.com".to_string()));
        assert!(!aws
            .s3_hosts("eu-west-1")
            .contains(&"s3-external-1.amazonaws.com".to_string()));
        let cn = Partition::named("aws-cn").unwrap().s3_hosts("cn-north-1");
        assert!(cn.contains(&"s3.cn-north-1.amazonaws.com.cn".to_string()));
        assert!(!cn
            .iter()
            .any(|h| h == "s3.amazonaws.com.cn" || h.contains("fips")));
    }
}
