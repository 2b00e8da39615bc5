"""The public event contract: schema/link-event.v1.json is a valid schema, describes every property of the
examples in docs/examples, and rejects what the function never sends. With ACCOUNT_LINK_EVENTS_FILE set to
a JSON-lines file written by a real run (link-receiver --out), every event in it is checked too."""
import copy
import hashlib
import json
import os
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

import schema_check
from schema_check import event_errors, undocumented, validate_event

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.json"))
LINKED = ROOT / "docs" / "examples" / "account.linked.json"


def example(path=LINKED):
    return json.loads(Path(path).read_text())


def test_schema_is_a_valid_draft_2020_12_schema():
    Draft202012Validator.check_schema(schema_check.SCHEMA)
    assert schema_check.SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema_check.SCHEMA["$id"]


def test_every_object_in_the_schema_allows_unknown_properties():
    # Forward compatibility: new optional fields must not make old receivers' validation fail.
    def walk(node, path):
        if isinstance(node, dict):
            assert node.get("additionalProperties", True) is not False, path
            assert node.get("unevaluatedProperties", True) is not False, path
            for k, v in node.items():
                walk(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}/{i}")

    walk(schema_check.SCHEMA, "#")


def test_the_examples_cover_every_event_type():
    assert {example(p)["type"] for p in EXAMPLES} == {"account.linked", "account.updated", "account.unlinked"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid(path):
    event = example(path)
    assert event_errors(event) == []
    validate_event(event)
    assert path.name == f"{event['type']}.json"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_has_no_undocumented_property(path):
    assert undocumented(example(path)) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_ids_are_derived_from_the_stack(path):
    d = example(path)["data"]
    h = lambda a, b: hashlib.sha256(f"{a}\n{b}".encode()).hexdigest()[:32]
    assert d["eventId"] == "msg_" + h(d["stackId"], d["requestId"])
    assert d["physicalResourceId"] == "link-" + h(d["stackId"], d["logicalResourceId"])


def test_examples_of_one_link_share_its_id_and_are_ordered_by_timestamp():
    events = {example(p)["type"]: example(p) for p in EXAMPLES}
    order = [events[t] for t in ("account.linked", "account.updated", "account.unlinked")]
    assert len({e["data"]["physicalResourceId"] for e in order}) == 1
    assert len({e["data"]["eventId"] for e in order}) == 3
    assert [e["timestamp"] for e in order] == sorted(e["timestamp"] for e in order)


def test_undocumented_finds_extra_properties_at_any_depth():
    event = example()
    event["extra"] = 1
    event["data"]["newField"] = "x"
    event["data"]["inventory"][0]["vpcs"][0]["subnets"][1]["ipv4Prefixes"] = []
    event["data"]["inventory"][0]["vpcs"][0]["routeTables"][0]["routes"][0]["carrierIp"] = None
    # Extra properties stay valid (receivers ignore them); they are only undocumented.
    assert event_errors(event) == []
    assert sorted(undocumented(event)) == [
        "$.data.inventory[0].vpcs[0].routeTables[0].routes[0].carrierIp",
        "$.data.inventory[0].vpcs[0].subnets[1].ipv4Prefixes",
        "$.data.newField",
        "$.extra",
    ]


def test_undocumented_follows_nullable_and_conditional_parts():
    event = example(ROOT / "docs" / "examples" / "account.updated.json")
    event["data"]["changes"]["previous"]["serviceTimeout"] = "300"
    event["data"]["changes"]["note"] = "x"
    assert sorted(undocumented(event)) == ["$.data.changes.note", "$.data.changes.previous.serviceTimeout"]
    # Role names are map keys the schema describes as a whole, not undocumented properties.
    event = example()
    event["data"]["roles"]["AnotherRole"] = "arn:aws:iam::123456789012:role/Another"
    assert undocumented(event) == []


def test_a_split_sns_part_is_valid_and_documented():
    event = example()
    event["data"]["part"] = {"index": 2, "count": 3}
    event["data"]["inventory"] = event["data"]["inventory"][1:]
    assert event_errors(event) == []
    assert undocumented(event) == []
    event["data"]["part"] = {"index": 4, "count": 3}
    assert any("index is greater than count" in p for p in event_errors(event))


def test_a_failed_listing_on_unlink_is_valid():
    event = example(ROOT / "docs" / "examples" / "account.unlinked.json")
    event["data"]["inventoryComplete"] = False
    event["data"]["inventory"] = []
    assert event_errors(event) == []


def test_an_update_whose_previous_properties_could_not_be_read_is_valid():
    event = example(ROOT / "docs" / "examples" / "account.updated.json")
    event["data"]["changes"] = {"changedProperties": ["Regions", "ExternalId", "Roles", "VpcId"], "previous": None}
    assert event_errors(event) == []


def mutate(change, path=LINKED):
    event = example(path)
    change(event)
    return event


def drop(obj, key):
    del obj[key]


NEGATIVE = {
    "missing data.eventId": lambda e: drop(e["data"], "eventId"),
    "bad type value": lambda e: e.update(type="account.created"),
    "accountId not 12 digits": lambda e: e["data"].update(accountId="12345678901"),
    "accountId not digits": lambda e: e["data"].update(accountId="12345678901a"),
    "inventory entry missing region": lambda e: drop(e["data"]["inventory"][0], "region"),
    "eventId not msg_ and 32 hex": lambda e: e["data"].update(eventId="msg_123"),
    "timestamp not UTC": lambda e: e.update(timestamp="2026-11-23T12:00:00+01:00"),
    "timestamp not a date": lambda e: e.update(timestamp="2026-13-45T12:00:00Z"),
    "schemaVersion 2": lambda e: e["data"].update(schemaVersion="2"),
    "nullable field omitted (vpcId)": lambda e: drop(e["data"], "vpcId"),
    "nullable subnet field omitted": lambda e: drop(e["data"]["inventory"][0]["vpcs"][0]["subnets"][0], "name"),
    "availableIpAddressCount not an integer": lambda e: e["data"]["inventory"][0]["vpcs"][0]["subnets"][0].update(
        availableIpAddressCount="251"
    ),
    "route missing origin": lambda e: drop(e["data"]["inventory"][0]["vpcs"][0]["routeTables"][0]["routes"][0], "origin"),
    "changes on account.linked": lambda e: e["data"].update(changes={"changedProperties": [], "previous": None}),
    "inventoryComplete false on account.linked": lambda e: e["data"].update(inventoryComplete=False, inventory=[]),
    "role ARN of another service": lambda e: e["data"]["roles"].update(RemoteRole="arn:aws:s3:::bucket"),
    "part index 0": lambda e: e["data"].update(part={"index": 0, "count": 2}),
    "region not a region name": lambda e: e["data"].update(regions=["moon-1"]),
    "physicalResourceId of another resource": lambda e: e["data"].update(logicalResourceId="OtherLink"),
    "inventory region not listed": lambda e: e["data"]["inventory"][1].update(region="eu-west-1"),
}

NEGATIVE_UPDATED = {
    "account.updated without changes": lambda e: drop(e["data"], "changes"),
    "unknown changed property": lambda e: e["data"]["changes"].update(changedProperties=["ServiceTimeout"]),
    "previous null with fewer than four changes": lambda e: e["data"]["changes"].update(previous=None),
    "previous missing vpcId": lambda e: drop(e["data"]["changes"]["previous"], "vpcId"),
}

NEGATIVE_UNLINKED = {
    "incomplete listing with inventory": lambda e: e["data"].update(inventoryComplete=False),
}


@pytest.mark.parametrize(
    "path,change",
    [(LINKED, c) for c in NEGATIVE.values()]
    + [(ROOT / "docs/examples/account.updated.json", c) for c in NEGATIVE_UPDATED.values()]
    + [(ROOT / "docs/examples/account.unlinked.json", c) for c in NEGATIVE_UNLINKED.values()],
    ids=list(NEGATIVE) + list(NEGATIVE_UPDATED) + list(NEGATIVE_UNLINKED),
)
def test_invalid_events_are_rejected(path, change):
    event = mutate(change, path)
    assert event_errors(event) != []
    with pytest.raises(schema_check.InvalidEvent):
        validate_event(event)


def test_the_required_negative_cases_fail_the_schema_itself():
    # Not only the extra checks: the schema alone rejects them, for receivers that use only the schema.
    for name in ("missing data.eventId", "bad type value", "accountId not 12 digits", "inventory entry missing region"):
        assert schema_check.schema_errors(mutate(NEGATIVE[name])) != [], name


def test_events_file_checker_reads_both_receivers_formats(tmp_path):
    event = example()
    good = tmp_path / "good.jsonl"
    good.write_text(
        json.dumps(event) + "\n\n" + json.dumps({"webhookId": event["data"]["eventId"], "payload": event}) + "\n"
    )
    assert schema_check.check_events_file(good) == []
    bad = tmp_path / "bad.jsonl"
    extra = copy.deepcopy(event)
    extra["data"]["surprise"] = True
    bad.write_text(
        json.dumps({"webhookId": "msg_other", "payload": event}) + "\n" + json.dumps(extra) + "\n"
    )
    problems = schema_check.check_events_file(bad)
    assert problems[0].startswith("line 1: webhook-id msg_other")
    assert problems[1] == "line 2: $.data.surprise: not described by the schema"
    assert schema_check.check_events_file(bad, strict=False) == problems[:1]
    assert schema_check.main([str(good)]) == 0 and schema_check.main([str(bad)]) == 1


EVENTS_FILE = os.environ.get("ACCOUNT_LINK_EVENTS_FILE")


@pytest.mark.skipif(not EVENTS_FILE, reason="ACCOUNT_LINK_EVENTS_FILE is not set (no real run to check)")
def test_events_from_a_real_run_are_valid_and_documented():
    assert Path(EVENTS_FILE).is_file(), f"ACCOUNT_LINK_EVENTS_FILE={EVENTS_FILE} is not a file"
    assert schema_check.check_events_file(EVENTS_FILE) == []


def test_the_documented_signature_recipe_is_what_standardwebhooks_verifies():
    import base64
    import hmac
    import time

    from standardwebhooks.webhooks import Webhook

    def sign(secret, msg_id, ts, body):
        key = base64.b64decode(secret.removeprefix("whsec_"))
        content = f"{msg_id}.{ts}.".encode() + body
        return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()

    # The Standard Webhooks specification's own example (also in src/signing.rs).
    assert (
        sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )
    old, new = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    body = LINKED.read_bytes()
    msg_id, ts = example()["data"]["eventId"], int(time.time())
    # During rotation: one signature per secret, space-separated; either secret verifies.
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": f"{sign(old, msg_id, ts, body)} {sign(new, msg_id, ts, body)}",
    }
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers)["data"]["eventId"] == msg_id
