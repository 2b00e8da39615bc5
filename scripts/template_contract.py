#!/usr/bin/env python3
"""Print what template.yaml passes to the handler, for the Rust test that compares it with the handler.

    template_contract.py [TEMPLATE]     (default: template.yaml next to this script's parent)

Output (JSON, sorted):
    {"environment": [environment variable names of the function behind Custom::AccountLink],
     "properties":  [property names of the Custom::AccountLink resource,
                     without ServiceToken and ServiceTimeout, which CloudFormation itself uses],
     "peeringProperties": [the same for the Custom::PeeringAcceptance resource, [] when there is none]}

Reads the template with cfn-lint's YAML loader (short-form tags such as !Ref are understood). Exits 1
with a message naming the problem when the template does not have the expected shape.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

try:
    from cfnlint.decode import cfn_yaml
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("template_contract.py: needs cfn-lint (run it with the project's .venv/bin/python)")

RESOURCE_TYPE = "Custom::AccountLink"
PEERING_TYPE = "Custom::PeeringAcceptance"
CLOUDFORMATION_KEYS = {"ServiceToken", "ServiceTimeout"}
FUNCTION_TYPES = {"AWS::Serverless::Function", "AWS::Lambda::Function"}


class ContractError(Exception):
    pass


def _function_id(service_token) -> str:
    """The logical id in `!GetAtt Fn.Arn` (either GetAtt form) or `!Ref Fn`."""
    if isinstance(service_token, dict) and len(service_token) == 1:
        (fn, arg), = service_token.items()
        if fn == "Fn::GetAtt":
            if isinstance(arg, str) and arg.endswith(".Arn"):
                return arg[: -len(".Arn")]
            if isinstance(arg, list) and len(arg) == 2 and arg[1] == "Arn":
                return arg[0]
        if fn == "Ref" and isinstance(arg, str):
            return arg
    raise ContractError(f"ServiceToken must be !GetAtt <Function>.Arn, got {json.dumps(service_token)}")


def contract(template) -> dict:
    resources = template.get("Resources") or {}
    links = [n for n, r in resources.items() if isinstance(r, dict) and r.get("Type") == RESOURCE_TYPE]
    if len(links) != 1:
        raise ContractError(f"expected exactly one {RESOURCE_TYPE} resource, found {len(links)}")
    props = resources[links[0]].get("Properties") or {}
    if "ServiceToken" not in props:
        raise ContractError(f"{links[0]} has no ServiceToken")
    fn_id = _function_id(props["ServiceToken"])
    fn = resources.get(fn_id)
    if not isinstance(fn, dict) or fn.get("Type") not in FUNCTION_TYPES:
        raise ContractError(f"{links[0]}.ServiceToken names {fn_id}, which is not a Lambda function")
    env: dict = {}
    if fn["Type"] == "AWS::Serverless::Function":
        # SAM Globals apply to every function; the function's own variables override them.
        globals_env = (((template.get("Globals") or {}).get("Function") or {}).get("Environment") or {})
        env.update(globals_env.get("Variables") or {})
    variables = ((fn.get("Properties") or {}).get("Environment") or {}).get("Variables") or {}
    if not isinstance(variables, dict):
        raise ContractError(f"{fn_id}.Environment.Variables must be a plain map of names")
    env.update(variables)
    peerings = [r for r in resources.values() if isinstance(r, dict) and r.get("Type") == PEERING_TYPE]
    if len(peerings) > 1:
        raise ContractError(f"expected at most one {PEERING_TYPE} resource, found {len(peerings)}")
    peering_props = (peerings[0].get("Properties") or {}) if peerings else {}
    if peerings:
        _function_id(peering_props.get("ServiceToken"))
    return {
        "environment": sorted(env),
        "properties": sorted(k for k in props if k not in CLOUDFORMATION_KEYS),
        "peeringProperties": sorted(k for k in peering_props if k not in CLOUDFORMATION_KEYS),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 1 or (argv and argv[0] in ("-h", "--help")):
        print(__doc__.strip(), file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    path = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / "template.yaml"
    try:
        template = cfn_yaml.load(str(path))
    except OSError as e:
        print(f"template_contract.py: cannot read {path}: {e.strerror}", file=sys.stderr)
        return 1
    except Exception as e:  # cfn-lint's parse errors
        print(f"template_contract.py: cannot parse {path}: {e}", file=sys.stderr)
        return 1
    try:
        result = contract(template)
    except ContractError as e:
        print(f"template_contract.py: {path}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
