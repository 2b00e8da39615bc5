"""Checks account-link events against the public contract: schema/link-event.v1.json plus the facts a JSON
Schema cannot express (ids derived from the stack, part numbers, inventory order).

    from schema_check import validate_event, event_errors, undocumented
    validate_event(event)      # raises InvalidEvent listing every problem
    event_errors(event)        # the same problems as a list of strings ([] when valid)
    undocumented(event)        # paths of properties the schema does not describe ([] when complete)

As a script, checks JSON-lines files written by a real run (link-receiver's one event per line, or the
{"webhookId": ..., "payload": event} lines of scripts/py_receiver.py) and exits 1 on any problem:

    python tests/contract/schema_check.py events.jsonl [--allow-undocumented]

Undocumented properties count as problems (the schema must describe everything the function sends)
unless --allow-undocumented is given.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any, Iterator

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "schema" / "link-event.v1.json"
SCHEMA: dict = json.loads(SCHEMA_PATH.read_text())
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)


class InvalidEvent(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def _hex32(a: str, b: str) -> str:
    return hashlib.sha256(f"{a}\n{b}".encode()).hexdigest()[:32]


def _path(parts) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _message(e: ValidationError) -> str:
    # The default messages of not/oneOf/anyOf repeat the whole instance: say what was expected instead.
    if e.validator == "not":
        text = f"must not match {json.dumps(e.validator_value)}"
    elif e.validator in ("oneOf", "anyOf") and e.context:
        # A branch of another type (e.g. the null of a nullable object) says least about what is wrong.
        typed = [c for c in e.context if c.validator != "type"] or list(e.context)
        text = f"matches none of the allowed forms; closest: {best_match(typed).message}"
    else:
        text = e.message
    return text if len(text) <= 300 else text[:297] + "..."


def schema_errors(event: Any) -> list[str]:
    """What the JSON Schema alone rejects, as "$.path: problem" strings."""
    errors = sorted(VALIDATOR.iter_errors(event), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{_path(e.absolute_path)}: {_message(e)}" for e in errors]


def semantic_errors(event: dict) -> list[str]:
    """What the schema cannot say. Assumes the event passed the schema."""
    d = event["data"]
    problems = []
    if d["eventId"] != "msg_" + _hex32(d["stackId"], d["requestId"]):
        problems.append("$.data.eventId: is not msg_ + sha256(stackId \\n requestId)[:32 hex]")
    if d["physicalResourceId"] != "link-" + _hex32(d["stackId"], d["logicalResourceId"]):
        problems.append("$.data.physicalResourceId: is not link- + sha256(stackId \\n logicalResourceId)[:32 hex]")
    arn = re.match(r"^arn:([^:]+):cloudformation:([^:]+):([0-9]{12}):", d["stackId"])
    if arn and (arn[1], arn[2], arn[3]) != (d["partition"], d["region"], d["accountId"]):
        problems.append("$.data: partition, region and accountId must be those of stackId")
    listed = [r["region"] for r in d["inventory"]]
    if len(set(listed)) != len(listed):
        problems.append("$.data.inventory: a region appears more than once")
    if any(r not in d["regions"] for r in listed):
        problems.append("$.data.inventory: lists a region that is not in data.regions")
    elif listed != sorted(listed, key=d["regions"].index):
        problems.append("$.data.inventory: regions are not in the order of data.regions")
    part = d.get("part")
    if part is not None and part["index"] > part["count"]:
        problems.append("$.data.part: index is greater than count")
    if part is None and d["inventoryComplete"] and listed != d["regions"]:
        problems.append("$.data.inventory: a complete, unsplit inventory has one entry per region in data.regions")
    for i, r in enumerate(d["inventory"]):
        ids = [v["vpcId"] for v in r["vpcs"]]
        if len(set(ids)) != len(ids):
            problems.append(f"$.data.inventory[{i}].vpcs: a vpcId appears more than once")
    return problems


def event_errors(event: Any) -> list[str]:
    """Every problem with `event` ([] when it is a valid account-link event)."""
    problems = schema_errors(event)
    return problems or semantic_errors(event)


def validate_event(event: Any) -> None:
    """Raises InvalidEvent (a ValueError) unless `event` is a valid account-link event."""
    problems = event_errors(event)
    if problems:
        raise InvalidEvent(problems)


# --- undocumented properties -------------------------------------------------------------------------

def _resolve(ref: str) -> Any:
    if not ref.startswith("#"):
        raise ValueError(f"only local $ref is supported, got {ref}")
    node: Any = SCHEMA
    for token in ref[1:].split("/")[1:]:
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


def _valid(schema: Any, instance: Any) -> bool:
    return VALIDATOR.evolve(schema=schema).is_valid(instance)


def _applicable(schema: Any, instance: Any) -> Iterator[dict]:
    """The subschemas that apply to `instance` in place: the schema itself, what it references, allOf,
    the anyOf/oneOf branches the instance matches, and the then/else branch its `if` selects. (`not` and
    `if` themselves only test; they describe nothing.)"""
    if not isinstance(schema, dict):
        return
    yield schema
    if "$ref" in schema:
        yield from _applicable(_resolve(schema["$ref"]), instance)
    for sub in schema.get("allOf", []):
        yield from _applicable(sub, instance)
    for key in ("anyOf", "oneOf"):
        for sub in schema.get(key, []):
            if _valid(sub, instance):
                yield from _applicable(sub, instance)
    if "if" in schema:
        branch = schema.get("then") if _valid(schema["if"], instance) else schema.get("else")
        yield from _applicable(branch, instance)


def _walk(schemas: list, instance: Any, path: list, found: list[str]) -> None:
    applicable = [s for schema in schemas for s in _applicable(schema, instance)]
    if isinstance(instance, dict):
        for key, value in instance.items():
            children = []
            for s in applicable:
                named = s.get("properties", {})
                if key in named:
                    children.append(named[key])
                patterned = [v for p, v in s.get("patternProperties", {}).items() if re.search(p, key)]
                children += patterned
                extra = s.get("additionalProperties")
                if key not in named and not patterned and isinstance(extra, dict):
                    children.append(extra)
            if children:
                _walk(children, value, path + [key], found)
            else:
                found.append(_path(path + [key]))
    elif isinstance(instance, list):
        for i, value in enumerate(instance):
            children = []
            for s in applicable:
                prefix = s.get("prefixItems", [])
                if i < len(prefix):
                    children.append(prefix[i])
                elif isinstance(s.get("items"), dict):
                    children.append(s["items"])
            if children:
                _walk(children, value, path + [i], found)


def undocumented(event: Any) -> list[str]:
    """Paths (like $.data.inventory[0].vpcs[0].foo) of the properties in `event` that no applicable part
    of the schema describes. The schema allows them (receivers must ignore unknown properties), but the
    function must not send anything the public contract does not document."""
    found: list[str] = []
    _walk([SCHEMA], event, [], found)
    return found


# --- JSON-lines files --------------------------------------------------------------------------------

def load_events(path: str | Path) -> list[tuple[int, Any]]:
    """(line number, event) for each non-blank line. Lines written by scripts/py_receiver.py wrap the
    event as {"webhookId", "payload"}: they are unwrapped, and a webhookId that differs from the event's
    eventId is reported as a problem by check_events_file."""
    events = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            events.append((n, json.loads(line)))
    return events


def check_events_file(path: str | Path, strict: bool = True) -> list[str]:
    """Every problem in a JSON-lines file of events, each prefixed with its line number."""
    problems = []
    events = load_events(path)
    if not events:
        return [f"{path}: no events"]
    for n, obj in events:
        event = obj
        if isinstance(obj, dict) and "payload" in obj and "webhookId" in obj and "type" not in obj:
            event = obj["payload"]
            event_id = event.get("data", {}).get("eventId") if isinstance(event, dict) else None
            if obj["webhookId"] != event_id:
                problems.append(f"line {n}: webhook-id {obj['webhookId']} != data.eventId {event_id}")
        found = event_errors(event)
        if not found and strict:
            found = [f"{p}: not described by the schema" for p in undocumented(event)]
        problems += [f"line {n}: {p}" for p in found]
    return problems


def main(argv: list[str]) -> int:
    strict = "--allow-undocumented" not in argv
    files = [a for a in argv if a != "--allow-undocumented"]
    if not files:
        print(__doc__, file=sys.stderr)
        return 2
    bad = 0
    for f in files:
        problems = check_events_file(f, strict=strict)
        for p in problems:
            print(f"{f}: {p}", file=sys.stderr)
        bad += len(problems)
        if not problems:
            print(f"{f}: {len(load_events(f))} event(s) valid")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
