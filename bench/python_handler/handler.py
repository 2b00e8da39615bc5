"""account-link written the way a Python team would: crhelper + boto3 paginators + standardwebhooks.

The benchmark's reference point. It does the same job as the Rust function for Create/Update/Delete:
list VPCs, subnets and route tables in every region of `Regions` (the three calls of all regions at once,
every page), send the same `account.linked` event (docs/examples/account.linked.json) signed with
Standard Webhooks to PROVIDER_CALLBACK_URL and, split under SNS's 256 KiB, to PROVIDER_SNS_TOPIC_ARN, and
let crhelper answer CloudFormation. Deployed as handler.py + crhelper + standardwebhooks (boto3 comes with
the Lambda Python runtime).
"""

import hashlib
import json
import logging
import os
import ssl
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import boto3
from crhelper import CfnResource
from standardwebhooks.webhooks import Webhook

logger = logging.getLogger(__name__)
helper = CfnResource(json_logging=False, log_level=os.environ.get("AWS_LAMBDA_LOG_LEVEL", "INFO").upper(),
                     boto_level="CRITICAL")

CALLBACK_URL = os.environ.get("PROVIDER_CALLBACK_URL", "")
SIGNING_SECRET = os.environ.get("PROVIDER_SIGNING_SECRET", "")
SNS_TOPIC_ARN = os.environ.get("PROVIDER_SNS_TOPIC_ARN", "")
REGION = os.environ.get("AWS_REGION", "us-east-1")
MAX_SNS_BYTES = 256 * 1024 - 2048  # room left for the message attributes
EVENT_TYPES = {"Create": "account.linked", "Update": "account.updated", "Delete": "account.unlinked"}

webhook = Webhook(SIGNING_SECRET) if SIGNING_SECRET else None
# One TLS context for the life of the process: building one loads the whole CA bundle.
tls = ssl.create_default_context()
sns = boto3.client("sns") if SNS_TOPIC_ARN else None
_ec2_clients = {}


def ec2(region):
    # boto3 sessions are not thread-safe: clients are created here, before the pool uses them.
    if region not in _ec2_clients:
        _ec2_clients[region] = boto3.client("ec2", region_name=region)
    return _ec2_clients[region]


def _digest_id(prefix, a, b):
    return prefix + hashlib.sha256(f"{a}\n{b}".encode()).hexdigest()[:32]


def _name(tags):
    return next((t["Value"] for t in tags or [] if t["Key"] == "Name"), None)


def _all(client, operation, key, page_size):
    items = []
    for page in client.get_paginator(operation).paginate(PaginationConfig={"PageSize": page_size}):
        items.extend(page.get(key, []))
    return items


TARGET_KEYS = ["GatewayId", "NatGatewayId", "TransitGatewayId", "VpcPeeringConnectionId",
               "EgressOnlyInternetGatewayId", "NetworkInterfaceId", "InstanceId", "LocalGatewayId",
               "CarrierGatewayId", "CoreNetworkArn"]


def _route(r):
    destination = r.get("DestinationCidrBlock") or r.get("DestinationIpv6CidrBlock") or r.get("DestinationPrefixListId")
    target = next((r[k] for k in TARGET_KEYS if r.get(k)), None)
    return {"destination": destination, "target": target, "state": r.get("State"), "origin": r.get("Origin")}


def assemble(region, vpcs, subnets, tables):
    by_id = {}
    for v in vpcs:
        cidrs = [a["CidrBlock"] for a in v.get("CidrBlockAssociationSet", []) if a.get("CidrBlock")]
        if v.get("CidrBlock") and v["CidrBlock"] not in cidrs:
            cidrs.insert(0, v["CidrBlock"])
        by_id[v["VpcId"]] = {
            "vpcId": v["VpcId"], "name": _name(v.get("Tags")), "cidrBlock": v.get("CidrBlock"),
            "cidrBlocks": cidrs,
            "ipv6CidrBlocks": [a["Ipv6CidrBlock"] for a in v.get("Ipv6CidrBlockAssociationSet", [])
                               if a.get("Ipv6CidrBlock")],
            "isDefault": v.get("IsDefault", False), "state": v.get("State"), "ownerId": v.get("OwnerId"),
            "subnets": [], "routeTables": [],
        }

    def vpc(vpc_id):
        vpc_id = vpc_id or "unknown"
        return by_id.setdefault(vpc_id, {"vpcId": vpc_id, "name": None, "cidrBlock": None, "cidrBlocks": [],
                                         "ipv6CidrBlocks": [], "isDefault": False, "state": None,
                                         "ownerId": None, "subnets": [], "routeTables": []})

    for s in subnets:
        vpc(s.get("VpcId"))["subnets"].append({
            "subnetId": s["SubnetId"], "name": _name(s.get("Tags")), "cidrBlock": s.get("CidrBlock"),
            "ipv6CidrBlocks": [a["Ipv6CidrBlock"] for a in s.get("Ipv6CidrBlockAssociationSet", [])
                               if a.get("Ipv6CidrBlock")],
            "availabilityZone": s.get("AvailabilityZone"), "availabilityZoneId": s.get("AvailabilityZoneId"),
            "availableIpAddressCount": s.get("AvailableIpAddressCount"),
            "mapPublicIpOnLaunch": s.get("MapPublicIpOnLaunch", False), "defaultForAz": s.get("DefaultForAz", False),
            "state": s.get("State"),
        })
    for t in tables:
        assocs = t.get("Associations", [])
        vpc(t.get("VpcId"))["routeTables"].append({
            "routeTableId": t["RouteTableId"], "name": _name(t.get("Tags")),
            "main": any(a.get("Main") for a in assocs),
            "subnetIds": [a["SubnetId"] for a in assocs if a.get("SubnetId")],
            "routes": [_route(r) for r in t.get("Routes", [])],
        })
    result = sorted(by_id.values(), key=lambda v: v["vpcId"])
    for v in result:
        v["subnets"].sort(key=lambda s: s["subnetId"])
        v["routeTables"].sort(key=lambda t: t["routeTableId"])
    return {"region": region, "vpcs": result}


def inventory(regions):
    clients = {r: ec2(r) for r in regions}
    with ThreadPoolExecutor(max_workers=3 * len(regions)) as pool:
        futures = {
            r: (pool.submit(_all, c, "describe_vpcs", "Vpcs", 1000),
                pool.submit(_all, c, "describe_subnets", "Subnets", 1000),
                pool.submit(_all, c, "describe_route_tables", "RouteTables", 100))
            for r, c in clients.items()
        }
        return [assemble(r, *(f.result() for f in fs)) for r, fs in futures.items()]


def properties(event):
    props = event.get("ResourceProperties") or {}
    regions = props.get("Regions") or [REGION]
    if isinstance(regions, str):
        regions = [r.strip() for r in regions.split(",") if r.strip()]
    return {
        "regions": regions,
        "externalId": props.get("ExternalId") or None,
        "roles": props.get("Roles") or {},
        "vpcId": props.get("VpcId") or None,
    }


def build_event(event, physical_id, props, inv):
    stack_id = event["StackId"]
    _, partition, _, region, account, _ = stack_id.split(":", 5)
    data = {
        "schemaVersion": "1",
        "eventId": _digest_id("msg_", stack_id, event["RequestId"]),
        "accountId": account, "partition": partition, "region": region, "stackId": stack_id,
        "requestId": event["RequestId"], "logicalResourceId": event["LogicalResourceId"],
        "physicalResourceId": physical_id, "externalId": props["externalId"], "roles": props["roles"],
        "vpcId": props["vpcId"], "regions": props["regions"],
        "inventoryComplete": inv is not None, "inventory": inv or [],
    }
    if event["RequestType"] == "Update":
        old = properties({"ResourceProperties": event.get("OldResourceProperties")})
        data["changes"] = {
            "changedProperties": [k[0].upper() + k[1:] for k in ("regions", "externalId", "roles", "vpcId")
                                  if old[k] != props[k]],
            "previous": old,
        }
    return {"type": EVENT_TYPES[event["RequestType"]],
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "data": data}


def post_webhook(link_event, attempts=3):
    body = json.dumps(link_event, separators=(",", ":"))
    msg_id = link_event["data"]["eventId"]
    for attempt in range(1, attempts + 1):
        now = datetime.now(timezone.utc)
        req = urllib.request.Request(CALLBACK_URL, data=body.encode(), method="POST", headers={
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": webhook.sign(msg_id, now, body),
        })
        try:
            with urllib.request.urlopen(req, timeout=10, context=tls) as resp:
                logger.info("provider callback delivered: HTTP %s", resp.status)
                return
        except urllib.error.HTTPError as e:
            if e.code < 500 and e.code not in (408, 429) or attempt == attempts:
                raise RuntimeError(f"provider callback answered HTTP {e.code}") from e
        except urllib.error.URLError:
            if attempt == attempts:
                raise
        time.sleep(0.25 * 2 ** attempt)


def sns_messages(link_event):
    """The event as SNS messages under MAX_SNS_BYTES: one if it fits, else numbered parts that each carry
    some subnets and route tables (and the headers of their VPCs)."""
    whole = json.dumps(link_event, separators=(",", ":"))
    if len(whole.encode()) <= MAX_SNS_BYTES:
        return [whole]
    skeleton = dict(link_event, data=dict(link_event["data"], inventory=[], part={"index": 999, "count": 999}))
    room = MAX_SNS_BYTES - len(json.dumps(skeleton, separators=(",", ":")).encode())
    parts, current, used = [], {}, 0
    for region in link_event["data"]["inventory"]:
        for vpc in region["vpcs"]:
            header = {k: v for k, v in vpc.items() if k not in ("subnets", "routeTables")}
            children = [("subnets", s) for s in vpc["subnets"]] + [("routeTables", t) for t in vpc["routeTables"]]
            for kind, child in children or [(None, None)]:
                size = len(json.dumps(child, separators=(",", ":")).encode()) + 1 if child else 0
                key = (region["region"], vpc["vpcId"])
                extra = 0 if key in current else len(json.dumps(header).encode()) + 60
                if current and used + size + extra > room:
                    parts.append(current)
                    current, used, extra = {}, 0, len(json.dumps(header).encode()) + 60
                entry = current.setdefault(key, dict(header, subnets=[], routeTables=[]))
                if child:
                    entry[kind].append(child)
                used += size + extra
    if current:
        parts.append(current)
    messages = []
    for i, part in enumerate(parts, start=1):
        regions = {}
        for (region, _), vpc in part.items():
            regions.setdefault(region, []).append(vpc)
        inv = [{"region": r, "vpcs": v} for r, v in regions.items()]
        messages.append(json.dumps(dict(link_event, data=dict(link_event["data"], inventory=inv,
                                                              part={"index": i, "count": len(parts)})),
                                   separators=(",", ":")))
    return messages


def publish_sns(link_event):
    messages = sns_messages(link_event)
    for i, message in enumerate(messages, start=1):
        attributes = {
            "eventType": {"DataType": "String", "StringValue": link_event["type"]},
            "eventId": {"DataType": "String", "StringValue": link_event["data"]["eventId"]},
        }
        if len(messages) > 1:
            attributes["part"] = {"DataType": "String", "StringValue": f"{i}/{len(messages)}"}
        sns.publish(TopicArn=SNS_TOPIC_ARN, Message=message, MessageAttributes=attributes)
    logger.info("published to SNS in %d part(s)", len(messages))


def notify(link_event):
    if CALLBACK_URL:
        post_webhook(link_event)
    if SNS_TOPIC_ARN:
        publish_sns(link_event)


def link_id(event):
    return _digest_id("link-", event["StackId"], event["LogicalResourceId"])


@helper.create
@helper.update
def link(event, context):
    props = properties(event)
    inv = inventory(props["regions"])
    physical_id = link_id(event)
    link_event = build_event(event, physical_id, props, inv)
    notify(link_event)
    vpcs = [v for r in inv for v in r["vpcs"]]
    helper.Data.update({
        "LinkId": physical_id,
        "EventId": link_event["data"]["eventId"],
        "Regions": ",".join(props["regions"]),
        "VpcCount": len(vpcs),
        "SubnetCount": sum(len(v["subnets"]) for v in vpcs),
        "RouteTableCount": sum(len(v["routeTables"]) for v in vpcs),
    })
    return physical_id


@helper.delete
def unlink(event, context):
    physical_id = event.get("PhysicalResourceId", "")
    if physical_id != link_id(event):
        return physical_id
    props = properties(event)
    try:
        inv = inventory(props["regions"])
    except Exception:
        logger.exception("inventory failed on Delete; unlinking anyway")
        inv = None
    try:
        notify(build_event(event, physical_id, props, inv))
    except Exception:
        logger.exception("provider not told of the unlink")
    return physical_id


def handler(event, context):
    helper(event, context)
