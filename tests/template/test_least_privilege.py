"""What the stack lets the provider and its own functions do, with the IAM policies rendered as
CloudFormation would for representative parameter values (render.py), checked by parliament (an IAM policy
linter built from AWS's Service Authorization Reference: actions, resource ARN formats, condition keys per
action) and against what least privilege means here. Also the parameters that guard the VPC and peering.

Run with the project's virtualenv: .venv/bin/python -m pytest tests/template -q
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.decode import cfn_yaml
from parliament import analyze_policy_string, iam_definition, is_arn_strictly_valid
from parliament.statement import get_arn_format

from render import ACCOUNT, REGION, Renderer, identity_policies

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
BIN = Path(sys.executable).parent

PROVIDERS = {
    "ProviderAccountId": "111111111111",
    "ExternalId": "provider-generated-external-id-0123",
    "ProviderPlayerAccountId": "222222222222",
    "ProviderServiceAccountId": "333333333333",
}
EXISTING_VPC = "vpc-0123456789abcdef0"
PCX = "pcx-0123456789abcdef0"
SCENARIOS = {
    # A VPC created by the stack, the provider's peering accepted and deleted with the stack.
    "created-vpc": {"CreateVpc": "true", "CreatePeeringRole": "true", "PeeringConnectionId": PCX,
                    "ProviderCidr": "10.8.0.0/16", "PeeringOnDelete": "delete-connection"},
    # An existing VPC, two regions, the peering kept on delete.
    "existing-vpc": {"VpcId": EXISTING_VPC, "Regions": "eu-west-1,us-east-1", "PeeringConnectionId": PCX,
                     "ProviderCidr": "10.8.0.0/16", "ExternalId": "ext-1234"},
    # No VPC at all: region and tag scoping only.
    "no-vpc": {"Regions": "eu-west-1,us-east-1"},
    # Roles shared by every region's stack: no single VPC to scope to.
    "shared-roles": {"VpcId": EXISTING_VPC, "GlobalRolesRegion": REGION, "Regions": "eu-west-1,us-east-1"},
    # The provider asked for the AWS managed policy.
    "managed-policy": {"ProviderAccess": "managed-policy", "CreateVpc": "true"},
}
MANAGED_ARN = "arn:aws:iam::aws:policy/AmazonVPCCrossAccountNetworkInterfaceOperations"
# AmazonVPCCrossAccountNetworkInterfaceOperations, version 5 (AWS managed policy reference), all on "*".
MANAGED_ACTIONS = {
    "ec2:DescribeRouteTables", "ec2:CreateRoute", "ec2:DeleteRoute", "ec2:ReplaceRoute",
    "ec2:DescribeNetworkInterfaces", "ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface",
    "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterfacePermission",
    "ec2:DescribeNetworkInterfacePermissions", "ec2:ModifyNetworkInterfaceAttribute",
    "ec2:DescribeNetworkInterfaceAttribute", "ec2:DescribeAvailabilityZones", "ec2:DescribeRegions",
    "ec2:DescribeVpcs", "ec2:DescribeSubnets", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
    "ec2:AssignIpv6Addresses", "ec2:UnassignIpv6Addresses",
}
PROVIDER_ROLES = ("RemoteRole", "RemoteRolePlayer", "RemoteRoleService")
ENI_PERMISSIONS = {"ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterfacePermission"}


@pytest.fixture(scope="module")
def template():
    return json.loads(json.dumps(cfn_yaml.load(str(TEMPLATE))))


def render(template, scenario: str) -> tuple[Renderer, dict]:
    r = Renderer(template, {**PROVIDERS, **SCENARIOS[scenario]})
    return r, r.resources()


def listify(v):
    return v if isinstance(v, list) else [v]


def statements(doc):
    return listify(doc["Statement"])


# --- parliament ------------------------------------------------------------------------------------

_DEFS = {s["prefix"]: s for s in iam_definition}


def privilege(action: str) -> dict:
    service, name = action.split(":")
    return next(p for p in _DEFS[service]["privileges"] if p["privilege"] == name)


def required_resources(action: str) -> list[tuple[str, str]]:
    """(resource type, ARN pattern) of every resource the action requires (marked * in the reference)."""
    service = action.split(":")[0]
    return [
        (r["resource_type"][:-1], get_arn_format(r["resource_type"], _DEFS[service]["resources"]))
        for r in privilege(action)["resource_types"]
        if r["resource_type"].endswith("*")
    ]


def uncovered(doc) -> list[str]:
    """Allowed actions with a required resource that no statement allowing the action names.

    parliament's RESOURCE_MISMATCH looks at one statement at a time; an action that needs several resources
    (CreateNetworkInterface: the interface and the subnet; AcceptVpcPeeringConnection: the VPC and the
    connection) is usually granted by one statement per resource, each with the conditions that resource
    supports, as in AWS's own peering examples. This check looks at the whole policy instead."""
    allowed: dict[str, list[str]] = {}
    for s in statements(doc):
        if s["Effect"] != "Allow":
            continue
        for a in listify(s["Action"]):
            allowed.setdefault(a, []).extend(listify(s["Resource"]))
    missing = []
    for action, resources in sorted(allowed.items()):
        for rtype, fmt in required_resources(action):
            if not any(r == "*" or is_arn_strictly_valid(rtype, fmt, r) for r in resources):
                missing.append(f"{action} needs {rtype} ({fmt})")
    return missing


def lint(doc, allow=()) -> list[str]:
    findings = analyze_policy_string(json.dumps(doc), include_community_auditors=True).findings
    ignored = {"RESOURCE_MISMATCH", *allow}
    return [f"{f.issue}: {f.detail}" for f in findings if f.issue not in ignored] + uncovered(doc)


def actions_at_level(doc, level: str) -> set[str]:
    return {a for s in statements(doc) for a in listify(s["Action"]) if privilege(a)["access_level"] == level}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_policy_passes_parliament(template, scenario):
    _, resources = render(template, scenario)
    policies = identity_policies(resources)
    assert "BasicLambdaRole/account-link" in policies
    for name, doc in policies.items():
        allow = ()
        if name == "ProviderNetworkPolicy":
            # Granting another account the right to attach one of the provider's own interfaces is what the
            # managed policy is for; nothing else in the policy manages permissions.
            allow = ("PERMISSIONS_MANAGEMENT_ACTIONS",)
            assert actions_at_level(doc, "Permissions management") == ENI_PERMISSIONS
        assert lint(doc, allow) == [], f"{scenario}: {name}"
        assert not actions_at_level(doc, "Permissions management") - ENI_PERMISSIONS, name


def test_the_linter_catches_a_wrong_condition_key_and_a_missing_resource(template):
    _, resources = render(template, "created-vpc")
    doc = json.loads(json.dumps(resources["ProviderNetworkPolicy"]["Properties"]["PolicyDocument"]))
    routes = next(s for s in doc["Statement"] if s["Sid"] == "RoutesInLinkedVpc")
    routes["Condition"]["ArnLike"]["ec2:AccepterVpc"] = "arn:aws:ec2:*:*:vpc/*"
    assert any(p.startswith("UNKNOWN_CONDITION_FOR_ACTION") for p in lint(doc)), lint(doc)
    doc["Statement"] = [s for s in doc["Statement"] if s["Sid"] != "InLinkedVpcSubnets"]
    assert uncovered(doc) == ["ec2:CreateNetworkInterface needs subnet (arn:*:ec2:*:*:subnet/*)"]


# --- the provider roles ----------------------------------------------------------------------------


def vpc_arn(r: Renderer, scenario: str) -> str:
    if scenario == "created-vpc":
        return f"arn:aws:ec2:{REGION}:{ACCOUNT}:vpc/{r.ref('Vpc')}"
    return f"arn:aws:ec2:*:{ACCOUNT}:vpc/{EXISTING_VPC}"


def scoped(resources) -> dict[str, dict]:
    return {s["Sid"]: s for s in statements(resources["ProviderNetworkPolicy"]["Properties"]["PolicyDocument"])}


@pytest.mark.parametrize("scenario", ["created-vpc", "existing-vpc", "no-vpc", "shared-roles"])
def test_scoped_roles_have_the_managed_policys_actions_and_nothing_more(template, scenario):
    r, resources = render(template, scenario)
    stmts = scoped(resources)
    actions = {a for s in stmts.values() for a in listify(s["Action"])}
    # CreateTags only to tag an interface while creating it (the interface's owner tag).
    assert actions == MANAGED_ACTIONS | {"ec2:CreateTags"}
    regions = SCENARIOS[scenario].get("Regions", REGION).split(",")
    for sid, s in stmts.items():
        assert s["Effect"] == "Allow"
        region = s["Condition"]["StringEquals"]["aws:RequestedRegion"]
        assert listify(region) == regions, sid
        if s["Resource"] == "*":
            assert all(a.startswith("ec2:Describe") for a in listify(s["Action"])), sid
        else:
            assert s["Resource"].startswith(f"arn:aws:ec2:*:{ACCOUNT}:"), sid
    for name in PROVIDER_ROLES:
        arns = resources[name]["Properties"]["ManagedPolicyArns"] if name in resources else None
        if scenario == "shared-roles":
            assert arns == [r.ref("ProviderNetworkPolicy")]  # this stack is in GlobalRolesRegion
        else:
            assert arns == [r.ref("ProviderNetworkPolicy")], name
    # The provider's tag is set only while creating its interfaces, and required to touch one.
    create = stmts["CreateOnlyTaggedNetworkInterfaces"]["Condition"]
    assert create["StringEquals"]["aws:RequestTag/account-link:owner"] == "provider"
    assert create["ForAllValues:StringEquals"]["aws:TagKeys"] == ["account-link:owner", "Name"]
    assert stmts["TagOnlyWhileCreating"]["Condition"]["StringEquals"]["ec2:CreateAction"] == "CreateNetworkInterface"
    own = stmts["OnlyTheProvidersNetworkInterfaces"]
    assert own["Condition"]["StringEquals"]["aws:ResourceTag/account-link:owner"] == "provider"
    assert own["Resource"].endswith(":network-interface/*")


@pytest.mark.parametrize("scenario", ["created-vpc", "existing-vpc"])
def test_scoped_roles_are_limited_to_the_linked_vpc(template, scenario):
    r, resources = render(template, scenario)
    stmts = scoped(resources)
    for sid in ("RoutesInLinkedVpc", "InLinkedVpcSubnets", "WithLinkedVpcSecurityGroups",
                "OnlyTheProvidersNetworkInterfaces"):
        assert stmts[sid]["Condition"]["ArnLike"] == {"ec2:Vpc": vpc_arn(r, scenario)}, sid
    assert stmts["RoutesInLinkedVpc"]["Resource"] == f"arn:aws:ec2:*:{ACCOUNT}:route-table/*"


@pytest.mark.parametrize("scenario", ["no-vpc", "shared-roles"])
def test_without_one_vpc_scoped_means_regions_and_tags(template, scenario):
    _, resources = render(template, scenario)
    stmts = scoped(resources)
    assert "ec2:Vpc" not in json.dumps(stmts)
    routes = stmts["RoutesInLinkedVpc"]["Condition"]
    assert routes["StringEquals"]["aws:ResourceTag/account-link:provider-routes"] == "allowed"
    desc = template["Description"]
    assert "without a vpc to scope to" in desc.lower() and "account-link:provider-routes=allowed" in desc


def test_managed_policy_is_an_explicit_choice(template):
    _, resources = render(template, "managed-policy")
    assert "ProviderNetworkPolicy" not in resources
    for name in PROVIDER_ROLES:
        assert resources[name]["Properties"]["ManagedPolicyArns"] == [MANAGED_ARN]
    assert template["Parameters"]["ProviderAccess"]["Default"] == "scoped"


def test_the_template_no_longer_claims_too_little():
    text = TEMPLATE.read_text()
    assert "grants nothing on your data, instances" not in text
    assert "repoint 0.0.0.0/0" in text


# --- the peering function's role ------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["created-vpc", "existing-vpc"])
def test_peering_role_accepts_only_into_this_vpc_from_the_provider(template, scenario):
    r, resources = render(template, scenario)
    vpc = (r.ref("Vpc") if scenario == "created-vpc" else EXISTING_VPC)
    this_vpc = f"arn:aws:ec2:{REGION}:{ACCOUNT}:vpc/{vpc}"
    (policy,) = resources["PeeringFunctionRole"]["Properties"]["Policies"]
    stmts = {s["Sid"]: s for s in statements(policy["PolicyDocument"])}
    assert stmts["AcceptIntoThisVpc"]["Resource"] == this_vpc
    accept = stmts["AcceptOnlyFromProviderVpcs"]
    assert accept["Resource"] == f"arn:aws:ec2:{REGION}:{ACCOUNT}:vpc-peering-connection/*"
    assert accept["Condition"] == {"ArnEquals": {"ec2:AccepterVpc": this_vpc},
                                   "ArnLike": {"ec2:RequesterVpc": "arn:aws:ec2:*:111111111111:vpc/*"}}
    assert stmts["RoutesInThisVpc"]["Condition"] == {"ArnEquals": {"ec2:Vpc": this_vpc}}
    assert set(stmts["RoutesInThisVpc"]["Action"]) == {"ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:DeleteRoute"}
    assert stmts["ReadPeeringAndRoutes"]["Condition"] == {"StringEquals": {"aws:RequestedRegion": REGION}}
    deletes = scenario == "created-vpc"
    assert ("DeleteOnlyThatConnection" in stmts) == deletes
    if deletes:
        assert stmts["DeleteOnlyThatConnection"]["Condition"] == accept["Condition"]
    writes = {a for s in stmts.values() for a in listify(s["Action"]) if not a.startswith(("ec2:Describe", "logs:"))}
    assert writes == {"ec2:AcceptVpcPeeringConnection", "ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:DeleteRoute"} | (
        {"ec2:DeleteVpcPeeringConnection"} if deletes else set())
    # The inventory function's role is unchanged: Describe only.
    (basic,) = resources["BasicLambdaRole"]["Properties"]["Policies"]
    ec2 = {a for s in statements(basic["PolicyDocument"]) for a in listify(s["Action"]) if a.startswith("ec2:")}
    assert ec2 == {"ec2:DescribeVpcs", "ec2:DescribeSubnets", "ec2:DescribeRouteTables"}
    fn = resources["PeeringFunction"]["Properties"]
    assert fn["Role"] == r.get_att("PeeringFunctionRole", "Arn")
    assert resources["AccountLinkFunction"]["Properties"]["Role"] == r.get_att("BasicLambdaRole", "Arn")
    peering = resources["PeeringAcceptance"]["Properties"]
    assert peering["VpcId"] == vpc
    assert peering["RouteTableIds"] == (r.ref("RouteTable") if scenario == "created-vpc" else "")
    assert peering["DeleteConnectionOnDelete"] == ("true" if deletes else "false")
    # The link event gets the peering's state from the peering resource's attributes.
    assert set(resources["AccountLink"]["Properties"]["Peering"]) == {
        "VpcPeeringConnectionId", "Status", "ProviderCidr", "RouteTableIds", "RequesterVpcId", "AccepterVpcId"}


def test_no_peering_resources_without_a_connection_id(template):
    _, resources = render(template, "no-vpc")
    assert not {"PeeringFunction", "PeeringFunctionRole", "PeeringLogGroup", "PeeringAcceptance"} & set(resources)
    assert "Peering" not in resources["AccountLink"]["Properties"]


def test_flow_logs_of_the_created_vpc(template):
    r, resources = render(template, "created-vpc")
    log = resources["VpcFlowLog"]["Properties"]
    assert (log["ResourceId"], log["ResourceType"], log["TrafficType"]) == (r.ref("Vpc"), "VPC", "ALL")
    assert log["LogDestination"] == r.get_att("VpcFlowLogGroup", "Arn")
    assert resources["VpcFlowLogGroup"]["Properties"]["RetentionInDays"] == "90"
    trust = resources["VpcFlowLogRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    assert "VpcFlowLog" not in Renderer(template, {**PROVIDERS, "CreateVpc": "true", "VpcFlowLogs": "false"}).resources()


# --- parameters ------------------------------------------------------------------------------------


def pattern(template, name):
    return re.compile(template["Parameters"][name]["AllowedPattern"])


@pytest.mark.parametrize("value,ok", [
    ("10.20.0.0/16", True), ("10.0.0.0/16", True), ("172.31.0.0/16", True), ("255.255.0.0/16", True),
    ("999.999.0.0/16", False), ("10.0.1.0/16", False), ("256.0.0.0/16", False), ("10.0.0.0/17", False),
    ("010.0.0.0/16", False), ("10.20.0.0", False), ("10.20.0.0/16 ", False),
])
def test_vpc_cidr_accepts_only_real_16_blocks(template, value, ok):
    assert bool(pattern(template, "VpcCidr").fullmatch(value)) is ok


def test_cfn_lint_refuses_an_invalid_vpc_cidr(tmp_path):
    # The same pattern checked by a second implementation: cfn-lint validates a default against it.
    bad = tmp_path / "bad.yaml"
    bad.write_text(TEMPLATE.read_text().replace("    Default: 10.0.0.0/16\n", "    Default: 999.999.0.0/16\n", 1))
    p = subprocess.run([str(BIN / "cfn-lint"), str(bad)], capture_output=True, text=True)
    assert p.returncode != 0 and "E2015" in p.stdout, p.stdout


@pytest.mark.parametrize("name,value,ok", [
    ("ProviderCidr", "10.8.0.0/16", True), ("ProviderCidr", "192.168.4.0/24", True), ("ProviderCidr", "", True),
    ("ProviderCidr", "10.8.0.0/8", False), ("ProviderCidr", "10.8.0.0/29", False), ("ProviderCidr", "300.8.0.0/16", False),
    ("PeeringConnectionId", PCX, True), ("PeeringConnectionId", "pcx-1234abcd", True), ("PeeringConnectionId", "pcx-1", False),
    ("PeeringRouteTableIds", "rtb-1234abcd", True), ("PeeringRouteTableIds", "igw-1234abcd", False),
])
def test_peering_parameters(template, name, value, ok):
    assert bool(pattern(template, name).fullmatch(value)) is ok
