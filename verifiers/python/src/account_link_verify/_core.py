"""Every check that needs no network, as link-contract makes them (signing.rs, proof.rs, parts.rs, event.rs)
and in link-receiver's order. Each failure raises VerificationError with link-contract's reason word."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from standardwebhooks.webhooks import Webhook

from . import _partitions

# The reason words (link_contract::reason).
WEBHOOK_ID = "webhook-id"
TIMESTAMP = "timestamp"
SIGNATURE = "signature"
EVENT = "event"
SCHEMA_VERSION = "schema-version"
TIMESTAMP_AHEAD = "timestamp-ahead"
STACK_ID = "stack-id"
STACK_MISMATCH = "stack-mismatch"
LOGICAL_RESOURCE_ID = "logical-resource-id"
LINK_ID = "link-id"
ROLE = "role"
EXTERNAL_ID = "external-id"
VPC_ID = "vpc-id"
REGION = "region"
PART_COUNT = "part-count"
PART_INDEX = "part-index"
PART_SET = "part-set"
PART_SET_SIZE = "part-set-size"
PART_ENVELOPE = "part-envelope"
REASSEMBLY_FULL = "reassembly-full"
PROOF_MISSING = "proof-missing"
PROOF_LENGTH = "proof-length"
PROOF_ENCODING = "proof-encoding"
PROOF_METHOD = "proof-method"
PROOF_SCHEME = "proof-scheme"
PROOF_URL = "proof-url"
PROOF_HOST = "proof-host"
PROOF_PARTITION = "proof-partition"
PROOF_BODY = "proof-body"
PROOF_HEADER = "proof-header"
PROOF_HEADER_VALUE = "proof-header-value"
PROOF_HEADER_MISSING = "proof-header-missing"
PROOF_UNSIGNED_HEADER = "proof-unsigned-header"
PROOF_SIGNED_HEADER_ABSENT = "proof-signed-header-absent"
PROOF_HOST_HEADER = "proof-host-header"
PROOF_CONTENT_TYPE = "proof-content-type"
PROOF_AUTHORIZATION = "proof-authorization"
PROOF_SCOPE = "proof-scope"
PROOF_AUDIENCE = "proof-audience"
PROOF_EVENT_ID = "proof-event-id"
PROOF_BODY_SHA256 = "proof-body-sha256"
PROOF_DATE = "proof-date"
PROOF_AGE = "proof-age"
ACCOUNT_ID = "account-id"
STS_REDIRECT = "sts-redirect"
STS_REFUSED = "sts-refused"
STS_UNAVAILABLE = "sts-unavailable"
STS_ANSWER = "sts-answer"
PROOF_ACCOUNT = "proof-account"
PROOF_CALLER = "proof-caller"
BUSY = "busy"

REASONS = frozenset((
    WEBHOOK_ID, TIMESTAMP, SIGNATURE, EVENT, SCHEMA_VERSION, TIMESTAMP_AHEAD, STACK_ID, STACK_MISMATCH,
    LOGICAL_RESOURCE_ID, LINK_ID, ROLE, EXTERNAL_ID, VPC_ID, REGION, PART_COUNT, PART_INDEX, PART_SET, PART_SET_SIZE,
    PART_ENVELOPE, REASSEMBLY_FULL, PROOF_MISSING, PROOF_LENGTH, PROOF_ENCODING, PROOF_METHOD, PROOF_SCHEME,
    PROOF_URL, PROOF_HOST, PROOF_PARTITION, PROOF_BODY, PROOF_HEADER, PROOF_HEADER_VALUE, PROOF_HEADER_MISSING,
    PROOF_UNSIGNED_HEADER, PROOF_SIGNED_HEADER_ABSENT, PROOF_HOST_HEADER, PROOF_CONTENT_TYPE, PROOF_AUTHORIZATION,
    PROOF_SCOPE, PROOF_AUDIENCE, PROOF_EVENT_ID, PROOF_BODY_SHA256, PROOF_DATE, PROOF_AGE, ACCOUNT_ID,
    STS_REDIRECT, STS_REFUSED, STS_UNAVAILABLE, STS_ANSWER, PROOF_ACCOUNT, PROOF_CALLER, BUSY,
))
RETRYABLE = frozenset((REASSEMBLY_FULL, STS_UNAVAILABLE, BUSY))
#: Claims that name another stack's link or contradict the event's own stack (link_contract::reason::CONFLICTS):
#: refused after the proof, so that the caller STS named is known; link-receiver keeps them apart and answers 409.
CONFLICTS = frozenset((STACK_MISMATCH, LINK_ID))

# Limits (link_contract::signing, proof, parts).
DEFAULT_TOLERANCE = 300
MAX_ID_LEN = 256
MAX_SIGNATURE_CANDIDATES = 8
MAX_SIGNATURE_ENTRIES = 64
MAX_PROOF_LEN = 12 * 1024
MAX_PROOF_AGE = 15 * 60
MAX_PARTS = 64
MAX_SET_BYTES = 16 * 1024 * 1024
SET_LEN = 16
SCHEMA = "1"
MAX_ROLES = 16
MAX_ROLE_KEY_LEN = 64
MAX_REGIONS = 64
MAX_ARN_LEN = 2048

PROOF_HEADER_NAME = "account-link-proof"
SNS_PROOF_ATTRIBUTE = "accountLinkProof"
AUDIENCE_HEADER = "x-account-link-audience"
EVENT_ID_HEADER = "x-account-link-event-id"
BODY_SHA256_HEADER = "x-account-link-body-sha256"
STS_BODY = "Action=GetCallerIdentity&Version=2011-06-15"
_ALLOWED = frozenset((
    "authorization", "host", "content-type", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256",
    AUDIENCE_HEADER, EVENT_ID_HEADER, BODY_SHA256_HEADER,
))
_REQUIRED_SIGNED = ("host", "content-type", "x-amz-date", AUDIENCE_HEADER, EVENT_ID_HEADER, BODY_SHA256_HEADER)
_CONTENT_TYPES = ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=utf-8")


class VerificationError(Exception):
    """A delivery that must not be accepted. `reason` names the failed check (the same words as
    link-contract); `retryable` is true when the same delivery may pass later (answer 503, not 401/400)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retryable = reason in RETRYABLE

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


def fail(reason: str, message: str) -> VerificationError:
    return VerificationError(reason, message)


def shown(s: str, n: int = 120) -> str:
    return s[:n]


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(s: str) -> str:
    return s.translate(_ASCII_LOWER)


def _digits(s: str) -> bool:
    return bool(s) and all("0" <= c <= "9" for c in s)


def is_account_id(s: Any) -> bool:
    return isinstance(s, str) and len(s) == 12 and _digits(s)


# ---------------------------------------------------------------------------------------------------------
# Configuration.

def parse_secrets(secrets: str | Iterable[str] | None) -> list[bytes]:
    """`whsec_<base64>` secrets (a space-separated string or a list): the HMAC keys, 24 to 64 bytes each."""
    if secrets is None:
        return []
    items = secrets.split() if isinstance(secrets, str) else [s for item in secrets for s in item.split()]
    keys = []
    for i, s in enumerate(items, 1):
        if not s.startswith("whsec_"):
            raise ValueError(f"secrets: secret #{i} does not start with whsec_")
        try:
            key = base64.b64decode(s[len("whsec_"):], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"secrets: secret #{i} is not valid base64 after whsec_") from None
        if not 24 <= len(key) <= 64:
            raise ValueError(f"secrets: secret #{i} is {len(key)} bytes long; Standard Webhooks secrets are 24 to 64 bytes")
        keys.append(key)
    return keys


def header_map(headers: Any) -> dict[str, str]:
    """Lowercase names; the first of repeated headers (as link-receiver reads them)."""
    items = headers.items() if hasattr(headers, "items") else headers
    out: dict[str, str] = {}
    for name, value in items:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if value is not None:
            out.setdefault(ascii_lower(name), str(value))
    return out


def body_bytes(body: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8")
    return bytes(body)


# ---------------------------------------------------------------------------------------------------------
# Standard Webhooks headers and signature (link_contract::signing).

_UINT = re.compile(r"\+?[0-9]+")


@dataclass
class Signed:
    id: str
    timestamp: int
    candidates: list[bytes]


def _strict_b64(s: str) -> bytes | None:
    """Canonical, padded standard base64, or None."""
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if base64.b64encode(raw).decode() == s else None


def check_headers(h: Mapping[str, str], *, signed: bool, now: int, tolerance: int) -> Signed:
    msg_id = h.get("webhook-id")
    if not msg_id:
        raise fail(WEBHOOK_ID, "missing webhook-id header")
    if len(msg_id.encode()) > MAX_ID_LEN:
        raise fail(WEBHOOK_ID, f"webhook-id is longer than {MAX_ID_LEN} characters")
    raw = h.get("webhook-timestamp")
    if raw is None:
        raise fail(TIMESTAMP, "missing webhook-timestamp header")
    raw = raw.strip()
    if not _UINT.fullmatch(raw) or int(raw) >= 1 << 64:
        raise fail(TIMESTAMP, "webhook-timestamp is not a Unix timestamp in seconds")
    ts = int(raw)
    skew = abs(now - ts)
    if skew > tolerance:
        raise fail(TIMESTAMP, f"webhook-timestamp is {skew} s away from now, outside the tolerance")
    out = Signed(msg_id, ts, [])
    if not signed:
        return out
    signature = h.get("webhook-signature")
    if signature is None:
        raise fail(SIGNATURE, "missing webhook-signature header")
    for entry in signature.split()[:MAX_SIGNATURE_ENTRIES]:
        # A base64 signature of 32 bytes is 44 characters: nothing longer is decoded.
        if not entry.startswith("v1,") or len(entry) > 3 + 44:
            continue
        candidate = _strict_b64(entry[3:])
        if candidate is not None and len(candidate) == 32:
            out.candidates.append(candidate)
            if len(out.candidates) == MAX_SIGNATURE_CANDIDATES:
                break
    if not out.candidates:
        raise fail(SIGNATURE, "webhook-signature holds no v1 signature of 32 bytes")
    return out


def check_signature(signed: Signed, keys: list[bytes], text: str) -> None:
    """One HMAC per secret (Standard Webhooks' own implementation), compared with every candidate in
    constant time."""
    at = datetime.fromtimestamp(signed.timestamp, tz=timezone.utc)
    for key in keys:
        expected = base64.b64decode(Webhook(key).sign(signed.id, at, text).split(",", 1)[1])
        matched = False
        for candidate in signed.candidates:
            matched |= hmac.compare_digest(expected, candidate)
        if matched:
            return
    raise fail(SIGNATURE, "no signature in webhook-signature matches")


# ---------------------------------------------------------------------------------------------------------
# The event (link_contract::event, as serde reads it; link-receiver's checks of timestamp and link id).

class _Opt:
    """Missing or null: allowed (an Option)."""

    def __init__(self, spec: Any):
        self.spec = spec


class _Default:
    """Missing: allowed; null: not (a field with a default)."""

    def __init__(self, spec: Any):
        self.spec = spec


class _List:
    def __init__(self, spec: Any):
        self.spec = spec


_STR, _BOOL, _U64, _I32, _STRMAP = "a string", "true or false", "a non-negative integer", "a 32-bit integer", "an object of strings"
_TYPES = ("account.linked", "account.updated", "account.unlinked")
_OS = _Opt(_STR)
_LS = _List(_STR)
_ROUTE = {"destination": _OS, "target": _OS, "state": _OS, "origin": _OS}
_ROUTE_TABLE = {"routeTableId": _STR, "name": _OS, "main": _BOOL, "subnetIds": _LS, "routes": _List(_ROUTE)}
_SUBNET = {
    "subnetId": _STR, "name": _OS, "cidrBlock": _OS, "ipv6CidrBlocks": _LS, "availabilityZone": _OS,
    "availabilityZoneId": _OS, "availableIpAddressCount": _Opt(_I32), "mapPublicIpOnLaunch": _BOOL,
    "defaultForAz": _BOOL, "state": _OS,
}
_VPC = {
    "vpcId": _STR, "name": _OS, "cidrBlock": _OS, "cidrBlocks": _LS, "ipv6CidrBlocks": _LS, "isDefault": _BOOL,
    "state": _OS, "ownerId": _OS, "subnets": _List(_SUBNET), "routeTables": _List(_ROUTE_TABLE),
}
_PEERING = {
    "vpcPeeringConnectionId": _STR, "status": _STR, "providerCidr": _STR, "routeTableIds": _LS,
    "requesterVpcId": _OS, "accepterVpcId": _OS,
}
_PROPERTIES = {"regions": _LS, "externalId": _OS, "roles": _STRMAP, "vpcId": _OS, "peering": _Opt(_PEERING)}
_DATA = {
    "schemaVersion": _STR, "eventId": _STR, "accountId": _STR, "partition": _STR, "region": _STR,
    "stackId": _STR, "requestId": _STR, "logicalResourceId": _STR, "physicalResourceId": _STR,
    "externalId": _OS, "roles": _STRMAP, "vpcId": _OS, "peering": _Opt(_PEERING), "regions": _LS,
    "inventoryComplete": _BOOL, "inventory": _List({"region": _STR, "vpcs": _List(_VPC)}),
    "changes": _Opt({"changedProperties": _LS, "previous": _Opt(_PROPERTIES)}),
    "part": _Opt({"index": _U64, "count": _U64, "set": _Default(_STR)}),
}
_EVENT = {"type": _TYPES, "timestamp": _STR, "data": _DATA}


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _unicode(s: str) -> bool:
    return s.isascii() or _SURROGATE.search(s) is None


def _check_shape(value: Any, spec: Any, path: str, repeats: Mapping[int, frozenset]) -> None:
    """`repeats`: the keys each object of the body repeats, by id(); serde refuses a struct's field twice (a map's
    keys and unknown fields may repeat: the last one counts, as json.loads keeps it)."""
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise fail(EVENT, f"{path or 'the body'} must be an object")
        repeated = repeats.get(id(value), frozenset())
        for key, sub in spec.items():
            where = f"{path}.{key}" if path else key
            if key in repeated:
                raise fail(EVENT, f"{where} appears more than once")
            if key not in value:
                if isinstance(sub, (_Opt, _Default)):
                    continue
                raise fail(EVENT, f"{where} is missing")
            _check_shape(value[key], sub, where, repeats)
        return
    if isinstance(spec, _Opt):
        if value is not None:
            _check_shape(value, spec.spec, path, repeats)
        return
    if isinstance(spec, _Default):
        _check_shape(value, spec.spec, path, repeats)
        return
    if isinstance(spec, _List):
        if not isinstance(value, list):
            raise fail(EVENT, f"{path} must be an array")
        for i, item in enumerate(value):
            _check_shape(item, spec.spec, f"{path}[{i}]", repeats)
        return
    if isinstance(spec, tuple):
        if value not in spec:
            raise fail(EVENT, f"{path} must be one of {', '.join(spec)}")
        return
    ok = {
        _STR: lambda v: isinstance(v, str),
        _BOOL: lambda v: isinstance(v, bool),
        _U64: lambda v: _int(v) and 0 <= v < 1 << 64,
        _I32: lambda v: _int(v) and -(1 << 31) <= v < 1 << 31,
        _STRMAP: lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
    }[spec](value)
    if not ok:
        raise fail(EVENT, f"{path} must be {spec}")
    texts = (value,) if spec is _STR else (*value, *value.values()) if spec is _STRMAP else ()
    if not all(_unicode(t) for t in texts):
        # serde_json refuses these in every field it decodes; json.loads keeps them.
        raise fail(EVENT, f"{path} holds a lone UTF-16 surrogate escape, which is not Unicode text")


_RFC3339 = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?(Z|\+00:00)")


def rfc3339_millis(s: str) -> int | None:
    """Unix milliseconds of an RFC 3339 UTC time (a leap second counts as :59, the fraction is truncated, as
    link-receiver reads it), or None."""
    m = _RFC3339.fullmatch(s)
    if not m:
        return None
    y, mo, d, h, mi, se = (int(g) for g in m.groups()[:6])
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    if not (y >= 1970 and 1 <= mo <= 12 and 1 <= d <= days[mo - 1] and h <= 23 and mi <= 59 and se <= 60):
        return None
    millis = int(((m.group(7) or ".")[1:] + "000")[:3])
    secs = _days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + min(se, 59)
    return secs * 1000 + millis


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_event(text: str) -> dict:
    """The body as a link event: JSON, schema version (first: another version may have another shape),
    every field the contract defines with its type, an RFC 3339 UTC timestamp, a link id of 1 to 1024 bytes."""
    repeats: dict[int, frozenset] = {}

    def obj(pairs: list[tuple[str, Any]]) -> dict:
        o = dict(pairs)
        if len(o) != len(pairs):
            seen: set[str] = set()
            repeats[id(o)] = frozenset(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        return o

    try:
        value = json.loads(text, parse_constant=_no_constants, object_pairs_hook=obj)
    except ValueError as e:
        raise fail(EVENT, f"the body is not JSON: {e}") from None
    except RecursionError:
        raise fail(EVENT, "the body is not a link event: it is nested too deeply") from None
    data = value.get("data") if isinstance(value, dict) else None
    version = data.get("schemaVersion") if isinstance(data, dict) else None
    if not isinstance(version, str):
        raise fail(EVENT, "the body is not a link event: it has no data.schemaVersion")
    if version != SCHEMA:
        raise fail(SCHEMA_VERSION, f"data.schemaVersion {shown(version, 16)} is not supported (this verifier reads version {SCHEMA})")
    _check_shape(value, _EVENT, "", repeats)
    if rfc3339_millis(value["timestamp"]) is None:
        raise fail(EVENT, "timestamp is not an RFC 3339 UTC time")
    if not 1 <= len(data["physicalResourceId"].encode()) <= 1024:
        raise fail(EVENT, "data.physicalResourceId must be 1 to 1024 characters")
    return value


def delivery_id(event: Mapping) -> str:
    """`data.eventId`, or for a part `<eventId>-<set>-<index>of<count>`: the delivery's webhook-id."""
    data = event["data"]
    part = data.get("part")
    if part is None:
        return data["eventId"]
    return f"{data['eventId']}-{part.get('set', '')}-{part['index']}of{part['count']}"


def check_part(part: Mapping) -> None:
    """link_contract::parts::check_part: 1 <= index <= count <= 64, a set of 16 lowercase hex digits."""
    index, count, part_set = part.get("index"), part.get("count"), part.get("set", "")
    if not (_int(index) and _int(count)):
        raise fail(EVENT, "data.part.index and data.part.count must be integers")
    if not 1 <= count <= MAX_PARTS:
        raise fail(PART_COUNT, f"data.part.count must be 1 to {MAX_PARTS}, got {count}")
    if not 1 <= index <= count:
        raise fail(PART_INDEX, f"data.part.index must be 1 to data.part.count ({count}), got {index}")
    if not (isinstance(part_set, str) and len(part_set) == SET_LEN and all(c in "0123456789abcdef" for c in part_set)):
        raise fail(PART_SET, f"data.part.set must be {SET_LEN} lowercase hex digits")


def check_not_ahead(event: Mapping, now: int, tolerance: int) -> None:
    """A timestamp from the future would win the ordering against every real event of its link: at most
    `tolerance` seconds ahead of `now` (link-receiver's check)."""
    at = rfc3339_millis(event["timestamp"])
    if at is None:
        raise fail(EVENT, "timestamp is not an RFC 3339 UTC time")
    ahead = at - now * 1000
    if ahead > tolerance * 1000:
        raise fail(TIMESTAMP_AHEAD, f"timestamp {shown(event['timestamp'], 40)} is {ahead // 1000} s ahead of this "
                                    f"verifier's clock (at most {tolerance} s are accepted)")


# ---------------------------------------------------------------------------------------------------------
# The event's claims about itself (link_contract::event::LinkData::check_claims, link_contract::arn).

_ALNUM = re.compile(r"[A-Za-z0-9]+")
_SERVICE = re.compile(r"[a-z0-9-]+")
_ROLE_PATH = re.compile(r"[A-Za-z0-9+=,.@_/-]+")
_EXTERNAL_ID_CHAR = re.compile(r"[A-Za-z0-9_+=,.@:/-]")
_HEX = re.compile(r"[0-9a-f]+")


@dataclass
class Arn:
    """`arn:<partition>:<service>:<region>:<account>:<resource>` with a known partition, a region of it (or
    none) and a 12-digit account (or none): link_contract::arn::Arn."""
    partition: _partitions.Partition
    service: str
    region: str
    account: str
    resource: str

    @staticmethod
    def parse(s: str) -> "Arn | None":
        if len(s.encode()) > MAX_ARN_LEN:
            return None
        fields = s.split(":", 5)
        if len(fields) != 6 or fields[0] != "arn":
            return None
        _, partition, service, region, account, resource = fields
        if not _SERVICE.fullmatch(service) or not resource:
            return None
        p = _partitions.named(partition)
        if p is None or (region and not _partitions.has_region(p, region)) or (account and not is_account_id(account)):
            return None
        return Arn(p, service, region, account, resource)

    def resource_type(self) -> tuple[str, str] | None:
        cut = min((i for i in (self.resource.find("/"), self.resource.find(":")) if i >= 0), default=-1)
        if cut <= 0 or cut == len(self.resource) - 1:
            return None
        return self.resource[:cut], self.resource[cut + 1:]

    def stack(self) -> tuple[str, str] | None:
        kind = self.resource_type()
        if self.service != "cloudformation" or kind is None or kind[0] != "stack":
            return None
        name, slash, stack_id = kind[1].partition("/")
        return (name, stack_id) if slash and name and stack_id and "/" not in stack_id else None

    def role_name(self) -> str | None:
        kind = self.resource_type()
        if self.service != "iam" or kind is None or kind[0] != "role" or self.region or not self.account:
            return None
        path = kind[1]
        name = path.rsplit("/", 1)[-1]
        return name if name and len(name) <= 64 and _ROLE_PATH.fullmatch(path) else None


def link_id(stack_id: str, logical_resource_id: str) -> str:
    """The link id (PhysicalResourceId) the function derives: `link-` and 32 hex digits of SHA-256 over the
    stack id, a newline and the logical id."""
    digest = hashlib.sha256(f"{stack_id}\n{logical_resource_id}".encode()).hexdigest()
    return f"link-{digest[:32]}"


def external_id_problem(value: str) -> str | None:
    """What IAM would refuse in an sts:ExternalId: 2 to 1224 letters, digits and _+=,.@:/-."""
    if not 2 <= len(value) <= 1224:
        return f"is {len(value)} characters long; IAM accepts 2 to 1224"
    bad = next((c for c in value if not _EXTERNAL_ID_CHAR.fullmatch(c)), None)
    return None if bad is None else f"contains {bad!r}; IAM accepts only letters, digits and _+=,.@:/-"


def _is_vpc_id(value: str) -> bool:
    digits = value[len("vpc-"):] if value.startswith("vpc-") else None
    return digits is not None and len(digits) in (8, 17) and bool(_HEX.fullmatch(digits))


def claim_error(data: Mapping) -> VerificationError | None:
    """The first of the event's claims that does not hold, in link-contract's order, or None: the stack ARN
    names data.partition, region and accountId; physicalResourceId is the link id of that stack and
    logicalResourceId; every role is an IAM role of that account and partition; externalId is what IAM
    accepts; vpcId is a VPC id; every region is one of the partition. Returned, not raised: a conflict
    (CONFLICTS) is refused only after the proof."""
    arn = Arn.parse(data["stackId"])
    if arn is None or arn.stack() is None:
        return fail(STACK_ID, "data.stackId is not a CloudFormation stack ARN")
    for field, claimed, in_stack in (("partition", data["partition"], arn.partition.name),
                                     ("region", data["region"], arn.region),
                                     ("accountId", data["accountId"], arn.account)):
        if claimed != in_stack:
            return fail(STACK_MISMATCH, f"data.{field} is '{shown(claimed)}' but data.stackId names '{shown(in_stack)}'")
    logical = data["logicalResourceId"]
    if not (len(logical) <= 255 and _ALNUM.fullmatch(logical)):
        return fail(LOGICAL_RESOURCE_ID, "data.logicalResourceId must be 1 to 255 letters and digits")
    expected = link_id(data["stackId"], logical)
    if data["physicalResourceId"] != expected:
        return fail(LINK_ID, "data.physicalResourceId is not the link id of data.stackId and data.logicalResourceId "
                             f"(expected {expected})")
    roles = data["roles"]
    if len(roles) > MAX_ROLES:
        return fail(ROLE, f"data.roles.*: at most {MAX_ROLES} roles")
    for name in sorted(roles, key=lambda k: k.encode()):
        if not (len(name) <= MAX_ROLE_KEY_LEN and _ALNUM.fullmatch(name)):
            return fail(ROLE, f"data.roles.{shown(name)}: role names are 1 to {MAX_ROLE_KEY_LEN} letters and digits")
        role = Arn.parse(roles[name])
        if (role is None or role.role_name() is None or role.account != data["accountId"]
                or role.partition.name != data["partition"]):
            return fail(ROLE, f"data.roles.{name}: '{shown(roles[name])}' is not an IAM role of account "
                              f"{data['accountId']} in partition {data['partition']}")
    external_id = data.get("externalId")
    problem = external_id_problem(external_id) if external_id is not None else None
    if problem is not None:
        return fail(EXTERNAL_ID, f"data.externalId {problem}")
    vpc_id = data.get("vpcId")
    if vpc_id is not None and not _is_vpc_id(vpc_id):
        return fail(VPC_ID, "data.vpcId is not a VPC id (vpc- and 8 or 17 hex digits)")
    regions = data["regions"]
    if len(regions) > MAX_REGIONS:
        return fail(REGION, f"data.regions[{MAX_REGIONS}]: '({len(regions)} regions)' is not a region of partition "
                            f"{arn.partition.name}")
    for i, region in enumerate(regions):
        if not _partitions.has_region(arn.partition, region):
            return fail(REGION, f"data.regions[{i}]: '{shown(region)}' is not a region of partition {arn.partition.name}")
    return None


# ---------------------------------------------------------------------------------------------------------
# The proof of the account (link_contract::proof::check).

@dataclass
class Expected:
    audience: str
    event_id: str
    body: bytes
    partition: str
    account_id: Any


@dataclass
class Replay:
    """The request to send to STS, exactly as signed."""
    url: str
    host: str
    headers: list[tuple[str, str]]
    access_key_id: str


class _Object(dict):
    duplicated = False


def _pairs(pairs: list[tuple[str, Any]]) -> _Object:
    o = _Object(pairs)
    o.duplicated = len(o) != len(pairs)
    return o


def _b64url(s: str) -> bytes | None:
    """Canonical, unpadded base64url, or None."""
    if len(s) % 4 == 1 or not all(c.isascii() and (c.isalnum() or c in "-_") for c in s):
        return None
    try:
        raw = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if base64.urlsafe_b64encode(raw).decode().rstrip("=") == s else None


def decode_proof(proof: str) -> dict:
    if len(proof.encode()) > MAX_PROOF_LEN:
        raise fail(PROOF_LENGTH, f"the proof is {len(proof.encode())} bytes long; at most {MAX_PROOF_LEN} are accepted")
    text = proof.strip()
    if not text.startswith("v1."):
        raise fail(PROOF_ENCODING, "the proof is not encoded as expected: it does not start with v1.")
    raw = _b64url(text[3:])
    if raw is None:
        raise fail(PROOF_ENCODING, "the proof is not encoded as expected: it is not unpadded base64url after v1.")
    try:
        req = json.loads(raw.decode("utf-8"), object_pairs_hook=_pairs, parse_constant=_no_constants)
    except ValueError:
        req = None
    valid = (isinstance(req, _Object) and not req.duplicated and set(req) == {"method", "url", "headers", "body"}
             and all(isinstance(req[k], str) for k in ("method", "url", "body")) and isinstance(req["headers"], dict)
             and all(isinstance(v, str) for v in req["headers"].values()))
    if not valid:
        raise fail(PROOF_ENCODING, "the proof is not encoded as expected: it is not the JSON object {method, url, headers, body}")
    return req


def _url_host(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise fail(PROOF_URL, "the proof's URL must be https://<STS host>/ with no port, user, path, query or fragment")
    if not (scheme.isascii() and ascii_lower(scheme) == "https"):
        raise fail(PROOF_SCHEME, f"the proof's URL must use https, not {shown(scheme)}")
    host = rest[:-1] if rest.endswith("/") else None
    if not host or len(host) > 253 or not all(c in "abcdefghijklmnopqrstuvwxyz0123456789.-" for c in host):
        # Ports, user info, paths, queries, fragments and uppercase all end up here.
        raise fail(PROOF_URL, "the proof's URL must be https://<STS host>/ with no port, user, path, query or fragment")
    return host


@dataclass
class _Authorization:
    access_key_id: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: list[str]


def _parse_authorization(value: str) -> _Authorization:
    def bad(why: str) -> VerificationError:
        return fail(PROOF_AUTHORIZATION, "the proof's Authorization header is not AWS4-HMAC-SHA256 with Credential, "
                                         f"SignedHeaders and Signature: {why}")
    if not value.startswith("AWS4-HMAC-SHA256 "):
        raise bad("not AWS4-HMAC-SHA256")
    parts: dict[str, str] = {}
    for part in value[len("AWS4-HMAC-SHA256 "):].split(","):
        key, eq, v = part.strip().partition("=")
        if not eq:
            raise bad("a part is not key=value")
        if key not in ("Credential", "SignedHeaders", "Signature"):
            raise bad("unknown part")
        if key in parts:
            raise bad("a part is repeated")
        parts[key] = v
    if len(parts) != 3:
        raise bad("a part is missing")
    signature = parts["Signature"]
    if len(signature) != 64 or not all(c in "0123456789abcdefABCDEF" for c in signature):
        raise bad("Signature is not 64 hex digits")
    scope = parts["Credential"].split("/")
    if len(scope) != 5:
        raise bad("Credential is not AKID/date/region/service/aws4_request")
    akid = scope[0]
    if not akid or not all(c.isascii() and c.isalnum() for c in akid):
        raise bad("the access key id is malformed")
    signed = parts["SignedHeaders"].split(";")
    if any(not h or any("A" <= c <= "Z" for c in h) for h in signed):
        raise bad("SignedHeaders must be lowercase names separated by ;")
    return _Authorization(akid, scope[1], scope[2], scope[3], scope[4], signed)


def _days_from_civil(y: int, m: int, d: int) -> int:
    y = y - 1 if m <= 2 else y
    era = y // 400
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def parse_amz_date(s: str) -> int:
    """`20261123T120000Z` as Unix seconds (link-contract's rules: days up to 31 in any month)."""
    bad = fail(PROOF_DATE, "the proof's X-Amz-Date is not YYYYMMDDTHHMMSSZ")
    if len(s) != 16 or s[8] != "T" or s[15] != "Z" or not _digits(s[:8] + s[9:15]):
        raise bad
    y, mo, d, h, mi, se = int(s[0:4]), int(s[4:6]), int(s[6:8]), int(s[9:11]), int(s[11:13]), int(s[13:15])
    if not (1970 <= y <= 9999 and 1 <= mo <= 12 and 1 <= d <= 31 and h <= 23 and mi <= 59 and se <= 60):
        raise bad
    return _days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se


def check_proof(proof: str, expected: Expected, now: int) -> Replay:
    """Refuses anything but a fresh POST https://<STS endpoint of the event's partition>/ with exactly the
    GetCallerIdentity body, whose binding headers are present, signed and equal to what is expected."""
    if not is_account_id(expected.account_id):
        raise fail(ACCOUNT_ID, f"the event's accountId '{shown(str(expected.account_id), 40)}' is not a 12-digit account id")
    req = decode_proof(proof)
    if req["method"] != "POST":
        raise fail(PROOF_METHOD, f"the proof's method is {shown(req['method'], 16)}; only POST is accepted")
    host = _url_host(req["url"])
    endpoint = _partitions.sts_endpoint(host)
    if endpoint is None:
        raise fail(PROOF_HOST, f"the proof names host {shown(host)}, which is not an STS endpoint (global, regional or FIPS) of an AWS partition")
    partition, signing_region = endpoint
    if partition.name != expected.partition:
        raise fail(PROOF_PARTITION, f"the proof names {host}, an STS endpoint of partition {partition.name}, "
                                    f"but the event is from partition {shown(str(expected.partition))}")
    if req["body"] != STS_BODY:
        raise fail(PROOF_BODY, f"the proof's body must be exactly {STS_BODY}")
    headers: dict[str, str] = {}
    for name in sorted(req["headers"]):
        value = req["headers"][name]
        lower = ascii_lower(name)
        if lower not in _ALLOWED:
            raise fail(PROOF_HEADER, f"the proof carries header {shown(name)}, which a GetCallerIdentity proof may not carry")
        if not value or not all(" " <= c <= "~" for c in value) or lower in headers:
            raise fail(PROOF_HEADER_VALUE, f"the proof's header {lower} has an invalid value")
        headers[lower] = value
    if "authorization" not in headers:
        raise fail(PROOF_HEADER_MISSING, "the proof has no authorization header")
    auth = _parse_authorization(headers["authorization"])
    for name in _REQUIRED_SIGNED:
        if name not in headers:
            raise fail(PROOF_HEADER_MISSING, f"the proof has no {name} header")
    for name in sorted(headers):
        if name != "authorization" and name not in auth.signed_headers:
            raise fail(PROOF_UNSIGNED_HEADER, f"the proof's header {name} is not signed (not listed in SignedHeaders)")
    for name in auth.signed_headers:
        if name not in headers:
            raise fail(PROOF_SIGNED_HEADER_ABSENT, f"the proof's SignedHeaders lists {shown(name)}, which the proof does not carry")
    if headers["host"] != host:
        raise fail(PROOF_HOST_HEADER, f"the proof's host header {shown(headers['host'])} differs from its URL's host {host}")
    if ascii_lower(headers["content-type"]) not in _CONTENT_TYPES:
        raise fail(PROOF_CONTENT_TYPE, "the proof's content-type must be application/x-www-form-urlencoded")
    if headers[AUDIENCE_HEADER] != expected.audience:
        raise fail(PROOF_AUDIENCE, f"the proof is for audience '{shown(headers[AUDIENCE_HEADER])}', not this receiver's '{shown(expected.audience)}'")
    if headers[EVENT_ID_HEADER] != expected.event_id:
        raise fail(PROOF_EVENT_ID, f"the proof is for event id '{shown(headers[EVENT_ID_HEADER])}', not this delivery's '{shown(expected.event_id)}'")
    digest = hashlib.sha256(expected.body).hexdigest()
    if ascii_lower(headers[BODY_SHA256_HEADER]) != digest:
        raise fail(PROOF_BODY_SHA256, f"the proof is for a body whose SHA-256 is {shown(headers[BODY_SHA256_HEADER])}, not this delivery's {digest}")
    amz_date = headers["x-amz-date"]
    skew = abs(now - parse_amz_date(amz_date))
    if skew > MAX_PROOF_AGE:
        raise fail(PROOF_AGE, f"the proof was signed {skew} s away from now; at most {MAX_PROOF_AGE} s are accepted")
    for what, got, want in (("date", auth.date, amz_date[:8]), ("region", auth.region, signing_region),
                            ("service", auth.service, "sts"), ("terminator", auth.terminator, "aws4_request")):
        if got != want:
            raise fail(PROOF_SCOPE, f"the proof's credential scope names {what} {shown(got)}, expected {want}")
    return Replay(
        url=f"https://{host}/",
        host=host,
        headers=[(n, v) for n, v in sorted(headers.items()) if n != "host"],
        access_key_id=auth.access_key_id,
    )


# ---------------------------------------------------------------------------------------------------------
# STS's answer (link_contract::proof::{parse_caller_identity, parse_sts_error, check_caller}).

@dataclass(frozen=True)
class Caller:
    """The caller STS names for a verified proof: record `arn` with the link."""
    account_id: str
    arn: str
    role_name: str
    session_name: str


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml_fields(xml: bytes, paths: list[tuple[str, ...]]) -> list[str | None]:
    """The text directly inside the elements at each path of local names from the root (concatenated)."""
    if b"<!DOCTYPE" in xml.upper() or b"<!ENTITY" in xml.upper():
        raise fail(STS_ANSWER, "STS's answer could not be read: it declares a DTD")
    try:
        root = ET.fromstring(xml.decode("utf-8"))
    except (UnicodeDecodeError, ET.ParseError):
        raise fail(STS_ANSWER, "STS's answer could not be read: it is not well-formed XML") from None
    out: list[str | None] = [None] * len(paths)
    stack = [(root, (_local(root.tag),))]
    while stack:
        elem, path = stack.pop()
        if len(path) > 16:
            raise fail(STS_ANSWER, "STS's answer could not be read: it is nested too deeply")
        if path in paths:
            i = paths.index(path)
            text = (elem.text or "") + "".join(c.tail or "" for c in elem)
            out[i] = (out[i] or "") + text
        stack.extend((c, path + (_local(c.tag),)) for c in reversed(list(elem)))
    return out


def parse_sts_error(xml: bytes) -> tuple[str, str] | None:
    try:
        code, message = _xml_fields(xml, [("ErrorResponse", "Error", "Code"), ("ErrorResponse", "Error", "Message")])
    except VerificationError:
        return None
    return (code, message or "") if code is not None else None


def parse_caller_identity(xml: bytes) -> tuple[str, str]:
    r = ("GetCallerIdentityResponse", "GetCallerIdentityResult")
    account, arn = _xml_fields(xml, [r + ("Account",), r + ("Arn",)])
    if account is None or arn is None:
        raise fail(STS_ANSWER, "STS's answer could not be read: it has no GetCallerIdentityResult with Account and Arn")
    return account.strip(), arn.strip()


def _assumed_role(arn: str) -> tuple[str, str, str, str] | None:
    """`(partition, account, role, session)` of `arn:<partition>:sts::<account>:assumed-role/<role>/<session>`
    (link_contract::arn::Arn::parse and assumed_role)."""
    if len(arn) > 2048:
        return None
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return None
    _, partition, service, region, account, resource = parts
    if not service or not all(c in "abcdefghijklmnopqrstuvwxyz0123456789-" for c in service) or not resource:
        return None
    p = _partitions.named(partition)
    if p is None or (region and not _partitions.has_region(p, region)) or (account and not is_account_id(account)):
        return None
    cut = min((i for i in (resource.find("/"), resource.find(":")) if i >= 0), default=-1)
    kind, rest = (resource[:cut], resource[cut + 1:]) if cut >= 0 else ("", "")
    if service != "sts" or kind != "assumed-role" or not rest or not account:
        return None
    role, slash, session = rest.partition("/")
    if not slash or not role or not session:
        return None
    return partition, account, role, session


def check_caller(account: str, arn: str, expected: Expected) -> Caller:
    if account != expected.account_id:
        raise fail(PROOF_ACCOUNT, f"STS says the proof was signed by account {shown(account)}, but the event claims account {shown(str(expected.account_id))}")
    role = _assumed_role(arn)
    if role is None or role[1] != expected.account_id or role[0] != expected.partition:
        raise fail(PROOF_CALLER, f"STS says the proof was signed by {shown(arn)}, which is not an assumed-role session of the event's account and partition")
    return Caller(account, arn, role[2], role[3])
