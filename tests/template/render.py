"""template.yaml as CloudFormation would render it for given parameter values: conditions evaluated, the
intrinsic functions the template uses resolved (Ref, Fn::Sub, Fn::If, Fn::Join, Fn::Select, Fn::GetAtt,
Fn::GetAZs, Fn::Cidr, Fn::Equals/Not/And/Or, Condition), AWS::NoValue removed, resources whose Condition is false dropped.

Resources' physical ids are made-up but well formed (a VPC's Ref is a vpc- id, a role's Arn an IAM ARN),
so the IAM policies come out as IAM would receive them, for the policy linter.
"""
from __future__ import annotations

import hashlib
import re

ACCOUNT = "123456789012"
REGION = "eu-west-1"
PARTITION = "aws"
_NO_VALUE = object()

# What Ref returns for each resource type: a prefix for made-up ids.
_ID_PREFIX = {
    "AWS::EC2::VPC": "vpc-",
    "AWS::EC2::RouteTable": "rtb-",
    "AWS::EC2::Subnet": "subnet-",
    "AWS::EC2::InternetGateway": "igw-",
}


class RenderError(Exception):
    pass


def _fake_hex(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:17]


class Renderer:
    def __init__(self, template: dict, params: dict[str, str], region: str = REGION):
        self.t = template
        self.region = region
        self.params = {}
        for name, spec in template["Parameters"].items():
            value = str(params.get(name, spec.get("Default", "")))
            if name not in params and "Default" not in spec:
                raise RenderError(f"parameter {name} has no value")
            is_list = spec["Type"] == "CommaDelimitedList" or spec["Type"].startswith("List<")
            self.params[name] = value.split(",") if is_list else value
        unknown = set(params) - set(template["Parameters"])
        if unknown:
            raise RenderError(f"unknown parameters {sorted(unknown)}")
        self.conditions: dict[str, bool] = {}

    # --- conditions --------------------------------------------------------------------------------
    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.value(self.t["Conditions"][name]))
        return self.conditions[name]

    # --- references --------------------------------------------------------------------------------
    def ref(self, name: str):
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": PARTITION,
            "AWS::StackName": "account-link",
            "AWS::NoValue": _NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.params:
            return self.params[name]
        res = self.t["Resources"].get(name)
        if res is None:
            raise RenderError(f"Ref to unknown {name}")
        self._check_exists(name)
        prefix = _ID_PREFIX.get(res["Type"])
        if prefix:
            return prefix + _fake_hex(name)
        if res["Type"] == "AWS::IAM::ManagedPolicy":
            return f"arn:{PARTITION}:iam::{ACCOUNT}:policy/account-link-{name}-{_fake_hex(name)[:8]}"
        if res["Type"] == "AWS::SecretsManager::Secret":
            return f"arn:{PARTITION}:secretsmanager:{self.region}:{ACCOUNT}:secret:{name}-{_fake_hex(name)[:6]}"
        return f"account-link-{name}-{_fake_hex(name)[:8]}"

    def get_att(self, name: str, attr: str):
        res = self.t["Resources"].get(name)
        if res is None:
            raise RenderError(f"GetAtt of unknown {name}")
        self._check_exists(name)
        typ = res["Type"]
        if attr == "Arn" and typ == "AWS::Logs::LogGroup":
            return f"arn:{PARTITION}:logs:{self.region}:{ACCOUNT}:log-group:{self.ref(name)}:*"
        if attr == "Arn" and typ == "AWS::IAM::Role":
            return f"arn:{PARTITION}:iam::{ACCOUNT}:role/{self.ref(name)}"
        if attr == "Arn" and typ in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            return f"arn:{PARTITION}:lambda:{self.region}:{ACCOUNT}:function:{self.ref(name)}"
        if attr == "MasterUserSecret.SecretArn" and typ == "AWS::RDS::DBInstance":
            # RDS names the secret it manages rds!db-<instance resource id>.
            return f"arn:{PARTITION}:secretsmanager:{self.region}:{ACCOUNT}:secret:rds!db-{_fake_hex(name)}-AbCdEf"
        if attr == "Endpoint.Address" and typ == "AWS::RDS::DBInstance":
            return f"{self.ref(name)}.{_fake_hex(name)[:12]}.{self.region}.rds.amazonaws.com"
        if attr == "Endpoint.Port" and typ == "AWS::RDS::DBInstance":
            return "5432"
        return f"{name}.{attr}"

    def _check_exists(self, name: str):
        cond = self.t["Resources"][name].get("Condition")
        if cond and not self.condition(cond):
            raise RenderError(f"{name} is referenced but its condition {cond} is false")

    # --- values ------------------------------------------------------------------------------------
    def sub(self, arg):
        text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], {k: self.value(v) for k, v in arg[1].items()})

        def one(m):
            key = m.group(1)
            if key.startswith("!"):
                return "${" + key[1:] + "}"
            if key in extra:
                return str(extra[key])
            if "." in key and not key.startswith("AWS::"):
                return str(self.get_att(*key.split(".", 1)))
            v = self.ref(key)
            if isinstance(v, list):
                raise RenderError(f"Fn::Sub of list parameter {key}")
            return str(v)

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def value(self, node):
        if isinstance(node, list):
            out = [self.value(v) for v in node]
            return [v for v in out if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (fn, arg), = node.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Fn::Sub":
                return self.sub(arg)
            if fn == "Fn::If":
                return self.value(arg[1] if self.condition(arg[0]) else arg[2])
            if fn == "Fn::Join":
                items = self.value(arg[1])
                return arg[0].join(str(i) for i in items)
            if fn == "Fn::Select":
                return self.value(arg[1])[int(self.value(arg[0]))]
            if fn == "Fn::GetAtt":
                name, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(name, attr)
            if fn == "Fn::Equals":
                a, b = (self.value(x) for x in arg)
                return a == b
            if fn == "Fn::Not":
                return not self.value(arg[0])
            if fn == "Fn::And":
                return all(self.value(x) for x in arg)
            if fn == "Fn::Or":
                return any(self.value(x) for x in arg)
            if fn == "Condition":
                return self.condition(arg)
            if fn == "Fn::GetAZs":
                return [f"{self.region}{z}" for z in "abc"]
            if fn == "Fn::Cidr":
                import ipaddress

                block, count, bits = (self.value(x) for x in arg)
                net = ipaddress.ip_network(block)
                return [str(n) for n in net.subnets(new_prefix=32 - int(bits))][: int(count)]
            if fn.startswith("Fn::"):
                raise RenderError(f"{fn} is not supported by this renderer")
        out = {k: self.value(v) for k, v in node.items()}
        return {k: v for k, v in out.items() if v is not _NO_VALUE}

    def resources(self) -> dict:
        """Every resource CloudFormation would create, its properties resolved."""
        out = {}
        for name, res in self.t["Resources"].items():
            cond = res.get("Condition")
            if cond and not self.condition(cond):
                continue
            out[name] = {"Type": res["Type"], "Properties": self.value(res.get("Properties", {}))}
        return out


def identity_policies(resources: dict) -> dict[str, dict]:
    """name -> policy document of every identity policy the stack creates (inline and customer managed)."""
    out = {}
    for name, res in resources.items():
        props = res["Properties"]
        if res["Type"] == "AWS::IAM::ManagedPolicy":
            out[name] = props["PolicyDocument"]
        for p in props.get("Policies", []) if res["Type"] == "AWS::IAM::Role" else []:
            out[f"{name}/{p['PolicyName']}"] = p["PolicyDocument"]
    return out
