#!/usr/bin/env python3
"""Turn template.yaml into a template that references the function's code in S3.

    package_template.py TEMPLATE --bucket BUCKET --key KEY (--code-sha256 HEX | --object-version V)
                        [--regions LIST] [--signing-profile-version-arn ARN] [--plain] [-o OUTPUT]

The template is edited as text, so the comments a cloud admin reads stay in place:

* default: the SAM template with every local `CodeUri: .` replaced by `{Bucket, Key[, Version]}` (what
  `sam package` does; the functions share one zip, one binary). Launch it from the console (quick-create)
  or with `aws cloudformation deploy`.
* The code object is pinned: either by a content-addressed key (`--code-sha256 HEX`, and the key must
  contain HEX, e.g. account-link/1.2.3/account-link-HEX.zip) or by `--object-version`. A template never
  loads "whatever is at that key now".
* --bucket may contain ${AWS::Region} (e.g. `acme-link-${AWS::Region}`); then --regions lists the regions
  the provider published to. One template serves them all (one StackSet across regions; Lambda reads code
  only from a bucket in the function's region): a `CodeBuckets` mapping names each region's bucket, and
  the rule `PublishedRegion` refuses any other region before anything is created, instead of loading code
  from a bucket name someone else may own there.
* --signing-profile-version-arn sets the default of CodeSigningProfileVersionArn: Lambda then accepts
  only code signed by the provider's AWS Signer profile (code signing, Enforce).
* --plain: plain CloudFormation for service-managed StackSets, which reject templates with transforms:
  the `Transform` line is removed and every AWS::Serverless::Function becomes an AWS::Lambda::Function
  with `Code: {S3Bucket, S3Key[, S3ObjectVersion]}`. Every property of the function must be one that
  both resource types share with the same meaning, otherwise the script refuses.

The result is parsed again (with cfn-lint's loader) and compared with the expected structure, so a
text edit that went wrong never reaches a bucket. Needs only cfn-lint (the project's .venv); no AWS access.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

try:
    from cfnlint.decode import cfn_yaml
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("package_template.py: needs cfn-lint (run it with the project's .venv/bin/python)")

SAM_FUNCTION = "AWS::Serverless::Function"
LAMBDA_FUNCTION = "AWS::Lambda::Function"
SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
# Properties that AWS::Serverless::Function passes to AWS::Lambda::Function unchanged.
PLAIN_PASSTHROUGH = {
    "Architectures",
    "CodeSigningConfigArn",
    "Description",
    "Environment",
    "Handler",
    "LoggingConfig",
    "MemorySize",
    "Role",
    "Runtime",
    "Timeout",
}
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
KEY_RE = re.compile(r"^[A-Za-z0-9!_.*'()/+=-]{1,1024}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$")
SIGNING_PROFILE_RE = re.compile(r"^arn:aws[a-z-]*:signer:[a-z0-9-]+:[0-9]{12}:/signing-profiles/[A-Za-z0-9_]{2,64}/[A-Za-z0-9]{10}$")
REGION_VAR = "${AWS::Region}"
MAPPING = "CodeBuckets"
REGION_RULE = "PublishedRegion"
SIGNING_PARAM = "CodeSigningProfileVersionArn"


class PackageError(Exception):
    pass


def _plain(value):
    """cfn-lint's node objects as plain Python values (for comparison)."""
    return json.loads(json.dumps(value))


def local_functions(template) -> list[str]:
    """Logical ids of SAM functions whose CodeUri is a local path."""
    out = []
    for name, res in (template.get("Resources") or {}).items():
        if not isinstance(res, dict) or res.get("Type") != SAM_FUNCTION:
            continue
        code = (res.get("Properties") or {}).get("CodeUri")
        if isinstance(code, str) and not code.startswith("s3://"):
            out.append(name)
    return out


def _key_line(mapping, key: str) -> int:
    for k in mapping:
        if k == key:
            return k.start_mark.line
    raise PackageError(f"no {key} key")


def _quote(s: str) -> str:
    # A JSON string is a valid double-quoted YAML scalar.
    return json.dumps(s)


def package(
    text: str,
    bucket: str,
    key: str,
    version: str | None = None,
    sha256: str | None = None,
    plain: bool = False,
    regions: list[str] | None = None,
    signing_profile: str | None = None,
) -> str:
    """Returns the packaged template text. Raises PackageError with a readable message."""
    regional = REGION_VAR in bucket
    concrete = bucket.replace(REGION_VAR, "ap-southeast-2")  # the longest common region name
    if not BUCKET_RE.match(concrete) or ".." in concrete or "$" in concrete:
        raise PackageError(f"--bucket {bucket!r} is not an S3 bucket name (optionally with {REGION_VAR})")
    if regional and not regions:
        raise PackageError(f"--bucket with {REGION_VAR} needs --regions: the regions published to")
    if regions is not None and not regional:
        raise PackageError(f"--regions applies only to a --bucket with {REGION_VAR}")
    for r in regions or []:
        if not REGION_RE.match(r):
            raise PackageError(f"--regions: {r!r} is not a region name")
    if regions is not None and len(set(regions)) != len(regions):
        raise PackageError("--regions lists a region twice")
    if regional:
        bucket_value = {"Fn::FindInMap": [MAPPING, {"Ref": "AWS::Region"}, "Name"]}
        bucket_yaml = f"!FindInMap [{MAPPING}, !Ref AWS::Region, Name]"
    else:
        bucket_value = bucket
        bucket_yaml = _quote(bucket)
    if not KEY_RE.match(key) or key.startswith("/"):
        raise PackageError(f"--key {key!r}: use letters, digits and !_.*'()/+=- (no leading /)")
    if version is not None and not re.match(r"^[A-Za-z0-9._-]{1,1024}$", version):
        raise PackageError(f"--object-version {version!r} is not an S3 object version id")
    if sha256 is not None and not SHA256_RE.match(sha256):
        raise PackageError("--code-sha256 must be 64 lowercase hex digits")
    if version is None and (sha256 is None or sha256 not in key):
        raise PackageError(
            "the code object must be pinned: give --code-sha256 with a content-addressed --key that contains "
            "it (account-link/1.2.3/account-link-<sha256>.zip), or --object-version"
        )
    if signing_profile is not None and not SIGNING_PROFILE_RE.match(signing_profile):
        raise PackageError(f"--signing-profile-version-arn {signing_profile!r} is not a signing profile version ARN")

    try:
        template = cfn_yaml.loads(text)
    except Exception as e:  # cfn-lint raises several parse error types
        raise PackageError(f"cannot parse the template: {e}") from e
    functions = local_functions(template)
    if not functions:
        raise PackageError(f"expected at least one {SAM_FUNCTION} with a local CodeUri, found 0")
    if plain:
        if template.get("Transform") != SAM_TRANSFORM:
            raise PackageError(f"--plain expects `Transform: {SAM_TRANSFORM}` (and no other transform)")
        if "Globals" in template:
            raise PackageError("--plain does not expand SAM Globals; move them into the function")
        for n, res in template["Resources"].items():
            if n not in functions and str(res.get("Type", "")).startswith("AWS::Serverless::"):
                raise PackageError(f"--plain converts functions with a local CodeUri only; {n} is {res['Type']}")

    lines = text.splitlines(keepends=True)
    where = f"s3://{bucket}/{key}" + (f" (version {version})" if version else "")
    note = f"code at {where}" + (f", sha256 {sha256}" if sha256 else "")
    edits = {}
    for name in functions:
        resource = template["Resources"][name]
        props = resource["Properties"]
        code_key = next(k for k in props if k == "CodeUri")
        code_val = props["CodeUri"]
        if code_key.start_mark.line != code_val.end_mark.line:
            raise PackageError(f"{name}.CodeUri must be a one-line scalar (CodeUri: .)")
        if plain:
            unknown = sorted(set(props) - PLAIN_PASSTHROUGH - {"CodeUri"})
            if unknown:
                raise PackageError(
                    f"--plain cannot convert {name}'s properties {', '.join(unknown)}; "
                    "only " + ", ".join(sorted(PLAIN_PASSTHROUGH)) + " pass through unchanged"
                )
        code_line = code_key.start_mark.line
        indent = lines[code_line][: len(lines[code_line]) - len(lines[code_line].lstrip())]
        sub = indent + "  "
        if plain:
            new = [f"{indent}Code:  # {note}\n", f"{sub}S3Bucket: {bucket_yaml}\n", f"{sub}S3Key: {_quote(key)}\n"]
            if version:
                new.append(f"{sub}S3ObjectVersion: {_quote(version)}\n")
        else:
            new = [f"{indent}CodeUri:  # {note}\n", f"{sub}Bucket: {bucket_yaml}\n", f"{sub}Key: {_quote(key)}\n"]
            if version:
                new.append(f"{sub}Version: {_quote(version)}\n")
        edits[code_line] = new
        if plain:
            type_line = _key_line(resource, "Type")
            old = lines[type_line]
            if old.count(SAM_FUNCTION) != 1:
                raise PackageError(f"{name}.Type must be written on one line")
            edits[type_line] = [old.replace(SAM_FUNCTION, LAMBDA_FUNCTION)]
    if plain:
        transform_line = _key_line(template, "Transform")
        if not re.match(r"^Transform:\s*" + re.escape(SAM_TRANSFORM) + r"\s*(#.*)?$", lines[transform_line].rstrip("\n")):
            raise PackageError("the Transform must be written as one line: Transform: " + SAM_TRANSFORM)
        edits[transform_line] = [
            "# Plain CloudFormation (no transform), generated by scripts/package_template.py --plain\n"
            f"# from the SAM template: {', '.join(functions)} {'is an' if len(functions) == 1 else 'are'} "
            f"{LAMBDA_FUNCTION}{'' if len(functions) == 1 else 's'}.\n"
        ]
    if signing_profile is not None:
        params = template.get("Parameters") or {}
        if SIGNING_PARAM not in params:
            raise PackageError(f"the template has no {SIGNING_PARAM} parameter")
        default_line = _key_line(params[SIGNING_PARAM], "Default")
        old = lines[default_line]
        if not re.match(r'^\s+Default: ""\s*$', old):
            raise PackageError(f"{SIGNING_PARAM}'s Default must be written as one line: Default: \"\"")
        edits[default_line] = [old.replace('""', _quote(signing_profile)) + ("" if old.endswith("\n") else "\n")]
    if regional:
        if MAPPING in (template.get("Mappings") or {}) or REGION_RULE in (template.get("Rules") or {}):
            raise PackageError(f"the template already has {MAPPING} or {REGION_RULE}")
        conditions_line = _key_line(template, "Conditions")
        keys = list(template)
        if "Rules" not in keys or keys.index("Conditions") != keys.index("Rules") + 1 or "Mappings" in keys:
            raise PackageError("expected Rules followed by Conditions, and no Mappings, to insert the region table")
        listed = ", ".join(regions)
        block = [
            f"  # Written by package_template.py: the regions the provider published the code to.\n",
            f"  {REGION_RULE}:\n",
            f"    Assertions:\n",
            f"      - Assert: !Contains [[{listed}], !Ref AWS::Region]\n",
            f"        AssertDescription: The provider publishes account-link only to {listed}; launch the stack in one of them.\n",
            "\n",
            "# Each published region's code bucket (written by package_template.py).\n",
            "Mappings:\n",
            f"  {MAPPING}:\n",
        ]
        block += [f"    {r}: {{Name: {_quote(bucket.replace(REGION_VAR, r))}}}\n" for r in regions]
        block += ["\n", lines[conditions_line]]
        edits[conditions_line] = block
    out_lines = []
    for i, line in enumerate(lines):
        out_lines.extend(edits.get(i, [line]))
    out = "".join(out_lines)

    # Check the edit: the result must be the input with exactly the intended structural change.
    expected = _plain(template)
    if signing_profile is not None:
        expected["Parameters"][SIGNING_PARAM]["Default"] = signing_profile
    if regional:
        expected["Rules"][REGION_RULE] = {"Assertions": [{
            "Assert": {"Fn::Contains": [list(regions), {"Ref": "AWS::Region"}]},
            "AssertDescription": f"The provider publishes account-link only to {', '.join(regions)}; "
                                 "launch the stack in one of them.",
        }]}
        reordered = {}
        for k, v in expected.items():
            if k == "Conditions":
                reordered["Mappings"] = {MAPPING: {r: {"Name": bucket.replace(REGION_VAR, r)} for r in regions}}
            reordered[k] = v
        expected = reordered
    if plain:
        del expected["Transform"]
    for name in functions:
        fn = expected["Resources"][name]
        if plain:
            fn["Type"] = LAMBDA_FUNCTION
            code = {"S3Bucket": bucket_value, "S3Key": key}
            if version:
                code["S3ObjectVersion"] = version
            props_out = {}
            for k, v in fn["Properties"].items():  # keep the key order: Code where CodeUri was
                if k == "CodeUri":
                    props_out["Code"] = code
                else:
                    props_out[k] = v
            fn["Properties"] = props_out
        else:
            fn["Properties"]["CodeUri"] = {"Bucket": bucket_value, "Key": key, **({"Version": version} if version else {})}
    try:
        got = _plain(cfn_yaml.loads(out))
    except Exception as e:
        raise PackageError(f"internal error: the packaged template does not parse: {e}") from e
    if got != expected:
        raise PackageError("internal error: the packaged template differs from the expected structure")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Reference the function's code in S3 (SAM template, or --plain CloudFormation for StackSets).",
    )
    ap.add_argument("template", type=Path, help="the SAM template (template.yaml)")
    ap.add_argument("--bucket", required=True,
                    help="S3 bucket holding the zip, in the stack's region; may contain ${AWS::Region}")
    ap.add_argument("--key", required=True, help="object key of the zip, e.g. account-link/0.1.0/account-link.zip")
    ap.add_argument("--object-version", help="S3 object version id of the zip (versioned buckets)")
    ap.add_argument("--code-sha256", help="hex SHA-256 of the zip; the --key must contain it (content-addressed)")
    ap.add_argument("--regions", help="with a --bucket containing ${AWS::Region}: the regions published to, comma-separated")
    ap.add_argument("--signing-profile-version-arn", help="default of CodeSigningProfileVersionArn (AWS Signer)")
    ap.add_argument("--plain", action="store_true", help="emit plain CloudFormation (no transform) for StackSets")
    ap.add_argument("-o", "--output", type=Path, help="output file (default: standard output)")
    args = ap.parse_args(argv)
    try:
        text = args.template.read_text(encoding="utf-8")
    except OSError as e:
        print(f"package_template.py: cannot read {args.template}: {e.strerror}", file=sys.stderr)
        return 2
    try:
        regions = [r.strip() for r in args.regions.split(",") if r.strip()] if args.regions else None
        out = package(text, args.bucket, args.key, args.object_version, args.code_sha256, args.plain,
                      regions, args.signing_profile_version_arn)
    except PackageError as e:
        print(f"package_template.py: {args.template}: {e}", file=sys.stderr)
        return 1
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(out, encoding="utf-8")
    else:
        sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
