"""Verify account-link deliveries in Python, with the same checks and reason words as link-receiver.

    from account_link_verify import verify, VerificationError

    try:
        event = verify(request_headers, raw_body, secrets="whsec_...", audience="https://hooks.example.com")
    except VerificationError as e:
        status = 503 if e.retryable else 401   # e.reason names the check: "signature", "proof-audience", ...

A callback delivery is checked in link-receiver's order: the Standard Webhooks headers (webhook-id,
the timestamp window, the signature's syntax), the proof's presence, the signature (one HMAC per secret,
compared in constant time), the event (JSON, schema version, every field's type, webhook-id = its
delivery id, a timestamp not ahead of the clock, the part's bounds, its claims about its stack, link id,
roles, external id, VPC and regions), the proof of the account without I/O (an STS endpoint of the event's
partition, https, POST /, the GetCallerIdentity body, every header signed, the bindings to audience,
delivery id and body, the signing date and scope), one request to STS (no redirects), whose answer must
name data.accountId and an assumed-role session of it, and last the claims that name another stack's link
(`link-id`, `stack-mismatch`: link-receiver answers those 409, once it knows who sent them).
See docs/provider-events.md.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Mapping, NamedTuple

import httpx

from . import _core, _sts
from ._core import (
    CONFLICTS,
    DEFAULT_TOLERANCE,
    PROOF_HEADER_NAME,
    PROOF_MISSING,
    REASONS,
    RETRYABLE,
    SNS_PROOF_ATTRIBUTE,
    Caller,
    VerificationError,
    delivery_id,
    link_id,
)
from ._reassembly import ENVELOPE_FIELDS, Reassembler

__all__ = [
    "verify", "verify_async", "verify_sns", "verify_sns_async", "VerifiedEvent", "Caller", "VerificationError",
    "Reassembler", "REASONS", "RETRYABLE", "CONFLICTS", "ENVELOPE_FIELDS", "MODES", "delivery_id", "link_id",
]
__version__ = "0.1.0"

#: `ProviderAuthMode`: what a delivery must carry.
MODES = ("hmac-and-proof", "proof-only", "hmac-only")

Body = bytes | bytearray | memoryview | str


class VerifiedEvent(dict):
    """The verified event (a dict of its JSON), with `delivery_id` (its webhook-id) and `caller` (what STS
    named, or None when the mode checks no proof)."""

    delivery_id: str
    caller: Caller | None

    def __init__(self, event: Mapping, delivery: str, caller: Caller | None):
        super().__init__(event)
        self.delivery_id = delivery
        self.caller = caller


class _Config:
    def __init__(self, secrets: str | Iterable[str] | None, audience: str | None, mode: str,
                 sts_endpoint: str | None, tolerance: int):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.hmac = mode != "proof-only"
        self.proof = mode != "hmac-only"
        self.keys = _core.parse_secrets(secrets) if self.hmac else []
        if self.hmac and not self.keys:
            raise ValueError(f"secrets: mode {mode} needs the whsec_... secret(s)")
        if self.proof and not audience:
            raise ValueError(f"audience: mode {mode} needs this receiver's audience (e.g. https://hooks.example.com)")
        self.audience = audience or ""
        self.endpoint = _sts.check_endpoint(sts_endpoint)
        self.tolerance = int(tolerance)


def _now(now: float | None) -> int:
    return int(time.time() if now is None else now)


class _Checked(NamedTuple):
    """What the checks without I/O found: the event, its delivery id, the proof to send to STS (or None), and
    a conflicting claim to raise once STS answered (or None)."""
    event: dict
    delivery: str
    proof: tuple[_core.Replay, _core.Expected] | None
    conflict: VerificationError | None


def _check_event(event: dict, now: int, tolerance: int) -> VerificationError | None:
    """After the delivery id: the timestamp, the part's bounds, the claims (a conflict is returned, to be
    raised after the proof, as link-receiver does)."""
    _core.check_not_ahead(event, now, tolerance)
    if event["data"].get("part") is not None:
        _core.check_part(event["data"]["part"])
    error = _core.claim_error(event["data"])
    if error is not None and error.reason not in CONFLICTS:
        raise error
    return error


def _check_callback(headers: Any, body: Body, cfg: _Config, now: int) -> _Checked:
    """Everything but STS."""
    h = _core.header_map(headers)
    signed = _core.check_headers(h, signed=cfg.hmac, now=now, tolerance=cfg.tolerance)
    proof = h.get(PROOF_HEADER_NAME) if cfg.proof else None
    if cfg.proof and proof is None:
        raise _core.fail(PROOF_MISSING, f"missing {PROOF_HEADER_NAME} header")
    raw = _core.body_bytes(body)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _core.fail(_core.EVENT, "the body is not UTF-8 JSON") from None
    if cfg.hmac:
        _core.check_signature(signed, cfg.keys, text)
    event = _core.parse_event(text)
    if delivery_id(event) != signed.id:
        raise _core.fail(_core.WEBHOOK_ID, f"webhook-id {_core.shown(signed.id)} is not the delivery id the event names ({delivery_id(event)})")
    conflict = _check_event(event, now, cfg.tolerance)
    return _Checked(event, signed.id, _checked_proof(proof, cfg, signed.id, raw, event, now), conflict)


def _checked_proof(proof: str | None, cfg: _Config, delivery: str, raw: bytes, event: Mapping, now: int):
    if proof is None:
        return None
    data = event["data"]
    expected = _core.Expected(cfg.audience, delivery, raw, data["partition"], data["accountId"])
    return _core.check_proof(proof, expected, now), expected


def _attribute(attributes: Mapping[str, Any], name: str) -> str | None:
    """An SNS message attribute's value: a string, or SNS's {"Type", "Value"} / SQS's {"StringValue"}."""
    value = attributes.get(name)
    if isinstance(value, Mapping):
        value = value.get("Value", value.get("StringValue"))
    return value if isinstance(value, str) else None


def _check_sns(message: Body, attributes: Mapping[str, Any], cfg: _Config, now: int) -> _Checked:
    proof = _attribute(attributes, SNS_PROOF_ATTRIBUTE)
    if proof is None:
        raise _core.fail(PROOF_MISSING, f"missing {SNS_PROOF_ATTRIBUTE} message attribute")
    raw = _core.body_bytes(message)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _core.fail(_core.EVENT, "the message is not UTF-8 JSON") from None
    event = _core.parse_event(text)
    conflict = _check_event(event, now, cfg.tolerance)
    delivery = delivery_id(event)
    return _Checked(event, delivery, _checked_proof(proof, cfg, delivery, raw, event, now), conflict)


def _verified(checked: _Checked, caller: Caller | None) -> VerifiedEvent:
    if checked.conflict is not None:
        raise checked.conflict
    return VerifiedEvent(checked.event, checked.delivery, caller)


def verify(headers: Any, body: Body, *, secrets: str | Iterable[str] | None = None, audience: str | None = None,
           mode: str = "hmac-and-proof", sts_endpoint: str | None = None, tolerance: int = DEFAULT_TOLERANCE,
           now: float | None = None, timeout: float = 5.0, client: httpx.Client | None = None) -> VerifiedEvent:
    """Verifies one callback delivery: `headers` (any mapping or list of pairs; names in any case) and the
    raw `body` bytes. Returns the event, or raises VerificationError (`reason`, `retryable`).

    `secrets`: the whsec_ secret(s) (a space-separated string or a list), for the hmac modes. `audience`: this
    receiver's, for the proof modes. `sts_endpoint`: a loopback URL that stands in for STS (tests only).
    `now`: Unix seconds to verify at (tests). `client`: an httpx.Client to reuse (redirects are never followed).
    Configuration errors raise ValueError."""
    cfg = _Config(secrets, audience, mode, sts_endpoint, tolerance)
    checked = _check_callback(headers, body, cfg, _now(now))
    caller = None
    if checked.proof is not None:
        caller = _sts.send(*checked.proof, endpoint=cfg.endpoint, timeout=timeout, client=client)
    return _verified(checked, caller)


async def verify_async(headers: Any, body: Body, *, secrets: str | Iterable[str] | None = None,
                       audience: str | None = None, mode: str = "hmac-and-proof", sts_endpoint: str | None = None,
                       tolerance: int = DEFAULT_TOLERANCE, now: float | None = None, timeout: float = 5.0,
                       client: httpx.AsyncClient | None = None) -> VerifiedEvent:
    """`verify` for asyncio: the same checks; STS is called with httpx.AsyncClient."""
    cfg = _Config(secrets, audience, mode, sts_endpoint, tolerance)
    checked = _check_callback(headers, body, cfg, _now(now))
    caller = None
    if checked.proof is not None:
        caller = await _sts.send_async(*checked.proof, endpoint=cfg.endpoint, timeout=timeout, client=client)
    return _verified(checked, caller)


def verify_sns(message: Body, attributes: Mapping[str, Any], *, audience: str, sts_endpoint: str | None = None,
               tolerance: int = DEFAULT_TOLERANCE, now: float | None = None, timeout: float = 5.0,
               client: httpx.Client | None = None) -> VerifiedEvent:
    """Verifies one SNS message: its `Message` and its message attributes (accountLinkProof must be there).
    SNS carries no Standard Webhooks signature; the proof binds the message's delivery id and exact bytes.
    Verify SNS's own signature first when the message reached you over HTTP(S) rather than SQS. `tolerance`:
    how far ahead of your clock the event's timestamp may be (seconds)."""
    cfg = _Config(None, audience, "proof-only", sts_endpoint, tolerance)
    checked = _check_sns(message, attributes, cfg, _now(now))
    assert checked.proof is not None
    caller = _sts.send(*checked.proof, endpoint=cfg.endpoint, timeout=timeout, client=client)
    return _verified(checked, caller)


async def verify_sns_async(message: Body, attributes: Mapping[str, Any], *, audience: str,
                           sts_endpoint: str | None = None, tolerance: int = DEFAULT_TOLERANCE,
                           now: float | None = None, timeout: float = 5.0,
                           client: httpx.AsyncClient | None = None) -> VerifiedEvent:
    """`verify_sns` for asyncio."""
    cfg = _Config(None, audience, "proof-only", sts_endpoint, tolerance)
    checked = _check_sns(message, attributes, cfg, _now(now))
    assert checked.proof is not None
    caller = await _sts.send_async(*checked.proof, endpoint=cfg.endpoint, timeout=timeout, client=client)
    return _verified(checked, caller)
