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
}

const fn p(
    name: &'static str,
    dns_suffix: &'static str,
    console_host: Option<&'static str>,
    global_region: &'static str,
    region_prefix: &'static str,
) -> Partition {
    Partition {
        name,
        dns_suffix,
        console_host,
        global_region,
        region_prefix,
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
    ),
    p(
        "aws-us-gov",
        "amazonaws.com",
        Some("console.amazonaws-us-gov.com"),
        "us-gov-west-1",
        "us-gov-",
    ),
    p(
        "aws-iso-b",
        "sc2s.sgov.gov",
        None,
        "us-isob-east-1",
        "us-isob-",
    ),
    p(
        "aws-iso-f",
        "csp.hci.ic.gov",
        None,
        "us-isof-south-1",
        "us-isof-",
    ),
    p("aws-iso", "c2s.ic.gov", None, "us-iso-east-1", "us-iso-"),
    p(
        "aws-iso-e",
        "cloud.adc-e.uk",
        None,
        "eu-isoe-west-1",
        "eu-isoe-",
    ),
    p("aws-eusc", "amazonaws.eu", None, "eusc-de-east-1", "eusc-"),
    p(
        "aws",
        "amazonaws.com",
        Some("console.aws.amazon.com"),
        "us-east-1",
        "",
    ),
];

impl Partition {
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

    /// Whether `region` is a region of this partition.
    pub fn has_region(&self, region: &str) -> bool {
        is_region_name(region) && Self::of_region(region).name == self.name
    }
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
            Partition::of_region("eu-west-1").console_host_for("eu-west-1").as_deref(),
            Some("eu-west-1.console.aws.amazon.com")
        );
        assert_eq!(
            Partition::of_region("cn-north-1").console_host_for("cn-north-1").as_deref(),
            Some("console.amazonaws.cn")
        );
        assert_eq!(Partition::of_region("us-isob-east-1").console_host_for("us-isob-east-1"), None);
        assert!(Partition::named("aws-moon").is_none());
        for p in PARTITIONS {
            assert_eq!(Partition::of_region(p.global_region).name, p.name);
        }
    }
}
