#!/usr/bin/env python3
"""make demo: the whole link flow on this machine, against local emulators.

Starts moto (EC2, S3, SNS, SQS, STS) on a free loopback port and seeds an account with VPCs in two
regions, starts the provider's registry and console (`link-receiver`), runs the function against
`cargo lambda watch`'s Lambda emulator with an assumed role's credentials, then plays a customer:
an earlier stack is created and deleted; a "Link an AWS account" click starts a link request; CloudFormation's
Create and Update carry its external id (through `cargo lambda invoke`, each with a fresh pre-signed S3
ResponseURL from moto). Prints what CloudFormation got back and what the registry verified and stored, then
the console's URL with the account linked, and keeps serving it until Ctrl-C (`--no-serve`: exit instead).
Everything it starts is stopped on exit.

The binaries are the ones `cargo test --workspace` builds (`make test` runs it next, and finds nothing to
compile): `cargo build --bins` or the `cargo run` that `cargo lambda watch` would do resolve the workspace's
features differently (without the test dependencies' features), and each would compile the dependencies
once more.
"""
import json
import os
import re
import secrets
import base64
import urllib.parse
import urllib.request
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from linksupport import procs, services

ROOT = Path(__file__).resolve().parent.parent
# The virtualenv running this (make demo runs .venv's python): moto, cargo-lambda.
VENV_BIN = Path(sys.executable).parent
WORK = ROOT / ".demo"
REGIONS = ["us-west-2", "eu-west-1"]
# What `make test` builds (unit-test, console-test): the same command, so the same features.
CARGO_BUILD = ["cargo", "test", "--locked", "--quiet", "--workspace", "--no-run"]
CHILDREN = procs.Children()
BOLD, DIM, GREEN, RED, RESET = ("\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m") if sys.stdout.isatty() else ("",) * 5


def say(msg):
    print(msg, flush=True)


def step(title):
    say(f"\n{BOLD}▶ {title}{RESET}")
    return time.monotonic()


def done(t0, what="done"):
    say(f"  {GREEN}✓{RESET} {what} {DIM}({time.monotonic() - t0:.1f}s){RESET}")


def env_with_venv():
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def start(cmd, log_name, env=None):
    """Starts `cmd` in its own process group (Ctrl-C reaches only this script, which stops it), its output in
    .demo/`log_name`."""
    return CHILDREN.start(cmd, name=log_name.removesuffix(".log"), log=WORK / log_name, ready=None,
                          env=env or env_with_venv(), cwd=ROOT, group=True)


def fixture(endpoint, *args):
    out = subprocess.run([str(VENV_BIN / "python"), str(ROOT / "scripts/moto_fixture.py"), "--endpoint", endpoint, *args],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"moto_fixture {args[0]} failed:\n{out.stderr}")
    return out.stdout


def summarize_answer(answer):
    status = answer["Status"]
    colour = GREEN if status == "SUCCESS" else RED
    say(f"  CloudFormation got {colour}{status}{RESET}: {answer.get('Reason', '')}")
    say(f"    PhysicalResourceId {answer['PhysicalResourceId']}")
    data = answer.get("Data") or {}
    if data:
        keys = ["LinkId", "VpcCount", "SubnetCount", "RouteTableCount", "Regions"]
        say("    Data " + ", ".join(f"{k}={data[k]}" for k in keys if k in data))
    say(f"    {DIM}({len(json.dumps(answer))} bytes, limit 4096){RESET}")


def api(base, path):
    with urllib.request.urlopen(f"{base}/api{path}", timeout=10) as r:
        return json.loads(r.read())


def summarize_link(base, link_id, detailed):
    link = api(base, f"/links/{urllib.parse.quote(link_id)}")
    last = api(base, f"/links/{urllib.parse.quote(link_id)}/events?limit=1")["events"][0]
    proof = f"proven by {last['callerArn']}" if last.get("callerArn") else "no proof"
    say(f"  the registry stored {BOLD}{last['type']}{RESET} (webhook-id {last['webhookId']}, signature verified, "
        f"{proof}); link is {BOLD}{link['state']}{RESET}")
    say(f"    account {link['accountId']} ({link['partition']}), stack region {link['region']}, "
        f"external id {link['externalId']}")
    if not detailed:
        say(f"    inventory: {link['vpcCount']} VPCs, {link['subnetCount']} subnets in {', '.join(link['regions'])}")
        return
    for region in link["inventory"] or []:
        say(f"    {region['region']}:")
        for vpc in region["vpcs"]:
            label = f" ({vpc['name']})" if vpc.get("name") else (" (default)" if vpc.get("isDefault") else "")
            say(f"      {vpc['vpcId']}{label} {vpc.get('cidrBlock')}")
            for s in sorted(vpc["subnets"], key=lambda s: s.get("availabilityZone") or ""):
                say(f"        └ {s['subnetId']} {s.get('cidrBlock')} {s.get('availabilityZone')} "
                    f"{DIM}{s.get('availableIpAddressCount')} free IPs{RESET}")
            if vpc["routeTables"]:
                say(f"        {DIM}{len(vpc['routeTables'])} route tables{RESET}")


def console_csrf(base):
    """The console page's CSRF token (state-changing requests from a browser, or this script, send it)."""
    with urllib.request.urlopen(f"{base}/", timeout=10) as r:
        page = r.read().decode()
    m = re.search(r'data-csrf="([^"]+)"', page)
    if not m:
        raise SystemExit("the console page carries no CSRF token")
    return m.group(1)


def start_link_request(base):
    """What the customer's "Link an AWS account" click does: a pending link with a fresh external id."""
    req = urllib.request.Request(f"{base}/api/link-requests", method="POST", data=b"",
                                 headers={"x-csrf-token": console_csrf(base)})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def refresh(base, link_id):
    """What the link page's Refresh button does, through the API: waits for the refresh's report."""
    req = urllib.request.Request(f"{base}/api/links/{urllib.parse.quote(link_id)}/refresh?wait=true",
                                 method="POST", data=b"", headers={"x-csrf-token": console_csrf(base)})
    with urllib.request.urlopen(req, timeout=180) as r:
        return json.loads(r.read())


def main():
    serve = "--no-serve" not in sys.argv[1:]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    total = time.monotonic()
    try:
        try:
            console = run()
        except procs.NotReady as e:
            raise SystemExit(f"{RED}✗ {e}{RESET}")
        say(f"\n{GREEN}{BOLD}Link flow complete{RESET} in {time.monotonic() - total:.1f}s; logs in .demo/")
        say(f"\n{BOLD}The provider's console:{RESET} {console}")
        if serve:
            say(f"{DIM}(serving until Ctrl-C){RESET}")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        say(f"\n{DIM}stopped{RESET}" if serve else f"\n{RED}interrupted{RESET}")
        return 0 if serve else 130
    finally:
        CHILDREN.stop_all(grace=5)
    return 0


def invoke(endpoint, invoke_port, name, event):
    key = f"responses/{name}-{secrets.token_hex(4)}"
    event["ResponseURL"] = fixture(endpoint, "presign", "--bucket", "cfn-responses", "--key", key).strip()
    data_file = WORK / f"{name}.json"
    data_file.write_text(json.dumps(event))
    inv = subprocess.run(["cargo", "lambda", "invoke", "account-link", "--data-file", str(data_file),
                          "--invoke-address", "127.0.0.1", "--invoke-port", str(invoke_port)],
                         cwd=ROOT, env=env_with_venv(), capture_output=True, text=True)
    if inv.returncode != 0:
        say(f"  {RED}invoke failed{RESET}: {inv.stdout}{inv.stderr}")
        raise SystemExit(1)
    return json.loads(fixture(endpoint, "read", "--bucket", "cfn-responses", "--key", key))


def stack_event(name, stack_id, external_id):
    event = json.loads((ROOT / f"events/{name}.json").read_text())
    event["StackId"] = stack_id
    for props in ("ResourceProperties", "OldResourceProperties"):
        if props in event:
            event[props]["Regions"] = REGIONS
            event[props]["ExternalId"] = external_id
    return event


def run():
    t = step("Building the function and link-receiver as `cargo test` does (the first build takes a few minutes)")
    subprocess.run(CARGO_BUILD, cwd=ROOT, check=True)
    done(t)

    t = step("Starting moto (EC2, S3, SNS, SQS, STS) and seeding an account in " + " and ".join(REGIONS))
    endpoint = CHILDREN.adopt(services.moto(WORK / "moto.log", group=True, cwd=ROOT, timeout=30)).url
    seeded = json.loads(fixture(endpoint, "seed", "--regions", ",".join(REGIONS), "--vpcs", "2", "--subnets", "3"))
    topic = json.loads(fixture(endpoint, "sns-topic", "--name", "account-links"))
    # The function runs as its execution role: temporary credentials of an assumed role, which its proofs
    # of the account carry (moto's STS names the account and role; it does not check signatures).
    # Named as CloudFormation names the template's BasicLambdaRole: <stack>-BasicLambdaRole-<suffix>.
    role = json.loads(fixture(endpoint, "assume-role", "--role-name", "account-link-BasicLambdaRole-D3M0R0L3",
                              "--session", "account-link"))
    counts = {r: (len(v), sum(len(x["subnets"]) for x in v.values())) for r, v in seeded.items()}
    done(t, "; ".join(f"{r}: {n} VPCs, {s} subnets" for r, (n, s) in counts.items()) + f" at {endpoint}")

    t = step("Starting the provider's registry and console (link-receiver, SQLite in .demo/)")
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    # Told a port rather than choosing one: its console's public URL and the audience of proofs are its origin.
    registry = f"http://127.0.0.1:{procs.free_port()}"
    CHILDREN.adopt(services.link_receiver(
        ROOT / "target/debug/link-receiver",
        ["--database", f"sqlite://{WORK / 'registry.db'}", "--secret", secret,
           "--audience", registry, "--sts-endpoint", endpoint,
           # Only the stack's function role may prove an event (not any other role of the account).
           "--proof-role-pattern", "*-BasicLambdaRole-*",
           "--template-url", "https://provider-templates.s3.us-west-2.amazonaws.com/account-link/template.yaml",
           "--stack-region", "us-west-2", "--stack-param", "ProviderAccountId=111122223333",
           "--stack-param", "ProviderPlayerAccountId=222233334444",
           "--stack-param", "ProviderServiceAccountId=333344445555"],
        WORK / "link-receiver.log", listen=registry.removeprefix("http://"), group=True, cwd=ROOT, timeout=15,
        # The provider's own AWS access (role checks, refreshes): moto, with any credentials.
        env={**os.environ, "AWS_ACCESS_KEY_ID": "provider", "AWS_SECRET_ACCESS_KEY": "provider",
             "AWS_ENDPOINT_URL": endpoint, "AWS_EC2_METADATA_DISABLED": "true"}))
    done(t, f"verifying signatures and proofs of the account (by the stack's function role only) at {registry}/hooks/account-link")

    t = step("Starting cargo lambda's Lambda emulator and the function")
    # cargo lambda cannot choose its own port (0 means its default, 9000): it is given a free one.
    invoke_port = procs.free_port()
    function_env = {
        "AWS_REGION": "us-west-2", "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": role["accessKeyId"],
        "AWS_SECRET_ACCESS_KEY": role["secretAccessKey"], "AWS_SESSION_TOKEN": role["sessionToken"],
        "PROVIDER_CALLBACK_URL": f"{registry}/hooks/account-link",
        "PROVIDER_SIGNING_SECRET": secret, "PROVIDER_SNS_TOPIC_ARN": topic["topicArn"],
        "ACCOUNT_LINK_ALLOW_LOOPBACK": "true", "AWS_LAMBDA_LOG_FORMAT": "JSON",
    }
    # The emulator only (`--only-lambda-apis`): it would otherwise `cargo run` the function, which resolves
    # the features for the function's package alone and compiles every dependency again.
    watch = start(["cargo", "lambda", "watch", "--only-lambda-apis", "--invoke-address", "127.0.0.1",
                   "--invoke-port", str(invoke_port)], "cargo-lambda-watch.log")
    procs.wait_port(invoke_port, watch.popen, "cargo lambda watch (its log is .demo/cargo-lambda-watch.log)", 60)
    # The variables Lambda (and `cargo lambda watch`) give a function; the runtime API is the emulator's,
    # under the function's name, which `cargo lambda invoke account-link` addresses.
    runtime_env = {
        "AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{invoke_port}/.rt/account-link",
        "AWS_LAMBDA_FUNCTION_NAME": "account-link", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/account-link",
        "AWS_LAMBDA_LOG_STREAM_NAME": "demo",
    }
    start([str(ROOT / "target/debug/account-link")], "function.log",
          env={**env_with_venv(), **function_env, **runtime_env})
    done(t, f"Lambda runtime API emulator on 127.0.0.1:{invoke_port}; the function's log is .demo/function.log")

    stack = json.loads((ROOT / "events/create.json").read_text())["StackId"]
    retired = stack.replace("stack/account-link/", "stack/account-link-old/")
    t = step("An earlier stack of the same account is created and deleted (Create, then Delete)")
    old = start_link_request(registry)
    created = invoke(endpoint, invoke_port, "create", stack_event("create", retired, old["externalId"]))
    summarize_answer(created)
    delete = stack_event("delete", retired, old["externalId"])
    delete["PhysicalResourceId"] = created["PhysicalResourceId"]
    summarize_answer(invoke(endpoint, invoke_port, "delete", delete))
    summarize_link(registry, created["PhysicalResourceId"], detailed=False)
    done(t)

    t = step("The customer clicks \"Link an AWS account\" in the provider's console")
    request = start_link_request(registry)
    say(f"  external id {request['externalId']} (status {request['status']}); the quick-create link:")
    say(f"    {DIM}{request['quickCreateUrl']}{RESET}")
    done(t)

    link_id = None
    for name in ["create", "update"]:
        t = step(f"CloudFormation sends {name.capitalize()} (events/{name}.json) with that external id")
        answer = invoke(endpoint, invoke_port, name, stack_event(name, stack, request["externalId"]))
        summarize_answer(answer)
        link_id = answer["PhysicalResourceId"]
        summarize_link(registry, link_id, detailed=name == "create")
        done(t)
    status = api(registry, f"/link-requests/{request['externalId']}")
    say(f"\n  the console's link request is {BOLD}{status['status']}{RESET} (link {status['linkId']})")

    t = step("A subnet is added to the account after the stack reported it; the provider presses Refresh")
    added = json.loads(fixture(endpoint, "add-subnet", "--region", REGIONS[0]))
    say(f"  moto: added {added['subnetId']} {added['cidrBlock']} to {added['vpcId']} in {REGIONS[0]}")
    report = refresh(registry, link_id)
    checks = ", ".join(f"{c['role']} {'assumable' if c['assumable'] else c.get('errorCode')}" for c in report["roleChecks"])
    say(f"  the registry assumed the link's roles ({checks}) and listed the account through RemoteRole:")
    say(f"    refresh {BOLD}{report['status']}{RESET}: {report.get('summary') or report.get('problem')}")
    link = api(registry, f"/links/{urllib.parse.quote(link_id)}")
    say(f"    inventory as of {link['inventoryAt']} ({link['inventorySource']}): {link['subnetCount']} subnets; "
        f"roles {link['rolesState']}")
    done(t)

    msgs = json.loads(fixture(endpoint, "sqs-drain", "--queue-url", topic["queueUrl"]))
    say(f"  SNS topic {topic['topicArn']} carried {len(msgs)} messages: "
        + ", ".join(m["attributes"].get("eventType", "?") for m in msgs))
    return f"{registry}/links/{link_id}  (all accounts: {registry}/)"


if __name__ == "__main__":
    sys.exit(main())
