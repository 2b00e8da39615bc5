#!/usr/bin/env python3
"""make demo: the whole link flow on this machine, against local emulators.

Starts moto (EC2, S3, SNS, SQS) on a free loopback port and seeds an account with VPCs in two regions,
starts the reference receiver `link-receiver`, runs the function under `cargo lambda watch` (the local
Lambda emulator), then sends CloudFormation's Create, Update and Delete through `cargo lambda invoke`, each
with a fresh pre-signed S3 ResponseURL from moto. Prints what CloudFormation got back and what the
provider received and verified. Everything it starts is stopped on exit, Ctrl-C included.
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
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
WORK = ROOT / ".demo"
REGIONS = ["us-west-2", "eu-west-1"]
PROCS = []
BOLD, DIM, GREEN, RED, RESET = ("\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m") if sys.stdout.isatty() else ("",) * 5


def say(msg):
    print(msg, flush=True)


def step(title):
    say(f"\n{BOLD}▶ {title}{RESET}")
    return time.monotonic()


def done(t0, what="done"):
    say(f"  {GREEN}✓{RESET} {what} {DIM}({time.monotonic() - t0:.1f}s){RESET}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_with_venv():
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def start(cmd, log_name, env=None):
    log = open(WORK / log_name, "w")
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env or env_with_venv(),
                         start_new_session=True)
    PROCS.append(p)
    return p


def stop_all(*_):
    for p in reversed(PROCS):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 5
    for p in PROCS:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
    PROCS.clear()


def wait_for(pred, what, timeout, proc=None, log=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.2)
    tail = (WORK / log).read_text()[-2000:] if log else ""
    raise SystemExit(f"{RED}✗ {what} did not come up{RESET}\n{tail}")


def port_open(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


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
    say(f"  the registry stored {BOLD}{last['type']}{RESET} (webhook-id {last['webhookId']}, signature verified); "
        f"link is {BOLD}{link['state']}{RESET}")
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


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    total = time.monotonic()
    try:
        run()
    except KeyboardInterrupt:
        say(f"\n{RED}interrupted{RESET}")
        return 130
    finally:
        stop_all()
    say(f"\n{GREEN}{BOLD}Link flow complete{RESET} in {time.monotonic() - total:.1f}s; logs in .demo/")
    return 0


def run():
    t = step("Building the function and link-receiver (cargo; the first build takes a few minutes)")
    subprocess.run(["cargo", "build", "--quiet", "--workspace", "--bins"], cwd=ROOT, check=True)
    done(t)

    t = step("Starting moto (EC2, S3, SNS, SQS) and seeding an account in " + " and ".join(REGIONS))
    moto_port = free_port()
    endpoint = f"http://127.0.0.1:{moto_port}"
    moto = start([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)], "moto.log")
    wait_for(lambda: port_open(moto_port), "moto", 30, moto, "moto.log")
    seeded = json.loads(fixture(endpoint, "seed", "--regions", ",".join(REGIONS), "--vpcs", "2", "--subnets", "3"))
    topic = json.loads(fixture(endpoint, "sns-topic", "--name", "account-links"))
    counts = {r: (len(v), sum(len(x["subnets"]) for x in v.values())) for r, v in seeded.items()}
    done(t, "; ".join(f"{r}: {n} VPCs, {s} subnets" for r, (n, s) in counts.items()) + f" at {endpoint}")

    t = step("Starting the provider's registry (link-receiver, SQLite in .demo/)")
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    receiver_port = free_port()
    registry = f"http://127.0.0.1:{receiver_port}"
    start([str(ROOT / "target/debug/link-receiver"), "--listen", f"127.0.0.1:{receiver_port}", "--secret", secret,
           "--auth-mode", "hmac-only", "--database", f"sqlite://{WORK / 'registry.db'}"], "link-receiver.log")
    wait_for(lambda: port_open(receiver_port), "link-receiver", 15, None, "link-receiver.log")
    done(t, f"verifying signatures at {registry}/hooks/account-link")

    t = step("Starting the function under cargo lambda watch")
    invoke_port = free_port()
    env_file = WORK / "function.env"
    function_env = {
        "AWS_REGION": "us-west-2", "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "PROVIDER_CALLBACK_URL": f"http://127.0.0.1:{receiver_port}/hooks/account-link",
        "PROVIDER_SIGNING_SECRET": secret, "PROVIDER_SNS_TOPIC_ARN": topic["topicArn"],
        "ACCOUNT_LINK_ALLOW_LOOPBACK": "true", "AWS_LAMBDA_LOG_FORMAT": "JSON",
    }
    env_file.write_text("".join(f'{k}="{v}"\n' for k, v in function_env.items()))
    watch = start(["cargo", "lambda", "watch", "--bin", "account-link", "--invoke-address", "127.0.0.1",
                   "--invoke-port", str(invoke_port), "--env-file", str(env_file), "--ignore-changes"],
                  "cargo-lambda-watch.log")
    wait_for(lambda: port_open(invoke_port), "cargo lambda watch", 120, watch, "cargo-lambda-watch.log")
    done(t, f"Lambda runtime API emulator on 127.0.0.1:{invoke_port}")

    for name in ["create", "update", "delete"]:
        t = step(f"CloudFormation sends {name.capitalize()} (events/{name}.json)")
        event = json.loads((ROOT / f"events/{name}.json").read_text())
        key = f"responses/{name}"
        event["ResponseURL"] = fixture(endpoint, "presign", "--bucket", "cfn-responses", "--key", key).strip()
        for props in ("ResourceProperties", "OldResourceProperties"):
            if props in event:
                event[props]["Regions"] = REGIONS
        data_file = WORK / f"{name}.json"
        data_file.write_text(json.dumps(event))
        inv = subprocess.run(["cargo", "lambda", "invoke", "account-link", "--data-file", str(data_file),
                              "--invoke-address", "127.0.0.1", "--invoke-port", str(invoke_port)],
                             cwd=ROOT, env=env_with_venv(), capture_output=True, text=True)
        if inv.returncode != 0:
            say(f"  {RED}invoke failed{RESET}: {inv.stdout}{inv.stderr}")
            raise SystemExit(1)
        answer = json.loads(fixture(endpoint, "read", "--bucket", "cfn-responses", "--key", key))
        summarize_answer(answer)
        summarize_link(registry, answer["PhysicalResourceId"], detailed=name == "create")
        done(t)

    msgs = json.loads(fixture(endpoint, "sqs-drain", "--queue-url", topic["queueUrl"]))
    say(f"\n  SNS topic {topic['topicArn']} carried {len(msgs)} messages: "
        + ", ".join(m["attributes"].get("eventType", "?") for m in msgs))


if __name__ == "__main__":
    sys.exit(main())
