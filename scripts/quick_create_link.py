#!/usr/bin/env python3
"""Generate the CloudFormation console quick-create link behind the provider's "link account" button.

    quick_create_link.py --region eu-west-1 \\
        --template-url https://BUCKET.s3.eu-west-1.amazonaws.com/account-link/0.1.0/template.yaml \\
        --external-id auto --param ProviderAccountId=111111111111 \\
        --param ProviderPlayerAccountId=222222222222 --param ProviderServiceAccountId=333333333333

prints
    https://eu-west-1.console.aws.amazon.com/cloudformation/home?region=eu-west-1#/stacks/quickcreate?templateURL=...&stackName=account-link&param_ExternalId=...

The stack parameters go in the URL fragment (after #) as param_<Name>=<value>, URL-encoded. The console
ignores NoEcho parameters in such links (ProviderSigningSecret): the customer pastes that one, so this
script refuses it rather than leak it into a URL. With --param ProviderAuthMode=proof-only there is no
secret at all (each event carries a proof of the account instead) and the link carries every parameter. Values are checked against the template's parameter
rules (template.yaml by default; --template for another, --no-validate to skip). With --external-id
auto a random external ID is generated and reported on standard error (or in --json output): store it,
the provider must present it when assuming the roles. The template requires an ExternalId of at least 16
characters; 'auto' makes 32 random hex digits.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit

REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$")
STACK_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
PARAM_NAME_RE = re.compile(r"^[A-Za-z0-9]{1,255}$")
EXTERNAL_ID_RE = re.compile(r"^[A-Za-z0-9_+=,.@:/-]{16,1224}$")
DEFAULT_TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"


class LinkError(Exception):
    pass


def console_host(region: str) -> str:
    """The console host of the region's partition."""
    if not REGION_RE.match(region):
        raise LinkError(f"--region {region!r} is not a region name such as eu-west-1")
    if region.startswith("cn-"):
        return "console.amazonaws.cn"
    if region.startswith("us-gov-"):
        return "console.amazonaws-us-gov.com"
    if region.startswith(("us-iso", "eu-isoe-", "eusc-")):
        raise LinkError(f"--region {region}: this partition has no public console; deploy with the CLI")
    return f"{region}.console.aws.amazon.com"


def check_template_url(url: str, region: str) -> None:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not host or not parts.path.strip("/"):
        raise LinkError(f"--template-url {url!r} must be an https URL of a template object")
    if not re.search(r"(^|\.)s3[.-]([a-z0-9-]+\.)?amazonaws\.com(\.cn)?$", host):
        raise LinkError(f"--template-url host {host!r} is not Amazon S3; the console loads templates only from S3")
    # The published template references a code bucket in its own region: launching it elsewhere fails.
    m = re.search(r"(?:^|\.)s3[.-]([a-z]{2}(?:-[a-z]+)+-[0-9]{1,2})\.", host)
    if m and m.group(1) != region:
        raise LinkError(
            f"--template-url is in {m.group(1)} but --region is {region}: use the template published for {region}"
        )
    if len(url) > 1024:
        raise LinkError("--template-url is longer than the 1024 characters CloudFormation accepts")


def load_parameters(path: Path) -> dict:
    try:
        from cfnlint.decode import cfn_yaml
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise LinkError("validating against the template needs cfn-lint (.venv/bin/python), or pass --no-validate") from e
    try:
        template = cfn_yaml.load(str(path))
    except OSError as e:
        raise LinkError(f"--template {path}: {e.strerror}") from e
    except Exception as e:
        raise LinkError(f"--template {path}: cannot parse: {e}") from e
    return dict(template.get("Parameters") or {})


def check_value(name: str, spec: dict, value: str) -> None:
    if str(spec.get("NoEcho", "false")).lower() == "true":
        raise LinkError(
            f"{name} is a NoEcho parameter: the console ignores it in quick-create links "
            "(the customer enters it); do not put it in a URL"
        )
    items = [v.strip() for v in value.split(",")] if spec.get("Type") == "CommaDelimitedList" else [value]
    allowed = spec.get("AllowedValues")
    pattern = spec.get("AllowedPattern")
    for item in items:
        if allowed is not None and item not in [str(a) for a in allowed]:
            raise LinkError(f"{name}={item!r} is not one of {', '.join(str(a) for a in allowed)}")
        if pattern is not None and not re.fullmatch(str(pattern), item):
            hint = spec.get("ConstraintDescription") or f"pattern {pattern}"
            raise LinkError(f"{name}={item!r}: {hint}")
    if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
        raise LinkError(f"{name} is longer than {spec['MaxLength']} characters")


def build(
    region: str,
    template_url: str,
    stack_name: str = "account-link",
    params: list[tuple[str, str]] | None = None,
    template_params: dict | None = None,
) -> str:
    """The quick-create URL. template_params (the template's Parameters) enables value checks."""
    host = console_host(region)
    check_template_url(template_url, region)
    if not STACK_NAME_RE.match(stack_name):
        raise LinkError(
            f"--stack-name {stack_name!r}: letters, digits and hyphens, starting with a letter, at most 128"
        )
    seen = set()
    for name, value in params or []:
        if not PARAM_NAME_RE.match(name):
            raise LinkError(f"--param {name!r}: parameter names are letters and digits only")
        if name in seen:
            raise LinkError(f"--param {name} given twice")
        seen.add(name)
        if template_params is not None:
            if name not in template_params:
                raise LinkError(f"--param {name}: the template has no such parameter")
            check_value(name, template_params[name], value)
    fragment = [("templateURL", template_url), ("stackName", stack_name)]
    fragment += [(f"param_{n}", v) for n, v in params or []]
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in fragment)
    return f"https://{host}/cloudformation/home?region={region}#/stacks/quickcreate?{query}"


def parse_param(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: use Name=Value")
    return name, value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Print the CloudFormation console quick-create URL for the account-link stack.",
        epilog="Example: --region eu-west-1 --template-url https://b.s3.eu-west-1.amazonaws.com/k/template.yaml "
        "--external-id auto --param ProviderAccountId=111111111111",
    )
    ap.add_argument("--region", required=True, help="region the customer launches the stack in")
    ap.add_argument("--template-url", required=True, help="S3 URL of the template published for that region")
    ap.add_argument("--stack-name", default="account-link", help="stack name shown to the customer (default: account-link)")
    ap.add_argument("--param", action="append", default=[], type=parse_param, metavar="Name=Value",
                    help="a stack parameter to fill in (repeatable)")
    ap.add_argument("--external-id", metavar="ID|auto",
                    help="ExternalId parameter; 'auto' generates a random one (secrets.token_hex(16))")
    ap.add_argument("--template", type=Path, default=None,
                    help=f"template whose parameter rules to check (default: {DEFAULT_TEMPLATE.name} of this repository)")
    ap.add_argument("--no-validate", action="store_true", help="do not check parameters against a template")
    ap.add_argument("--json", action="store_true", help='print {"url": ..., "externalId": ...} instead of the URL')
    args = ap.parse_args(argv)

    params = list(args.param)
    external_id = None
    try:
        if args.external_id is not None:
            if any(n == "ExternalId" for n, _ in params):
                raise LinkError("give the external ID either with --external-id or with --param ExternalId=, not both")
            external_id = secrets.token_hex(16) if args.external_id == "auto" else args.external_id
            if not EXTERNAL_ID_RE.match(external_id):
                raise LinkError("--external-id: 16 to 1224 characters of letters, digits and _+=,.@:/- (or auto)")
            params.insert(0, ("ExternalId", external_id))
        template_params = None
        if not args.no_validate:
            path = args.template or DEFAULT_TEMPLATE
            if args.template is not None or path.exists():
                template_params = load_parameters(path)
        url = build(args.region, args.template_url, args.stack_name, params, template_params)
    except LinkError as e:
        print(f"quick_create_link.py: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"url": url, "externalId": external_id}))
    else:
        print(url)
        if args.external_id == "auto":
            print(f"ExternalId={external_id}  (generated: record it for this customer)", file=sys.stderr)
    if template_params is not None:
        given = {n for n, _ in params}
        missing = [n for n, s in template_params.items() if "Default" not in s and n not in given]
        values = dict(params)
        signs = values.get("ProviderAuthMode", "hmac-and-proof") != "proof-only"
        if values.get("ProviderCallbackUrl") and signs and "ProviderSigningSecret" in template_params:
            missing.append("ProviderSigningSecret (NoEcho; or use ProviderAuthMode=proof-only, which needs no secret)")
        if missing:
            print(f"note: the customer must still enter {', '.join(missing)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
