"""template.yaml and its shipping tools: cfn-lint, checkov, the handler contract, packaging, quick-create links.

Run with the project's virtualenv: .venv/bin/python -m pytest tests/template -q
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
BIN = Path(sys.executable).parent
SCRIPTS = ROOT / "scripts"

# The scripts under test, importable through pytest.ini's pythonpath.
import package_template  # noqa: E402
import quick_create_link  # noqa: E402
import template_contract  # noqa: E402

# The checks that cannot apply to this stack, each skipped in the template with a reason.
EXPECTED_SKIPS = {
    ("FunctionLogGroup", "CKV_AWS_158"),
    ("PeeringLogGroup", "CKV_AWS_158"),
    ("VpcFlowLogGroup", "CKV_AWS_158"),
    ("PeeringFunction", "CKV_AWS_115"),
    ("PeeringFunction", "CKV_AWS_116"),
    ("PeeringFunction", "CKV_AWS_117"),
    ("AccountLinkFunction", "CKV_AWS_115"),
    ("AccountLinkFunction", "CKV_AWS_116"),
    ("AccountLinkFunction", "CKV_AWS_117"),
    ("AccountLinkFunction", "CKV_AWS_173"),
    ("SigningSecret", "CKV_AWS_149"),
}
BUCKET = "acme-account-link-eu-west-1"
# The functions built from this repository (one binary): the inventory function and the peering function.
FUNCTIONS = ("AccountLinkFunction", "PeeringFunction")
SHA = "a" * 64
ZIP_KEY = f"account-link/1.2.3/account-link-{SHA}.zip"
FAKE_ZIP = b"PK\x05\x06" + b"\0" * 18
FAKE_ZIP_KEY = f"account-link/1.2.3/account-link-{hashlib.sha256(FAKE_ZIP).hexdigest()}.zip"
SIGNING_PROFILE = "arn:aws:signer:eu-west-1:111111111111:/signing-profiles/AcmeLink/abcdef1234"


def tool(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{path} missing: run make (it installs the pinned Python tools into .venv)"
    return str(path)


def run(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=ROOT, **kw)


def cfn_lint(*paths) -> subprocess.CompletedProcess:
    return run(tool("cfn-lint"), *paths)


def checkov(path) -> dict:
    p = run(tool("checkov"), "-f", path, "--framework", "cloudformation", "--skip-download", "-o", "json")
    assert p.returncode in (0, 1), p.stderr
    report = json.loads(p.stdout)
    assert isinstance(report, dict), f"checkov scanned nothing in {path}: {p.stdout[:300]}"
    return report


def load(path_or_text, text=False):
    return cfn_yaml.loads(path_or_text) if text else cfn_yaml.load(str(path_or_text))


@pytest.fixture(scope="module")
def template():
    return json.loads(json.dumps(load(TEMPLATE)))


@pytest.fixture(scope="module")
def all_on(tmp_path_factory, template):
    """The template with every optional part switched on by default (VPC, flow logs, peering role and
    acceptance, shared roles, SNS, external id, regions), so that scanners that evaluate conditions see every
    resource."""
    t = json.loads(json.dumps(template))
    defaults = {
        "CreateVpc": "true",
        "CreatePeeringRole": "true",
        "GlobalRolesRegion": "eu-west-1",
        "ProviderSnsTopicArn": "arn:aws:sns:eu-west-1:123456789012:links",
        "ExternalId": "0123456789abcdef0123456789abcdef",
        "ProviderCallbackUrl": "https://hooks.provider.example/aws",
        "ProviderSigningSecret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "CodeSigningProfileVersionArn": "arn:aws:signer:eu-west-1:111111111111:/signing-profiles/AcmeLink/abcdef1234",
        "Regions": "eu-west-1,us-east-1",
        "ProviderAccountId": "111111111111",
        "ProviderPlayerAccountId": "222222222222",
        "ProviderServiceAccountId": "333333333333",
        "PeeringConnectionId": "pcx-0123456789abcdef0",
        "ProviderCidr": "10.8.0.0/16",
        "PeeringOnDelete": "delete-connection",
    }
    for name, value in defaults.items():
        t["Parameters"][name]["Default"] = value
    path = tmp_path_factory.mktemp("all_on") / "template.json"
    path.write_text(json.dumps(t, indent=1))
    return path


# --- linters and scanners ---------------------------------------------------------------------------


def test_cfn_lint_reports_nothing():
    p = cfn_lint(TEMPLATE)
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")


def test_cfn_lint_all_options_on(all_on):
    p = cfn_lint(all_on)
    assert (p.returncode, p.stdout) == (0, ""), p.stdout


@pytest.mark.parametrize("variant", ["template.yaml", "all options on"])
def test_checkov_no_failed_checks(variant, all_on):
    report = checkov(TEMPLATE if variant == "template.yaml" else all_on)
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, failed
    assert summary["passed"] >= 20, "checkov did not parse the SAM template"
    assert summary["parsing_errors"] == 0
    skipped = {(c["resource"].split(".")[-1], c["check_id"]) for c in report["results"]["skipped_checks"]}
    # With the defaults checkov leaves out some conditional resources (the flow log group): fewer skips.
    assert skipped <= EXPECTED_SKIPS
    if variant != "template.yaml":
        assert skipped == EXPECTED_SKIPS
        scanned = {c["resource"].split(".")[-1] for c in report["results"]["passed_checks"]}
        assert {"VpcPeeringRole", "PeeringFunctionRole", "ProviderNetworkPolicy", "VpcFlowLogRole"} <= scanned


def test_every_skip_has_a_one_line_reason(template):
    for name, res in template["Resources"].items():
        for skip in (res.get("Metadata", {}).get("checkov", {}).get("skip", [])):
            comment = skip.get("comment", "")
            assert 30 <= len(comment) <= 200 and "\n" not in comment, (name, skip)


# --- what the template grants -----------------------------------------------------------------------


def test_remote_roles(template):
    r = template["Resources"]
    for name, param in [
        ("RemoteRole", "ProviderAccountId"),
        ("RemoteRolePlayer", "ProviderPlayerAccountId"),
        ("RemoteRoleService", "ProviderServiceAccountId"),
    ]:
        props = r[name]["Properties"]
        # The scoped policy by default, the AWS managed one only when asked (tests/template/test_least_privilege.py).
        assert props["ManagedPolicyArns"] == {"Fn::If": [
            "ScopedAccess",
            [{"Ref": "ProviderNetworkPolicy"}],
            [{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AmazonVPCCrossAccountNetworkInterfaceOperations"}],
        ]}
        assert "Policies" not in props
        (stmt,) = props["AssumeRolePolicyDocument"]["Statement"]
        assert stmt["Principal"] == {"AWS": {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::${{{param}}}:root"}}
        assert stmt["Action"] == "sts:AssumeRole"
        # The ExternalId is required (16+ characters), so the condition is unconditional.
        assert stmt["Condition"] == {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}}
        # A fixed name only when the roles are shared between regions (created once per account).
        assert props["RoleName"]["Fn::If"][0] == "SharedRoles"
        assert r[name]["Condition"] == "MakeRoles"


def test_execution_role_is_least_privilege(template):
    role = template["Resources"]["BasicLambdaRole"]["Properties"]
    assert "ManagedPolicyArns" not in role
    (policy,) = role["Policies"]
    stmts = policy["PolicyDocument"]["Statement"]
    logs, ec2, sns, secret = stmts
    assert logs["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert logs["Resource"] == {"Fn::GetAtt": ["FunctionLogGroup", "Arn"]}
    assert ec2["Action"] == ["ec2:DescribeVpcs", "ec2:DescribeSubnets", "ec2:DescribeRouteTables"]
    assert sns["Fn::If"][0] == "HasSnsTopic"
    assert sns["Fn::If"][1]["Action"] == "sns:Publish"
    assert sns["Fn::If"][1]["Resource"] == {"Ref": "ProviderSnsTopicArn"}
    assert sns["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    # The signing secret: this one secret, read only.
    assert secret["Fn::If"][0] == "HasSigningSecret"
    assert secret["Fn::If"][1]["Action"] == "secretsmanager:GetSecretValue"
    assert secret["Fn::If"][1]["Resource"] == {"Ref": "SigningSecret"}
    assert secret["Fn::If"][2] == {"Ref": "AWS::NoValue"}


def test_the_signing_secret_is_not_in_the_functions_configuration(template):
    env = template["Resources"]["AccountLinkFunction"]["Properties"]["Environment"]["Variables"]
    assert "PROVIDER_SIGNING_SECRET" not in env
    assert env["PROVIDER_SIGNING_SECRET_ARN"] == {"Fn::If": ["HasSigningSecret", {"Ref": "SigningSecret"}, ""]}
    body = json.dumps(template["Resources"]["AccountLinkFunction"])
    assert "ProviderSigningSecret" not in body, "the function must not see the secret's value"
    secret = template["Resources"]["SigningSecret"]
    assert secret["Type"] == "AWS::SecretsManager::Secret" and secret["Condition"] == "HasSigningSecret"
    assert secret["Properties"]["SecretString"] == {"Ref": "ProviderSigningSecret"}
    assert template["Parameters"]["ProviderSigningSecret"]["NoEcho"] is True


def test_external_id_is_required_and_long(template):
    p = template["Parameters"]["ExternalId"]
    assert "Default" not in p and p["MinLength"] == 16
    pattern = re.compile(p["AllowedPattern"])
    assert pattern.fullmatch("0123456789abcdef") and pattern.fullmatch("a+b=c,d.e@f:g/h-i_j")
    for bad in ["", "short-id", "0123456789abcde", "has space in it!!", "x" * 1225]:
        assert not pattern.fullmatch(bad), bad


def test_auth_mode_rules(template):
    assert template["Parameters"]["ProviderAuthMode"]["AllowedValues"] == ["hmac-and-proof", "proof-only", "hmac-only"]
    assert template["Parameters"]["ProviderAuthMode"]["Default"] == "hmac-and-proof"
    rules = template["Rules"]
    assert {"CallbackNeedsSecret", "ProofOnlyHasNoSecret", "SnsProofNeedsAudience"} <= set(rules)


def test_optional_code_signing_enforces(template):
    r = template["Resources"]
    csc = r["CodeSigningConfig"]
    assert csc["Condition"] == "HasCodeSigning"
    assert csc["Properties"]["CodeSigningPolicies"] == {"UntrustedArtifactOnDeployment": "Enforce"}
    assert csc["Properties"]["AllowedPublishers"] == {"SigningProfileVersionArns": [{"Ref": "CodeSigningProfileVersionArn"}]}
    assert r["AccountLinkFunction"]["Properties"]["CodeSigningConfigArn"] == {
        "Fn::If": ["HasCodeSigning", {"Ref": "CodeSigningConfig"}, {"Ref": "AWS::NoValue"}]}


def test_function(template):
    fn = template["Resources"]["AccountLinkFunction"]
    p = fn["Properties"]
    assert fn["Type"] == "AWS::Serverless::Function"
    assert fn["Metadata"]["BuildMethod"] == "rust-cargolambda"
    assert fn["Metadata"]["BuildProperties"] == {"Binary": "account-link"}
    assert (p["CodeUri"], p["Handler"], p["Runtime"], p["Architectures"]) == (".", "bootstrap", "provided.al2023", ["arm64"])
    assert 128 <= p["MemorySize"] <= 256
    assert p["LoggingConfig"] == {"LogFormat": "JSON", "LogGroup": {"Ref": "FunctionLogGroup"}}
    assert template["Parameters"]["ProviderSigningSecret"]["NoEcho"] is True
    link = template["Resources"]["AccountLink"]
    # CloudFormation waits at most ServiceTimeout: longer than the function and Lambda's two async retries.
    # Three attempts of at most Timeout seconds, about 1 and 2 minutes apart.
    assert p["Timeout"] * 3 + 180 <= link["Properties"]["ServiceTimeout"] < 3600
    assert link["Properties"]["ServiceToken"] == {"Fn::GetAtt": ["AccountLinkFunction", "Arn"]}


def _without_descriptions(value):
    if isinstance(value, dict):
        return {k: _without_descriptions(v) for k, v in value.items() if k not in ("Description", "ConstraintDescription")}
    if isinstance(value, list):
        return [_without_descriptions(v) for v in value]
    return value


def test_portable_across_regions_partitions_and_stacksets(template):
    body = json.dumps(_without_descriptions(template))
    assert "arn:aws:" not in body, "use ${AWS::Partition}"
    assert not re.search(r"\b(us|eu|ap|sa|ca|me|af|il|mx)-[a-z]+-\d\b", body), "no region may be hard-coded"
    t = load(TEMPLATE)
    assert all("Export" not in o for o in t["Outputs"].values()), "export names collide between stacks"
    named = {n for n, r in t["Resources"].items() for k in r.get("Properties", {}) if k.endswith("Name") and k != "PolicyName"}
    assert named == {"RemoteRole", "RemoteRolePlayer", "RemoteRoleService"}


def test_docs_parameter_table_matches_template(template):
    docs = (ROOT / "docs" / "deploying.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", docs, re.M))
    assert set(rows) == set(template["Parameters"])
    for name, spec in template["Parameters"].items():
        default = rows[name].strip()
        if "Default" not in spec:
            assert default == "required", name
        else:
            assert default.strip("`") == (str(spec["Default"]) if spec["Default"] != "" else '""'), name


# --- the contract with the handler ------------------------------------------------------------------


def test_template_contract_script():
    p = run(sys.executable, SCRIPTS / "template_contract.py", TEMPLATE)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {
        "environment": ["PROVIDER_AUDIENCE", "PROVIDER_AUTH_MODE", "PROVIDER_CALLBACK_URL", "PROVIDER_MAX_BODY_BYTES",
                        "PROVIDER_SIGNING_SECRET_ARN", "PROVIDER_SNS_TOPIC_ARN"],
        "properties": ["ExternalId", "Peering", "Regions", "Roles", "VpcId"],
        "peeringProperties": ["DeleteConnectionOnDelete", "PeeringConnectionId", "ProviderAccountId", "ProviderCidr",
                              "RouteTableIds", "VpcId"],
    }


def test_template_contract_globals_and_errors():
    t = load(
        """
Transform: AWS::Serverless-2016-10-31
Globals: {Function: {Environment: {Variables: {FROM_GLOBALS: x}}}}
Resources:
  Fn: {Type: AWS::Serverless::Function, Properties: {Environment: {Variables: {OWN: y}}}}
  Link: {Type: Custom::AccountLink, Properties: {ServiceToken: !GetAtt Fn.Arn, ServiceTimeout: 60, B: 1, A: 2}}
""",
        text=True,
    )
    assert template_contract.contract(t) == {"environment": ["FROM_GLOBALS", "OWN"], "properties": ["A", "B"],
                                             "peeringProperties": []}
    t["Resources"]["Link"]["Properties"]["ServiceToken"] = "arn:aws:lambda:eu-west-1:1:function:x"
    with pytest.raises(template_contract.ContractError, match="ServiceToken"):
        template_contract.contract(t)
    del t["Resources"]["Link"]
    with pytest.raises(template_contract.ContractError, match="exactly one Custom::AccountLink"):
        template_contract.contract(t)


# --- packaging --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    d = tmp_path_factory.mktemp("packaged")
    sam, plain = d / "template.yaml", d / "template-plain.yaml"
    common = [SCRIPTS / "package_template.py", TEMPLATE, "--bucket", BUCKET, "--key", ZIP_KEY, "--code-sha256", SHA]
    for out, extra in [(sam, []), (plain, ["--plain"])]:
        p = run(sys.executable, *common, *extra, "-o", out)
        assert p.returncode == 0, p.stderr
    return sam, plain


def test_packaged_templates_pass_cfn_lint(packaged):
    p = cfn_lint(*packaged)
    assert (p.returncode, p.stdout) == (0, ""), p.stdout


def test_packaged_sam_template_references_s3(packaged):
    sam = load(packaged[0])
    assert sam["Transform"] == "AWS::Serverless-2016-10-31"
    for fn in FUNCTIONS:
        assert sam["Resources"][fn]["Properties"]["CodeUri"] == {"Bucket": BUCKET, "Key": ZIP_KEY}
    # Only the CodeUris changed: comments included.
    orig, new = TEMPLATE.read_text().splitlines(), packaged[0].read_text().splitlines()
    assert len(new) == len(orig) + 2 * len(FUNCTIONS)
    assert sum(line.lstrip().startswith("#") for line in new) == sum(line.lstrip().startswith("#") for line in orig)
    assert f"sha256 {SHA}" in packaged[0].read_text()


def test_packaged_plain_template_for_stacksets(packaged):
    plain = load(packaged[1])
    assert "Transform" not in plain
    for name in FUNCTIONS:
        fn = plain["Resources"][name]
        assert fn["Type"] == "AWS::Lambda::Function"
        assert fn["Properties"]["Code"] == {"S3Bucket": BUCKET, "S3Key": ZIP_KEY}
        assert "CodeUri" not in fn["Properties"]
    assert template_contract.contract(plain) == template_contract.contract(load(TEMPLATE))
    report = checkov(packaged[1])
    assert report["summary"]["failed"] == 0


def test_package_template_rejects_bad_input():
    text = TEMPLATE.read_text()
    with pytest.raises(package_template.PackageError, match="bucket"):
        package_template.package(text, "Bad_Bucket", ZIP_KEY, sha256=SHA)
    with pytest.raises(package_template.PackageError, match="key"):
        package_template.package(text, BUCKET, "/abs key", sha256=SHA)
    once = package_template.package(text, BUCKET, ZIP_KEY, sha256=SHA)
    with pytest.raises(package_template.PackageError, match="at least one .* local CodeUri, found 0"):
        package_template.package(once, BUCKET, ZIP_KEY, sha256=SHA)
    with pytest.raises(package_template.PackageError, match="cannot convert"):
        package_template.package(text.replace("      Handler: bootstrap\n", "      Handler: bootstrap\n      AutoPublishAlias: live\n"),
                                 BUCKET, ZIP_KEY, sha256=SHA, plain=True)
    versioned = load(package_template.package(text, BUCKET, "k/account-link.zip", version="v1", plain=True), text=True)
    assert versioned["Resources"]["AccountLinkFunction"]["Properties"]["Code"]["S3ObjectVersion"] == "v1"
    # Unpinned code is refused: a key someone could overwrite, or a hash the key does not carry.
    for kw in [{}, {"sha256": SHA, "key": "account-link/1.2.3/account-link.zip"}]:
        with pytest.raises(package_template.PackageError, match="must be pinned"):
            package_template.package(text, BUCKET, kw.pop("key", "account-link/1.2.3/account-link.zip"), **kw)
    regional = "acme-link-${AWS::Region}"
    with pytest.raises(package_template.PackageError, match="needs --regions"):
        package_template.package(text, regional, ZIP_KEY, sha256=SHA)
    with pytest.raises(package_template.PackageError, match="not a region name"):
        package_template.package(text, regional, ZIP_KEY, sha256=SHA, regions=["eu-west-1", "moon"])
    with pytest.raises(package_template.PackageError, match="signing profile"):
        package_template.package(text, BUCKET, ZIP_KEY, sha256=SHA, signing_profile="arn:aws:iam::1:role/x")


def test_published_template_refuses_unpublished_regions_and_can_enforce_signing():
    text = TEMPLATE.read_text()
    out = package_template.package(text, "acme-link-${AWS::Region}", ZIP_KEY, sha256=SHA, plain=True,
                                   regions=["eu-west-1", "cn-north-1"], signing_profile=SIGNING_PROFILE)
    t = load(out, text=True)
    assert t["Mappings"]["CodeBuckets"] == {"eu-west-1": {"Name": "acme-link-eu-west-1"},
                                            "cn-north-1": {"Name": "acme-link-cn-north-1"}}
    assert t["Resources"]["AccountLinkFunction"]["Properties"]["Code"] == {
        "S3Bucket": {"Fn::FindInMap": ["CodeBuckets", {"Ref": "AWS::Region"}, "Name"]}, "S3Key": ZIP_KEY}
    (assertion,) = t["Rules"]["PublishedRegion"]["Assertions"]
    assert assertion["Assert"] == {"Fn::Contains": [["eu-west-1", "cn-north-1"], {"Ref": "AWS::Region"}]}
    assert t["Parameters"]["CodeSigningProfileVersionArn"]["Default"] == SIGNING_PROFILE
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"published-{os.getpid()}.yaml"
    path.write_text(out)
    try:
        p = cfn_lint(path)
        assert (p.returncode, p.stdout) == (0, ""), p.stdout
    finally:
        path.unlink()


def publish(tmp_path, *args, path="/usr/bin:/bin"):
    zip_file = tmp_path / "account-link.zip"
    zip_file.write_bytes(FAKE_ZIP)
    env = {**os.environ, "PATH": path, "PYTHON": sys.executable}
    return run("bash", SCRIPTS / "publish.sh", "--bucket-prefix", "acme-link", "--regions", "eu-west-1,cn-north-1",
               "--version", "1.2.3", "--zip", zip_file, "--out-dir", tmp_path / "out", *args, env=env)


def test_publish_dry_run(tmp_path):
    p = publish(tmp_path, "--dry-run")  # no aws CLI on PATH: a dry run does not need it
    assert p.returncode == 0, p.stderr + p.stdout
    assert f"s3://acme-link-eu-west-1/{FAKE_ZIP_KEY}" in p.stdout
    assert "https://acme-link-cn-north-1.s3.cn-north-1.amazonaws.com.cn/account-link/1.2.3/template.yaml" in p.stdout
    assert "https://acme-link-eu-west-1.s3.eu-west-1.amazonaws.com/account-link/1.2.3/template-plain.yaml" in p.stdout
    # One template for every published region: the code bucket follows the stack's region, the key is
    # the zip's SHA-256, and other regions are refused.
    in_region = {"Fn::FindInMap": ["CodeBuckets", {"Ref": "AWS::Region"}, "Name"]}
    plain = load(tmp_path / "out" / "1.2.3" / "template-plain.yaml")
    assert plain["Resources"]["AccountLinkFunction"]["Properties"]["Code"] == {"S3Bucket": in_region, "S3Key": FAKE_ZIP_KEY}
    sam = load(tmp_path / "out" / "1.2.3" / "template.yaml")
    assert sam["Resources"]["AccountLinkFunction"]["Properties"]["CodeUri"] == {"Bucket": in_region, "Key": FAKE_ZIP_KEY}
    assert set(sam["Mappings"]["CodeBuckets"]) == {"eu-west-1", "cn-north-1"}
    assert sam["Rules"]["PublishedRegion"]["Assertions"][0]["Assert"]["Fn::Contains"][0] == ["eu-west-1", "cn-north-1"]
    p = cfn_lint(tmp_path / "out" / "1.2.3" / "template.yaml", tmp_path / "out" / "1.2.3" / "template-plain.yaml")
    assert (p.returncode, p.stdout) == (0, ""), p.stdout
    bad = run("bash", SCRIPTS / "publish.sh", "--regions", "eu-west-1")
    assert bad.returncode == 2 and "--bucket-prefix is required" in bad.stderr


FAKE_AWS = """#!/bin/bash
echo "$*" >> "$AWS_LOG"
case "$*" in
  *get-bucket-location*) all="$*"; b="${all##*--bucket }"; b="${b%% *}"; echo "${b#acme-link-}" ;;
  *head-object*) [[ -n "${AWS_EXISTS:-}" ]] ;;
esac
"""


@pytest.mark.parametrize("exists", [False, True])
def test_publish_with_fake_aws_cli(tmp_path, exists):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "aws").write_text(FAKE_AWS)
    (bindir / "aws").chmod(0o755)
    log = tmp_path / "aws.log"
    os.environ["AWS_LOG"] = str(log)
    os.environ.pop("AWS_EXISTS", None)
    if exists:
        os.environ["AWS_EXISTS"] = "1"
    try:
        p = publish(tmp_path, path=f"{bindir}:/usr/bin:/bin")
    finally:
        os.environ.pop("AWS_LOG")
        os.environ.pop("AWS_EXISTS", None)
    calls = log.read_text().splitlines()
    copies = [c for c in calls if c.startswith("s3 cp")]
    if exists:
        assert p.returncode == 2 and "already exists" in p.stderr
        assert copies == [], "nothing may be uploaded when a version exists"
        return
    assert p.returncode == 0, p.stderr
    assert sum("get-bucket-location" in c for c in calls) == 2
    assert len(copies) == 6
    assert any(c.endswith(f"s3://acme-link-cn-north-1/{FAKE_ZIP_KEY}") and "--region cn-north-1" in c for c in copies)
    assert any(c.endswith("s3://acme-link-eu-west-1/account-link/1.2.3/template-plain.yaml") for c in copies)


# --- quick-create link ------------------------------------------------------------------------------


def link(*args) -> subprocess.CompletedProcess:
    return run(sys.executable, SCRIPTS / "quick_create_link.py", *args)


def parse_link(url: str):
    parts = urlsplit(url)
    path, _, query = parts.fragment.partition("?")
    return parts, path, {k: v[0] for k, v in parse_qs(query, strict_parsing=True).items()}


def test_quick_create_link_round_trip():
    turl = "https://acme-eu-west-1.s3.eu-west-1.amazonaws.com/account-link/1.2.3/template.yaml"
    p = link("--region", "eu-west-1", "--template-url", turl, "--stack-name", "acme-link",
             "--external-id", "a+b=c,d.e@f:g/h-i_j", "--param", "ProviderAccountId=111111111111",
             "--param", "Regions=eu-west-1,us-east-1", "--param", "CreateVpc=true")
    assert p.returncode == 0, p.stderr
    url = p.stdout.strip()
    parts, path, q = parse_link(url)
    assert (parts.scheme, parts.netloc, parts.path, parts.query) == (
        "https", "eu-west-1.console.aws.amazon.com", "/cloudformation/home", "region=eu-west-1")
    assert path == "/stacks/quickcreate"
    assert q == {
        "templateURL": turl,
        "stackName": "acme-link",
        "param_ExternalId": "a+b=c,d.e@f:g/h-i_j",
        "param_ProviderAccountId": "111111111111",
        "param_Regions": "eu-west-1,us-east-1",
        "param_CreateVpc": "true",
    }
    # Every reserved character is encoded: the fragment splits only at & and =.
    fragment_query = parts.fragment.partition("?")[2]
    assert all(re.fullmatch(r"[A-Za-z_]+=[A-Za-z0-9%._~-]*", kv) for kv in fragment_query.split("&"))


def test_quick_create_link_generates_external_id():
    p = link("--region", "us-west-2", "--template-url", "https://b.s3.us-west-2.amazonaws.com/k/template.yaml",
             "--external-id", "auto", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert re.fullmatch(r"[0-9a-f]{32}", out["externalId"])
    assert parse_link(out["url"])[2]["param_ExternalId"] == out["externalId"]


@pytest.mark.parametrize(
    "region,host",
    [("cn-northwest-1", "console.amazonaws.cn"), ("us-gov-west-1", "console.amazonaws-us-gov.com"),
     ("ap-southeast-2", "ap-southeast-2.console.aws.amazon.com")],
)
def test_quick_create_link_partition_hosts(region, host):
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    p = link("--region", region, "--template-url", f"https://b.s3.{region}.{suffix}/k/template.yaml")
    assert p.returncode == 0, p.stderr
    parts, _, q = parse_link(p.stdout.strip())
    assert parts.netloc == host and parts.query == f"region={region}"
    assert q["stackName"] == "account-link"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--region", "moon-1"], "not a region name"),
        (["--region", "us-isob-east-1"], "no public console"),
        (["--template-url", "http://b.s3.eu-west-1.amazonaws.com/t.yaml"], "https URL"),
        (["--template-url", "https://example.com/t.yaml"], "not Amazon S3"),
        (["--template-url", "https://b.s3.us-east-1.amazonaws.com/t.yaml"], "is in us-east-1 but --region is eu-west-1"),
        (["--stack-name", "1bad"], "--stack-name"),
        (["--param", "ProviderSigningSecret=whsec_x"], "NoEcho"),
        (["--param", "ProviderAccountId=12345"], "12-digit"),
        (["--param", "CreateVpc=yes"], "not one of"),
        (["--param", "Regions=eu-west-1,nowhere"], "region names"),
        (["--param", "NoSuchParam=1"], "no such parameter"),
        (["--param", "VpcId=vpc-0123abcd", "--param", "VpcId=vpc-4567abcd"], "given twice"),
        (["--external-id", "x"], "--external-id"),
        (["--external-id", "auto", "--param", "ExternalId=abc"], "not both"),
    ],
)
def test_quick_create_link_rejects(args, message):
    base = {"--region": "eu-west-1", "--template-url": "https://b.s3.eu-west-1.amazonaws.com/k/template.yaml"}
    argv = []
    for k, v in base.items():
        if k not in args:
            argv += [k, v]
    p = link(*argv, *args)
    assert p.returncode == 2 and message in p.stderr, p.stderr
