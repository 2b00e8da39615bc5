"""Putting split events back together (link_contract::parts), bounded like link-receiver: at most 64 parts
of 16 hex-digit sets, 16 MiB per split, the same envelope in every part, a bounded number of open splits
and of bytes held, and splits that never complete are dropped after a while."""

from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Mapping

from ._core import (
    EVENT,
    MAX_SET_BYTES,
    PART_ENVELOPE,
    PART_SET_SIZE,
    REASSEMBLY_FULL,
    check_part,
    fail,
)

#: The envelope every part of one split carries unchanged (link_contract::parts::envelope_fields).
ENVELOPE_FIELDS = ("type", "timestamp", "eventId", "accountId", "partition", "region", "stackId",
                   "logicalResourceId", "physicalResourceId", "externalId", "roles", "part.count")


def envelope(event: Mapping) -> list[tuple[str, Any]]:
    data = event["data"]
    values = {
        "type": event.get("type"),
        "timestamp": event.get("timestamp"),
        "part.count": (data.get("part") or {}).get("count", 0),
    }
    return [(f, values[f] if f in values else data.get(f)) for f in ENVELOPE_FIELDS]


def merge(parts: list[Mapping]) -> dict:
    """The whole event from all of a split's parts in order of index: regions merged by name (in the order of
    data.regions), VPCs by id, subnets and route tables concatenated; without data.part."""
    whole = copy.deepcopy(dict(parts[0]))
    regions: list[dict] = whole["data"]["inventory"]
    for part in parts[1:]:
        for region in copy.deepcopy(part["data"]["inventory"]):
            into = next((r for r in regions if r["region"] == region["region"]), None)
            if into is None:
                into = {"region": region["region"], "vpcs": []}
                regions.append(into)
            for vpc in region["vpcs"]:
                same = next((v for v in into["vpcs"] if v["vpcId"] == vpc["vpcId"]), None)
                if same is None:
                    into["vpcs"].append(vpc)
                else:
                    same["subnets"].extend(vpc["subnets"])
                    same["routeTables"].extend(vpc["routeTables"])
    order = whole["data"]["regions"]
    regions.sort(key=lambda r: order.index(r["region"]) if r["region"] in order else len(order))
    del whole["data"]["part"]
    return whole


class _Split:
    __slots__ = ("first", "parts", "bytes", "started")

    def __init__(self, first: Mapping, started: float):
        self.first = first
        self.parts: dict[int, Mapping] = {}
        self.bytes = 0
        self.started = started


class Reassembler:
    """Collects the parts of split events (verified ones: give it what `verify` returned) and returns each
    event whole once all its parts have arrived. In memory, for one process: parts arrive in any order and
    more than once; a receiver with several processes or restarts stores parts instead (link-receiver does).

    Bounds: `max_open_splits` splits and `max_bytes` bytes (the sizes given to `add`) held at once, beyond
    which a new part is refused with reason `reassembly-full` (retryable: answer 503, the sender retries);
    a split still incomplete `ttl` seconds after its first part is dropped. Thread-safe."""

    def __init__(self, *, max_open_splits: int = 256, max_bytes: int = 256 * 1024 * 1024, ttl: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic):
        self.max_open_splits = max_open_splits
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._clock = clock
        self._open: OrderedDict[tuple[str, str], _Split] = OrderedDict()
        self._done: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def open_splits(self) -> int:
        return len(self._open)

    @property
    def bytes_held(self) -> int:
        return self._bytes

    def add(self, event: Mapping, size: int) -> dict | None:
        """Adds one delivery's event (`size`: its body's length in bytes). Returns the whole event when this
        part completes it, the event itself when it is not split, and None otherwise (a part that is not the
        last, or one that arrived before). Raises VerificationError for a part outside the bounds."""
        data = event.get("data") if isinstance(event, Mapping) else None
        if not isinstance(data, Mapping):
            raise fail(EVENT, "not a link event: it has no data")
        part = data.get("part")
        if part is None:
            return dict(event)
        check_part(part)
        key = (data.get("eventId"), part["set"])
        with self._lock:
            self._expire()
            if key in self._done:
                return None
            split = self._open.get(key)
            if split is not None:
                for (field, mine), (_, theirs) in zip(envelope(split.first), envelope(event)):
                    if mine != theirs:
                        raise fail(PART_ENVELOPE, f"data.{field} differs from the other parts of split {part['set']}: "
                                                  "every part carries the same envelope")
                if part["index"] in split.parts:
                    return None
            elif len(self._open) >= self.max_open_splits:
                raise fail(REASSEMBLY_FULL, f"{len(self._open)} split events are incomplete, as many as this "
                                            "receiver holds; retry later")
            held = split.bytes if split else 0
            if held + size > MAX_SET_BYTES:
                if split is not None:
                    self._drop(key)
                raise fail(PART_SET_SIZE, f"data.part.set {part['set']}: its parts would total {held + size} bytes, "
                                          f"more than the {MAX_SET_BYTES} a split may carry")
            if self._bytes + size > self.max_bytes:
                raise fail(REASSEMBLY_FULL, f"the incomplete split events hold {self._bytes} bytes, as many as this "
                                            "receiver holds; retry later")
            if split is None:
                split = self._open[key] = _Split(event, self._clock())
            split.parts[part["index"]] = event
            split.bytes += size
            self._bytes += size
            if len(split.parts) < part["count"]:
                return None
            self._drop(key)
            self._done[key] = None
            while len(self._done) > 4 * self.max_open_splits:
                self._done.popitem(last=False)
        return merge([split.parts[i] for i in sorted(split.parts)])

    def _drop(self, key: tuple[str, str]) -> None:
        split = self._open.pop(key)
        self._bytes -= split.bytes

    def _expire(self) -> None:
        now = self._clock()
        while self._open:
            key, split = next(iter(self._open.items()))
            if now - split.started <= self.ttl:
                break
            self._drop(key)
