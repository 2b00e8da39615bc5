"""The AWS partitions and the regions that exist in each: which hosts are STS endpoints a proof may name.

The same table as link-contract's (crates/link-contract/src/partition.rs and regions.rs, from botocore's
endpoint data); the tests compare every STS host it accepts with verifiers/vectors.json's stsEndpoints.
"""

from __future__ import annotations

from typing import NamedTuple


class Partition(NamedTuple):
    name: str
    dns_suffix: str
    global_region: str
    region_prefix: str
    global_sts_host: str | None
    fips: bool


# `aws` (no region prefix) is last so that the prefixed ones match first.
PARTITIONS: tuple[Partition, ...] = (
    Partition("aws-cn", "amazonaws.com.cn", "cn-north-1", "cn-", None, False),
    Partition("aws-us-gov", "amazonaws.com", "us-gov-west-1", "us-gov-", None, True),
    Partition("aws-iso-b", "sc2s.sgov.gov", "us-isob-east-1", "us-isob-", None, False),
    Partition("aws-iso-f", "csp.hci.ic.gov", "us-isof-south-1", "us-isof-", None, False),
    Partition("aws-iso", "c2s.ic.gov", "us-iso-east-1", "us-iso-", None, False),
    Partition("aws-iso-e", "cloud.adc-e.uk", "eu-isoe-west-1", "eu-isoe-", None, False),
    Partition("aws-eusc", "amazonaws.eu", "eusc-de-east-1", "eusc-", None, False),
    Partition("aws", "amazonaws.com", "us-east-1", "", "sts.amazonaws.com", True),
)

REGIONS: dict[str, frozenset[str]] = {
    "aws": frozenset((
        "af-south-1", "ap-east-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1",
        "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5",
        "ap-southeast-7", "ca-central-1", "ca-west-1", "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1",
        "eu-south-2", "eu-west-1", "eu-west-2", "eu-west-3", "il-central-1", "me-central-1", "me-south-1",
        "mx-central-1", "sa-east-1", "us-east-1", "us-east-2", "us-west-1", "us-west-2",
    )),
    "aws-cn": frozenset(("cn-north-1", "cn-northwest-1")),
    "aws-iso": frozenset(("us-iso-east-1", "us-iso-west-1")),
    "aws-iso-b": frozenset(("us-isob-east-1",)),
    "aws-iso-e": frozenset(("eu-isoe-west-1",)),
    "aws-iso-f": frozenset(),
    "aws-us-gov": frozenset(("us-gov-east-1", "us-gov-west-1")),
}

_BY_NAME = {p.name: p for p in PARTITIONS}


def named(name: str) -> Partition | None:
    return _BY_NAME.get(name)


def of_region(region: str) -> Partition:
    return next(p for p in PARTITIONS if region.startswith(p.region_prefix))


def _lower_word(w: str) -> bool:
    return bool(w) and all("a" <= c <= "z" for c in w)


def is_region_name(s: str) -> bool:
    """`eu-west-1`, `us-gov-west-1`: lowercase words and a number of one or two digits."""
    parts = s.split("-")
    number, words = parts[-1], parts[:-1]
    return (3 <= len(parts) <= 5 and len(s) <= 30 and all(_lower_word(w) for w in words)
            and 1 <= len(number) <= 2 and all("0" <= c <= "9" for c in number))


def has_region(partition: Partition, region: str) -> bool:
    return is_region_name(region) and of_region(region).name == partition.name


def sts_endpoint(host: str) -> tuple[Partition, str] | None:
    """The partition and signing region of an STS endpoint: the global one, or a regional or FIPS one of a
    region that exists. None for every other host."""
    for p in PARTITIONS:
        if p.global_sts_host == host:
            return p, p.global_region
    if host.startswith("sts-fips."):
        fips, rest = True, host[len("sts-fips."):]
    elif host.startswith("sts."):
        fips, rest = False, host[len("sts."):]
    else:
        return None
    region, dot, suffix = rest.partition(".")
    if not dot:
        return None
    p = of_region(region)
    if (is_region_name(region) and region in REGIONS.get(p.name, ()) and p.dns_suffix == suffix
            and (not fips or p.fips)):
        return p, region
    return None
