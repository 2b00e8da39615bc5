"""deploy/provider.yaml, the provider's stack: cfn-lint, checkov and parliament, and what it promises, on the
template rendered as CloudFormation would (render.py) for representative parameters. Where the stack and
link-receiver must agree (environment variables, flags, port, health check, the image's paths), the values
are read from the receiver's sources and deploy/Containerfile, not repeated here.

Run with the project's virtualenv: .venv/bin/python -m pytest tests/template -q
"""
from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cfnlint.decode import cfn_yaml

from render import ACCOUNT, PARTITION, REGION, Renderer, identity_policies
from test_least_privilege import lint
from test_tooling import checkov, cfn_lint

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "deploy" / "provider.yaml"
CONTAINERFILE = ROOT / "deploy" / "Containerfile"
CUSTOMER_TEMPLATE = ROOT / "template.yaml"
RECEIVER_SRC = ROOT / "crates" / "link-registry" / "src"

DOMAIN = "links.provider.example"
SIGNING_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:link-receiver/signing-AbCdEf"
REQUIRED = {
    "VpcId": "vpc-0123456789abcdef0",
    "VpcCidr": "10.20.0.0/16",
    "PublicSubnetIds": "subnet-0aaaaaaaaaaaaaaa1,subnet-0aaaaaaaaaaaaaaa2",
    "PrivateSubnetIds": "subnet-0bbbbbbbbbbbbbbb1,subnet-0bbbbbbbbbbbbbbb2",
    "DomainName": DOMAIN,
    "CertificateArn": f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
    "ImageUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/link-receiver:0.1.0-5e6796933c61",
}
SCENARIOS = {
    "default": {**REQUIRED, "SigningSecretArn": SIGNING_ARN},
    "everything": {**REQUIRED, "SigningSecretArn": SIGNING_ARN, "HostedZoneId": "Z0123456789ABCDEFGHIJ",
                   "TemplateUrl": "https://acme-templates.s3.eu-west-1.amazonaws.com/account-link/1.0.0/template.yaml",
                   "StackRegion": "us-east-1", "AuthMode": "hmac-only", "DBMultiAZ": "false",
                   "PlayerAccountId": "222233334444", "ServiceAccountId": "333344445555"},
    "proof-only": {**REQUIRED, "AuthMode": "proof-only"},
}
# Checks that do not apply, each skipped in the template with its reason.
EXPECTED_SKIPS = {
    ("LogGroup", "CKV_AWS_158"),
    ("ApiTokenSecret", "CKV_AWS_149"),
    ("LoadBalancerSecurityGroup", "CKV_AWS_260"),
    ("Database", "CKV_AWS_118"),
    ("Database", "CKV_AWS_161"),
    ("LoadBalancer", "CKV_AWS_91"),
}


@pytest.fixture(scope="module")
def template():
    return json.loads(json.dumps(cfn_yaml.load(str(STACK))))


def render(template, scenario: str) -> dict:
    return Renderer(template, SCENARIOS[scenario]).resources()


def props(resources: dict, name: str) -> dict:
    return resources[name]["Properties"]


def containers(resources: dict) -> dict[str, dict]:
    return {c["Name"]: c for c in props(resources, "TaskDefinition")["ContainerDefinitions"]}


def env(container: dict) -> dict[str, str]:
    return {e["Name"]: e["Value"] for e in container.get("Environment", [])}


def secrets(container: dict) -> dict[str, str]:
    return {s["Name"]: s["ValueFrom"] for s in container.get("Secrets", [])}


def flag_values(args: list[str], flag: str) -> list[str]:
    """The values of --flag=VALUE arguments (the stack's form: optional ones are single list items)."""
    return [a.split("=", 1)[1] for a in args if a.startswith(flag + "=")]


def flag_value(args: list[str], flag: str) -> str:
    (value,) = flag_values(args, flag)
    return value


@pytest.fixture(scope="module")
def receiver_config() -> str:
    return (RECEIVER_SRC / "config.rs").read_text()


def receiver_env_names(config: str) -> set[str]:
    return set(re.findall(r'env = "([A-Z_]+)"', config))


def receiver_flags(config: str) -> set[str]:
    """The long flags of link-receiver: clap derives them from the field names (or long = "...")."""
    named = set(re.findall(r'long = "([a-z-]+)"', config))
    fields = re.findall(r"#\[arg\((?:[^\]]*?)\)\]\s*pub (\w+):", config, flags=re.S)
    return named | {"--" + f.replace("_", "-") for f in fields} | {"--" + n for n in named}


def containerfile() -> dict:
    text = CONTAINERFILE.read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))
    expose = int(re.search(r"^EXPOSE (\d+)$", text, re.M).group(1))
    listen = re.search(r"LINK_RECEIVER_LISTEN=(\S+)", text).group(1)
    return {"entrypoint": entry, "expose": expose, "listen": listen, "text": text}


# --- linters and scanners ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def everything_on(tmp_path_factory, template):
    """Every optional part on by default, so the linters see every resource and branch."""
    t = json.loads(json.dumps(template))
    optional = ("SigningSecretArn", "HostedZoneId", "TemplateUrl", "StackRegion", "PlayerAccountId", "ServiceAccountId")
    for name, value in SCENARIOS["everything"].items():
        if name in optional or "Default" not in t["Parameters"][name]:
            t["Parameters"][name]["Default"] = value
    path = tmp_path_factory.mktemp("provider") / "provider.json"
    path.write_text(json.dumps(t, indent=1))
    return path


def test_cfn_lint_reports_nothing(everything_on, tmp_path):
    restoring = json.loads(everything_on.read_text())
    restoring["Parameters"]["RestoreSnapshot"]["Default"] = f"arn:aws:rds:{REGION}:{ACCOUNT}:snapshot:before-upgrade"
    (tmp_path / "restoring.json").write_text(json.dumps(restoring))
    for path in (STACK, everything_on, tmp_path / "restoring.json"):
        p = cfn_lint(path)
        assert (p.returncode, p.stdout, p.stderr) == (0, "", ""), path


def test_checkov_no_failed_checks(everything_on):
    # One scan (checkov is slow): the defaults of the shipped template with every optional resource on.
    report = checkov(everything_on)
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert report["summary"]["failed"] == 0, failed
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] >= 40
    skipped = {(c["resource"].split(".")[-1], c["check_id"]) for c in report["results"]["skipped_checks"]}
    assert skipped == EXPECTED_SKIPS


def test_every_skip_has_a_one_line_reason(template):
    for name, res in template["Resources"].items():
        for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", []):
            comment = skip.get("comment", "")
            assert 30 <= len(comment) <= 200 and "\n" not in comment, (name, skip)


# Parliament's community auditor reports every grant of an action that returns credentials. Each role here
# needs exactly one such action for its purpose: ECS pulls the image with a registry token, and the task
# role exists to assume customers' roles. Those are allowed; nothing else may be reported.
CREDENTIAL_ACTIONS = {
    "ExecutionRole/start-receivers": "ecr:GetAuthorizationToken",
    "TaskRole/assume-customer-roles": "sts:AssumeRole",
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_the_roles_pass_parliament(template, scenario):
    policies = identity_policies(render(template, scenario))
    assert set(policies) == set(CREDENTIAL_ACTIONS)
    for name, doc in policies.items():
        assert lint(doc, allow=("CREDENTIALS_EXPOSURE",)) == [], f"{scenario}: {name}"
        action = CREDENTIAL_ACTIONS[name]
        others = [s for s in doc["Statement"] if s["Action"] != action]
        if others:
            assert lint(dict(doc, Statement=others)) == [], f"{scenario}: {name} without {action}"
        # ...and the allowed finding is there for that action only (the auditor does look).
        alone = dict(doc, Statement=[s for s in doc["Statement"] if s["Action"] == action])
        assert lint(alone) == ["CREDENTIALS_EXPOSURE: "], name


# --- what the roles allow ---------------------------------------------------------------------------


def test_the_task_role_may_only_assume_customers_remote_roles_with_an_external_id(template):
    resources = render(template, "default")
    role = props(resources, "TaskRole")
    assert "ManagedPolicyArns" not in role and "PermissionsBoundary" not in role
    (policy,) = role["Policies"]
    (stmt,) = policy["PolicyDocument"]["Statement"]
    assert stmt == {
        "Effect": "Allow",
        "Action": "sts:AssumeRole",
        "Resource": f"arn:{PARTITION}:iam::*:role/*RemoteRole*",
        "Condition": {"Null": {"sts:ExternalId": "false"}},
    }
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    # No other role is given to what runs in the task.
    assert props(resources, "TaskDefinition")["TaskRoleArn"] == f"arn:{PARTITION}:iam::{ACCOUNT}:role/{Renderer(template, SCENARIOS['default']).ref('TaskRole')}"


def test_the_customer_roles_are_the_ones_the_task_role_may_assume(template):
    """The customer template's roles, by generated and by shared name, match the task role's resource; they
    trust the provider's account (this stack's, the ProviderAccountId output) and require the ExternalId."""
    customer = json.loads(json.dumps(cfn_yaml.load(str(CUSTOMER_TEMPLATE))))
    pattern = props(render(template, "default"), "TaskRole")["Policies"][0]["PolicyDocument"]["Statement"][0]["Resource"]
    for logical in ("RemoteRole", "RemoteRolePlayer", "RemoteRoleService"):
        role = customer["Resources"][logical]["Properties"]
        generated = f"arn:aws:iam::210987654321:role/account-link-acme-{logical}-1A2B3C4D5E6F"
        shared = f"arn:aws:iam::210987654321:role/AccountLink-{logical}"
        assert role["RoleName"]["Fn::If"][1] == {"Fn::Sub": f"${{RoleNamePrefix}}-{logical}"}
        for arn in (generated, shared):
            assert fnmatch.fnmatchcase(arn, pattern), arn
        (stmt,) = role["AssumeRolePolicyDocument"]["Statement"]
        assert "sts:ExternalId" in stmt["Condition"]["StringEquals"]
    assert template["Outputs"]["ProviderAccountId"]["Value"] == {"Ref": "AWS::AccountId"}
    # Other roles in customers' accounts are out of reach.
    assert not fnmatch.fnmatchcase("arn:aws:iam::210987654321:role/OrganizationAccountAccessRole", pattern)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_the_execution_role_reads_exactly_the_tasks_secrets(template, scenario):
    resources = render(template, scenario)
    r = Renderer(template, SCENARIOS[scenario])
    stmts = props(resources, "ExecutionRole")["Policies"][0]["PolicyDocument"]["Statement"]
    by_action = {json.dumps(s["Action"]): s for s in stmts}
    secret_stmt = by_action['"secretsmanager:GetSecretValue"']
    wanted = {r.ref("ApiTokenSecret"), r.get_att("Database", "MasterUserSecret.SecretArn")}
    if scenario != "proof-only":
        wanted.add(SIGNING_ARN)
    assert set(secret_stmt["Resource"]) == wanted
    # What the containers get from Secrets Manager is exactly that (the password by its JSON key).
    handed = {v.removesuffix(":password::") for c in containers(resources).values() for v in secrets(c).values()}
    assert handed == wanted
    pull = by_action['["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]']
    assert pull["Resource"] == f"arn:{PARTITION}:ecr:{REGION}:{ACCOUNT}:repository/*"
    logs = by_action['["logs:CreateLogStream", "logs:PutLogEvents"]']
    assert logs["Resource"] == r.get_att("LogGroup", "Arn")
    assert len(stmts) == 4


# --- the receiver's settings ------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_secrets_reach_the_tasks_only_as_ecs_secrets(template, scenario, receiver_config):
    resources = render(template, scenario)
    c = containers(resources)
    receiver = c["link-receiver"]
    s = secrets(receiver)
    expected = {"LINK_REGISTRY_DATABASE_PASSWORD", "LINK_REGISTRY_API_TOKEN"}
    if scenario != "proof-only":
        expected.add("PROVIDER_SIGNING_SECRET")
    assert set(s) == expected
    assert s["LINK_REGISTRY_DATABASE_PASSWORD"].endswith(":password::")
    assert set(secrets(c["migrate"])) == {"LINK_REGISTRY_DATABASE_PASSWORD"}
    for container in c.values():
        for name, value in env(container).items():
            assert not re.search(r"SECRET|TOKEN|PASSWORD", name), name
            assert not re.search(r"whsec_[A-Za-z0-9+/=]{16,}", value)
        url = urlsplit(env(container)["LINK_REGISTRY_DATABASE"])
        # The password is inserted by link-receiver from the secret; the URL asks for TLS (RDS requires it).
        assert (url.scheme, url.password, url.username, url.path, url.query) == (
            "postgres", None, props(resources, "Database")["MasterUsername"], "/" + props(resources, "Database")["DBName"],
            "sslmode=require")
        assert url.hostname == Renderer(template, SCENARIOS[scenario]).get_att("Database", "Endpoint.Address").lower()
    # Every variable the stack sets is one link-receiver reads.
    known = receiver_env_names(receiver_config)
    for container in c.values():
        assert set(env(container)) | set(secrets(container)) <= known, container["Name"]


def test_behind_the_load_balancer(template, receiver_config):
    resources = render(template, "everything")
    receiver = containers(resources)["link-receiver"]
    e = env(receiver)
    origin = f"https://{DOMAIN}"
    assert e["LINK_REGISTRY_PUBLIC_URL"] == origin  # Secure console cookies, quick-create callback URL
    assert e["LINK_RECEIVER_AUDIENCE"] == origin
    assert e["LINK_REGISTRY_TRUSTED_PROXY"] == SCENARIOS["everything"]["VpcCidr"]
    ipaddress.ip_network(e["LINK_REGISTRY_TRUSTED_PROXY"])
    assert e["LINK_RECEIVER_AUTH_MODE"] == "hmac-only"
    assert e["LINK_REGISTRY_TEMPLATE_URL"] == SCENARIOS["everything"]["TemplateUrl"]
    assert e["LINK_REGISTRY_STACK_REGION"] == "us-east-1"
    # The flags without a variable, given as the container's command, are link-receiver's flags.
    args = receiver["Command"]
    flags = {a.split("=", 1)[0] for a in args}
    assert flags <= receiver_flags(receiver_config), flags - receiver_flags(receiver_config)
    assert flag_values(args, "--stack-param") == [
        f"ProviderAccountId={ACCOUNT}", "ProviderPlayerAccountId=222233334444", "ProviderServiceAccountId=333344445555"]
    # Parameters the customer template has, by those names.
    customer = json.loads(json.dumps(cfn_yaml.load(str(CUSTOMER_TEMPLATE))))
    for param in flag_values(args, "--stack-param"):
        assert param.split("=")[0] in customer["Parameters"], param
    defaults = render(template, "default")
    e = env(containers(defaults)["link-receiver"])
    assert e["LINK_REGISTRY_STACK_REGION"] == REGION and "LINK_REGISTRY_TEMPLATE_URL" not in e
    assert flag_values(containers(defaults)["link-receiver"]["Command"], "--stack-param") == [f"ProviderAccountId={ACCOUNT}"]
    assert e["LINK_RECEIVER_AUTH_MODE"] == "hmac-and-proof"


def test_the_load_balancer(template):
    resources = render(template, "default")
    lb = props(resources, "LoadBalancer")
    assert (lb["Type"], lb["Scheme"]) == ("application", "internet-facing")
    assert lb["Subnets"] == SCENARIOS["default"]["PublicSubnetIds"].split(",")
    attrs = {a["Key"]: a["Value"] for a in lb["LoadBalancerAttributes"]}
    # The ALB closes idle connections before link-receiver would, so it never reuses one being closed.
    receiver_idle = int(flag_value(containers(resources)["link-receiver"]["Command"], "--idle-timeout"))
    assert int(attrs["idle_timeout.timeout_seconds"]) < receiver_idle
    assert attrs["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert attrs["deletion_protection.enabled"] == "true"

    https = props(resources, "HttpsListener")
    assert (https["Port"], https["Protocol"]) == (443, "HTTPS")
    assert https["Certificates"] == [{"CertificateArn": SCENARIOS["default"]["CertificateArn"]}]
    assert https["SslPolicy"].startswith("ELBSecurityPolicy-TLS13-1-2")
    (forward,) = https["DefaultActions"]
    assert forward["Type"] == "forward"
    http = props(resources, "HttpListener")
    assert (http["Port"], http["Protocol"]) == (80, "HTTP")
    (redirect,) = http["DefaultActions"]
    assert redirect["Type"] == "redirect"
    assert redirect["RedirectConfig"]["Protocol"] == "HTTPS" and redirect["RedirectConfig"]["Port"] == "443"
    assert redirect["RedirectConfig"]["StatusCode"] == "HTTP_301"

    tg = props(resources, "TargetGroup")
    assert (tg["TargetType"], tg["Protocol"], tg["HealthCheckPath"]) == ("ip", "HTTP", "/healthz")
    image = containerfile()
    assert tg["Port"] == image["expose"] == int(image["listen"].rsplit(":", 1)[1])
    # The health check route is the receiver's.
    assert '.route("/healthz"' in (RECEIVER_SRC / "lib.rs").read_text()


def test_the_service(template):
    resources = render(template, "default")
    svc = props(resources, "Service")
    assert svc["LaunchType"] == "FARGATE"
    assert svc["DesiredCount"] == "2"
    assert svc["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert svc["DeploymentConfiguration"]["MinimumHealthyPercent"] == 100
    assert svc["AvailabilityZoneRebalancing"] == "ENABLED"
    net = svc["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert net["Subnets"] == SCENARIOS["default"]["PrivateSubnetIds"].split(",") and len(net["Subnets"]) >= 2
    assert net["AssignPublicIp"] == "DISABLED"
    (lb,) = svc["LoadBalancers"]
    assert (lb["ContainerName"], lb["ContainerPort"]) == ("link-receiver", 8080)
    assert svc["EnableExecuteCommand"] is False

    td = props(resources, "TaskDefinition")
    assert td["RequiresCompatibilities"] == ["FARGATE"] and td["NetworkMode"] == "awsvpc"
    assert td["RuntimePlatform"] == {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"}
    c = containers(resources)
    assert set(c) == {"migrate", "link-receiver"}
    image = containerfile()
    binary = image["entrypoint"][0]
    for container in c.values():
        assert container["Image"] == SCENARIOS["default"]["ImageUri"]
        assert container["ReadonlyRootFilesystem"] is True and container["Privileged"] is False
        assert container["LogConfiguration"]["Options"]["awslogs-group"] == Renderer(template, SCENARIOS["default"]).ref("LogGroup")
    # The migration runs first, once per task, and the receiver only after it succeeded.
    migrate, receiver = c["migrate"], c["link-receiver"]
    assert migrate["Command"] == ["migrate"] and migrate["Essential"] is False
    assert receiver["Essential"] is True
    assert receiver["DependsOn"] == [{"ContainerName": "migrate", "Condition": "SUCCESS"}]
    assert receiver["HealthCheck"]["Command"] == ["CMD", binary, "healthcheck"]
    assert f'CMD ["{binary}", "healthcheck"]' in image["text"]
    assert env(receiver)["LINK_RECEIVER_LISTEN"] == image["listen"]
    assert receiver["PortMappings"] == [{"ContainerPort": 8080, "Protocol": "tcp"}]


def test_the_database(template):
    resources = render(template, "default")
    db = props(resources, "Database")
    assert db["Engine"] == "postgres"
    assert db["StorageEncrypted"] is True
    assert db["ManageMasterUserPassword"] is True and "MasterUserPassword" not in db
    assert db["PubliclyAccessible"] is False
    assert db["DeletionProtection"] == "true"
    assert int(db["BackupRetentionPeriod"]) >= 7
    assert db["MultiAZ"] == "true"
    assert template["Resources"]["Database"]["DeletionPolicy"] == "Snapshot"
    assert template["Resources"]["Database"]["UpdateReplacePolicy"] == "Snapshot"
    assert props(resources, "DatabaseParameters")["Parameters"] == {"rds.force_ssl": "1"}
    assert props(resources, "DatabaseParameters")["Family"] == f"postgres{db['EngineVersion']}"
    assert props(resources, "DatabaseSubnetGroup")["SubnetIds"] == SCENARIOS["default"]["PrivateSubnetIds"].split(",")
    assert props(render(template, "everything"), "Database")["MultiAZ"] == "false"


def test_a_restore_replaces_the_database_from_the_snapshot_with_the_same_names(template):
    snapshot = f"arn:aws:rds:{REGION}:{ACCOUNT}:snapshot:link-registry-before-upgrade"
    r = Renderer(template, {**SCENARIOS["default"], "RestoreSnapshot": snapshot})
    resources = r.resources()
    db = props(resources, "Database")
    assert db["DBSnapshotIdentifier"] == snapshot
    # The snapshot brings its database and user (this stack's); RDS refuses them next to a snapshot.
    assert "DBName" not in db and "MasterUsername" not in db
    fresh = props(render(template, "default"), "Database")
    url = urlsplit(env(containers(resources)["link-receiver"])["LINK_REGISTRY_DATABASE"])
    assert (url.username, url.path) == (fresh["MasterUsername"], "/" + fresh["DBName"])
    assert db["ManageMasterUserPassword"] is True
    assert "DBSnapshotIdentifier" not in fresh
    pattern = template["Parameters"]["RestoreSnapshot"]["AllowedPattern"]
    assert re.fullmatch(pattern, snapshot) and re.fullmatch(pattern, "")
    assert not re.fullmatch(pattern, "link-registry-before-upgrade")


def test_security_groups_allow_alb_to_tasks_to_database_only(template):
    r = Renderer(template, SCENARIOS["default"])
    resources = r.resources()
    alb, tasks, db = (r.ref(n) for n in ("LoadBalancerSecurityGroup", "TaskSecurityGroup", "DatabaseSecurityGroup"))
    ingress: dict[str, list] = {alb: [], tasks: [], db: []}
    egress: dict[str, list] = {alb: [], tasks: [], db: []}
    for name, res in resources.items():
        p = res["Properties"]
        if res["Type"] == "AWS::EC2::SecurityGroup":
            group = r.ref(name)
            ingress[group] += p.get("SecurityGroupIngress", [])
            egress[group] += p.get("SecurityGroupEgress", [])
        elif res["Type"] == "AWS::EC2::SecurityGroupEgress":
            egress[p["GroupId"]].append(p)
        elif res["Type"] == "AWS::EC2::SecurityGroupIngress":
            ingress[p["GroupId"]].append(p)

    def rules(lst):
        return sorted((x["IpProtocol"], x.get("FromPort"), x.get("ToPort"),
                       x.get("CidrIp") or x.get("SourceSecurityGroupId") or x.get("DestinationSecurityGroupId"))
                      for x in lst)

    nothing = [("icmp", 252, 86, "255.255.255.255/32")]  # the placeholder that removes allow-all egress
    assert rules(ingress[alb]) == [("tcp", 80, 80, "0.0.0.0/0"), ("tcp", 443, 443, "0.0.0.0/0")]
    assert rules(egress[alb]) == sorted(nothing + [("tcp", 8080, 8080, tasks)])
    assert rules(ingress[tasks]) == [("tcp", 8080, 8080, alb)]
    assert rules(egress[tasks]) == [("tcp", 443, 443, "0.0.0.0/0"), ("tcp", 5432, 5432, db)]
    assert rules(ingress[db]) == [("tcp", 5432, 5432, tasks)]
    assert rules(egress[db]) == nothing
    assert props(resources, "Database")["VPCSecurityGroups"] == [db]
    assert props(resources, "LoadBalancer")["SecurityGroups"] == [alb]
    assert props(resources, "Service")["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"] == [tasks]


def test_logs_are_kept_for_a_while(template):
    resources = render(template, "default")
    assert int(props(resources, "LogGroup")["RetentionInDays"]) >= 90


def test_outputs_are_what_the_customer_template_takes(template):
    customer = json.loads(json.dumps(cfn_yaml.load(str(CUSTOMER_TEMPLATE))))
    r = Renderer(template, SCENARIOS["default"])
    out = {k: r.value(v["Value"]) for k, v in template["Outputs"].items()}
    assert out["ProviderCallbackUrl"] == f"https://{DOMAIN}/hooks/account-link"
    assert '.route("/hooks/account-link"' in (RECEIVER_SRC / "lib.rs").read_text()
    assert out["ProviderAudience"] == f"https://{DOMAIN}"
    assert out["ConsoleUrl"] == f"https://{DOMAIN}/"
    # The customer template accepts them as they are.
    for name in ("ProviderCallbackUrl", "ProviderAudience"):
        pattern = customer["Parameters"][name].get("AllowedPattern")
        if pattern:
            assert re.fullmatch(pattern, out[name]), name
    assert out["ProviderAccountId"] == ACCOUNT


def test_signing_modes_need_the_signing_secret(template):
    (assertion,) = template["Rules"]["SigningNeedsSecret"]["Assertions"]
    assert template["Rules"]["SigningNeedsSecret"]["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AuthMode"}, "proof-only"]}]}
    assert assertion["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "SigningSecretArn"}, ""]}]}


@pytest.mark.parametrize("value,ok", [
    (f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/link-receiver:0.1.0-5e6796933c61", True),
    (f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/acme/link-receiver@sha256:{'a' * 64}", True),
    (f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn/link-receiver:1", True),
    ("docker.io/library/link-receiver:latest", False),
    (f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/link-receiver", False),
    ("localhost/link-receiver:latest", False),
])
def test_image_uri_must_be_a_tagged_ecr_image(template, value, ok):
    assert bool(re.fullmatch(template["Parameters"]["ImageUri"]["AllowedPattern"], value)) is ok


def test_no_secret_value_is_a_parameter(template):
    for name, p in template["Parameters"].items():
        assert "NoEcho" not in p, f"{name}: secrets live in Secrets Manager, not in parameters"
    assert not re.search(r"whsec_[A-Za-z0-9+/=]{16,}", STACK.read_text())
