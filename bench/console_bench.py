#!/usr/bin/env python3
"""make bench, the console's part (issue #11): large accounts stay usable. Loads accounts of 100, 1 000 and
10 000 subnets into the release `link-receiver` (SQLite, hmac-only, loopback) as the function delivers them,
then drives Debian's headless Chromium through the network picker and measures, with timers inside the page:
navigation → picker ready, choosing the largest VPC, switching region, Save → "Saved.", the size of
/api/links/{id} and the JS heap. Writes the "## The console" section of BENCHMARKS.md (between its markers;
nothing else in the file is touched).

    bench/console_bench.py               # full run: 100, 1 000, 10 000 subnets, 20 repetitions each
    bench/console_bench.py --quick       # smoke run (3 repetitions); does not write BENCHMARKS.md
    bench/console_bench.py --sizes 10000 --reps 5 --out /tmp/console.md

Deliveries: the event is generated here (docs/provider-events.md, checked against schema/link-event.v1.json),
then split and signed by the contract's own code (crates/link-contract/examples/split_and_sign.rs:
`parts::split` at the function's default 1 MiB callback limit, `signing::sign`), and POSTed.
Everything listens on loopback; every process started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import gzip
import hashlib
import http.client
import json
import os
import platform
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from linksupport import procs, services

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RECEIVER = ROOT / "target" / "release" / "link-receiver"
SPLITTER = ROOT / "target" / "release" / "examples" / "split_and_sign"
SCHEMA = ROOT / "schema" / "link-event.v1.json"
BEGIN = "<!-- console-bench: begin (written by bench/console_bench.py) -->"
END = "<!-- console-bench: end -->"
MIN_FREE_IPS = 16
ACCOUNT = "123456789012"
# The flags of tests/console/test_console.py: a fresh profile, nothing talks to the network on its own.
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                  "--window-size=1400,1100")
CHILDREN = procs.Children()
# A customer on ordinary broadband rather than loopback: 20 Mbit/s down, 5 up, 20 ms added latency.
SLOW_LINK = {"offline": False, "latency": 20, "downloadThroughput": 20e6 / 8, "uploadThroughput": 5e6 / 8}

# Accounts: (regions with their zones, VPC sizes as shares of the subnets). The largest VPC holds 30 %.
REGION_AZS = {
    "us-east-1": [("us-east-1a", "use1-az2"), ("us-east-1b", "use1-az4"), ("us-east-1c", "use1-az6"),
                  ("us-east-1d", "use1-az1"), ("us-east-1e", "use1-az3"), ("us-east-1f", "use1-az5")],
    "us-west-2": [("us-west-2a", "usw2-az1"), ("us-west-2b", "usw2-az2"), ("us-west-2c", "usw2-az3"),
                  ("us-west-2d", "usw2-az4")],
    "eu-west-1": [("eu-west-1a", "euw1-az1"), ("eu-west-1b", "euw1-az2"), ("eu-west-1c", "euw1-az3")],
    "ap-southeast-2": [("ap-southeast-2a", "apse2-az1"), ("ap-southeast-2b", "apse2-az3"),
                       ("ap-southeast-2c", "apse2-az2")],
}
SHAPES = {
    # subnets: (regions, VPC count)
    100: (["us-west-2", "eu-west-1"], 6),
    1000: (["us-west-2", "us-east-1", "eu-west-1"], 12),
    10000: (["us-west-2", "us-east-1", "eu-west-1", "ap-southeast-2"], 40),
}


def say(msg: str = "") -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- the account ----

def hexid(rng: random.Random, n: int = 17) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def vpc_sizes(total: int, count: int) -> list[int]:
    """30 %, 20 %, 12 %, 8 % for the four largest VPCs, the rest spread over the others."""
    head = [round(total * f) for f in (0.30, 0.20, 0.12, 0.08)][: max(1, count - 1)]
    rest = count - len(head)
    left = total - sum(head)
    tail = [left // rest + (1 if i < left % rest else 0) for i in range(rest)] if rest else []
    sizes = head + tail
    sizes[0] += total - sum(sizes)
    return sizes


def make_vpc(rng: random.Random, region: str, index: int, n_subnets: int) -> dict:
    vpc_id = "vpc-" + hexid(rng)
    name = f"{region.split('-')[0]}-{['prod', 'stage', 'data', 'shared', 'dev', 'batch'][index % 6]}-{index:02d}"
    # /26 subnets: 1 024 per /16, so a VPC of thousands has several IPv4 blocks (as large ones do).
    blocks = [f"10.{(index * 8 + b) % 256}.0.0/16" for b in range(max(1, -(-n_subnets // 1024)))]
    azs = REGION_AZS[region]
    # Small VPCs use some zones only, so the picker has zones to call missing.
    used = azs if n_subnets >= 200 else azs[: max(1, min(len(azs) - 1, 2 + index % 2))]
    tiers = ["public", "private", "data"]
    subnets = []
    for i in range(n_subnets):
        block = blocks[i // 1024]
        second, third = block.split(".")[1], (i % 1024) // 4
        tier = tiers[i % 3]
        az, az_id = used[(i // 3) % len(used)]
        ipv6_only = rng.random() < 0.02
        free = rng.randint(0, MIN_FREE_IPS - 1) if rng.random() < 0.1 else rng.randint(MIN_FREE_IPS, 59)
        subnets.append({
            "subnetId": "subnet-" + hexid(rng),
            "name": f"{name}-{tier}-{az[-1]}-{i:04d}",
            "cidrBlock": None if ipv6_only else f"10.{second}.{third}.{(i % 4) * 64}/26",
            "ipv6CidrBlocks": [f"2600:1f14:{index:x}:{i:x}::/64"] if ipv6_only or tier == "public" else [],
            "availabilityZone": az,
            "availabilityZoneId": az_id,
            "availableIpAddressCount": 0 if ipv6_only else free,
            "mapPublicIpOnLaunch": tier == "public",
            "defaultForAz": False,
            "state": "available",
        })
    subnets.sort(key=lambda s: s["subnetId"])
    # A main table, then one table per ten subnets (per tier and zone in practice), each with a few routes.
    tables = [{
        "routeTableId": "rtb-" + hexid(rng), "name": f"{name}-main", "main": True, "subnetIds": [],
        "routes": [{"destination": b, "target": "local", "state": "active", "origin": "CreateRouteTable"}
                   for b in blocks],
    }]
    per_table = 10
    for t in range(-(-n_subnets // per_table)):
        members = subnets[t * per_table:(t + 1) * per_table]
        routes = [{"destination": b, "target": "local", "state": "active", "origin": "CreateRouteTable"}
                  for b in blocks]
        routes.append({"destination": "0.0.0.0/0", "state": "active", "origin": "CreateRoute",
                       "target": ("igw-" if t % 3 == 0 else "nat-") + hexid(rng)})
        routes.append({"destination": "::/0", "target": "eigw-" + hexid(rng), "state": "active",
                       "origin": "CreateRoute"})
        routes.append({"destination": "10.200.0.0/16", "target": "tgw-" + hexid(rng),
                       "state": "blackhole" if t % 17 == 0 else "active", "origin": "CreateRoute"})
        routes.append({"destination": "pl-" + hexid(rng, 8), "target": "vpce-" + hexid(rng),
                       "state": "active", "origin": "CreateRoute"})
        tables.append({"routeTableId": "rtb-" + hexid(rng), "name": f"{name}-rt-{t:03d}", "main": False,
                       "subnetIds": [s["subnetId"] for s in members], "routes": routes})
    tables.sort(key=lambda t: t["routeTableId"])
    return {
        "vpcId": vpc_id, "name": name, "cidrBlock": blocks[0], "cidrBlocks": blocks,
        "ipv6CidrBlocks": [f"2600:1f14:{index:x}::/56"], "isDefault": False, "state": "available",
        "ownerId": ACCOUNT if index % 9 else "210987654321",  # now and then a VPC shared through RAM
        "subnets": subnets, "routeTables": tables,
    }


def make_event(subnets: int, link: str, seed: int) -> tuple[dict, dict]:
    """A complete account.linked event for an account of `subnets` subnets, and facts about it."""
    rng = random.Random(seed)
    regions, n_vpcs = SHAPES.get(subnets) or (["us-west-2", "us-east-1"], max(2, subnets // 250))
    sizes = vpc_sizes(subnets, n_vpcs)
    inventory = {r: [] for r in regions}
    largest = None
    for i, n in enumerate(sizes):
        region = regions[i % len(regions)]
        vpc = make_vpc(rng, region, i, n)
        inventory[region].append(vpc)
        if largest is None:
            largest = (region, vpc)
    for r in regions:
        inventory[r].sort(key=lambda v: v["vpcId"])
    stack_id = f"arn:aws:cloudformation:us-west-2:{ACCOUNT}:stack/console-bench-{subnets}-{link}/{uuid.UUID(int=rng.getrandbits(128))}"
    request_id = str(uuid.UUID(int=rng.getrandbits(128)))
    digest = lambda s: hashlib.sha256(s.encode()).hexdigest()[:32]  # noqa: E731
    event = {
        "type": "account.linked",
        "timestamp": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": {
            "schemaVersion": "1",
            "eventId": "msg_" + digest(stack_id + "\n" + request_id),
            "accountId": ACCOUNT, "partition": "aws", "region": "us-west-2", "stackId": stack_id,
            "requestId": request_id, "logicalResourceId": "AccountLink",
            "physicalResourceId": "link-" + digest(stack_id + "\nAccountLink"),
            "externalId": None, "roles": {}, "vpcId": None, "regions": regions, "inventoryComplete": True,
            "inventory": [{"region": r, "vpcs": inventory[r]} for r in regions],
        },
    }
    region, vpc = largest
    usable = [s["subnetId"] for s in vpc["subnets"]
              if s["cidrBlock"] and s["availableIpAddressCount"] >= MIN_FREE_IPS]
    facts = {
        "link": event["data"]["physicalResourceId"], "vpcs": len(sizes), "regions": regions,
        "tables": sum(len(v["routeTables"]) for r in regions for v in inventory[r]),
        "unusable": sum(1 for r in regions for v in inventory[r] for s in v["subnets"]
                        if not s["cidrBlock"] or s["availableIpAddressCount"] < MIN_FREE_IPS),
        "largest": {"region": region, "vpcId": vpc["vpcId"], "subnets": len(vpc["subnets"]),
                    "tables": len(vpc["routeTables"]), "usable": usable,
                    "disabled": len(vpc["subnets"]) - len(usable)},
        "other_region": next(r for r in regions if r != region),
    }
    return event, facts


def check_schema(event: dict) -> None:
    import jsonschema
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(event)


# ---- link-receiver ----

def build() -> None:
    say("building link-receiver and the split_and_sign example (release)")
    # One command for both, so one feature resolution: built alone, the example would resolve link-contract's
    # dependencies with fewer features than link-receiver (and bench/registry/run.py) do and compile them again.
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "link-registry", "--bin", "link-receiver",
                    "-p", "link-contract", "--example", "split_and_sign"], cwd=ROOT, check=True)


def start_receiver(work: Path, secret: str) -> str:
    proc = CHILDREN.adopt(services.link_receiver(
        RECEIVER, ["--database", f"sqlite://{work / 'registry.db'}", "--auth-mode", "hmac-only",
                   "--secret", secret, "--min-free-ips", str(MIN_FREE_IPS)],
        work / "link-receiver.log", timeout=30, env=dict(os.environ, RUST_LOG="warn")))
    return proc.url


def request(base: str, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, bytes, float]:
    host = base.removeprefix("http://")
    conn = http.client.HTTPConnection(host, timeout=120)
    t0 = time.perf_counter()
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    elapsed = time.perf_counter() - t0
    conn.close()
    return r.status, data, elapsed


def deliver(base: str, secret: str, event: dict) -> list[dict]:
    """Splits and signs the event with the contract's code, POSTs every part; what each answer said."""
    out = subprocess.run([str(SPLITTER)], input=json.dumps(event, separators=(",", ":")), text=True,
                         capture_output=True, check=True, env=dict(os.environ, PROVIDER_SIGNING_SECRET=secret))
    answers = []
    for line in out.stdout.splitlines():
        m = json.loads(line)
        body = m["body"].encode()
        status, data, elapsed = request(base, "POST", "/hooks/account-link", body, {
            "content-type": "application/json", "webhook-id": m["id"],
            "webhook-timestamp": str(m["timestamp"]), "webhook-signature": m["signature"]})
        if status != 200:
            raise RuntimeError(f"delivery {m['id']} refused: {status} {data[:300]!r}")
        answers.append({"bytes": len(body), "seconds": elapsed, "message": json.loads(data)["message"]})
    return answers


# ---- the browser ----

# Runs before the page's own script in every document: marks the moment select#region is filled (the
# picker is built in one go and inserted at the end), the next frame after it, and how long reading and
# parsing each JSON response took.
PAGE_HOOKS = r"""
(() => {
  const b = window.__bench = { json: [] };
  const json = Response.prototype.json;
  Response.prototype.json = async function () {
    const t0 = performance.now();
    const v = await json.call(this);
    b.json.push({ url: this.url, start: t0, end: performance.now() });
    return v;
  };
  const obs = new MutationObserver(() => {
    const r = document.getElementById("region");
    if (!r || !r.options.length) return;
    obs.disconnect();
    b.ready = performance.now();
    requestAnimationFrame(() => setTimeout(() => { b.painted = performance.now(); }, 0));
  });
  obs.observe(document, { childList: true, subtree: true });
})();
"""

# Sets a <select> and fires `change` as a user's choice does; times the handler (synchronous: the page
# builds the lists in it) and the time to the next frame (style, layout and paint of the new lists).
CHOOSE = r"""
const [id, value, done] = arguments;
const sel = document.getElementById(id);
const subnets = document.getElementById("subnets");
const t0 = performance.now();
sel.value = value;
sel.dispatchEvent(new Event("change", { bubbles: true }));
const t1 = performance.now();
const options = subnets.options.length;
const disabled = [...subnets.options].filter((o) => o.disabled).length;
requestAnimationFrame(() => setTimeout(() => done({ handler: t1 - t0, frame: performance.now() - t0,
  options, disabled, value: sel.value }), 0));
"""

# Selects these subnets, clicks Save, and resolves when #save-status says "Saved." (or anything else).
SAVE = r"""
const [ids, done] = arguments;
const subnets = document.getElementById("subnets");
for (const o of subnets.options) o.selected = ids.includes(o.value);
const status = document.getElementById("save-status");
status.textContent = "";
const t0 = performance.now();
const obs = new MutationObserver(() => {
  if (!status.textContent) return;
  obs.disconnect();
  done({ ms: performance.now() - t0, text: status.textContent });
});
obs.observe(status, { childList: true, characterData: true, subtree: true });
document.getElementById("save").click();
"""

# What the page's navigation and its API call cost, from the Performance API (ms from navigation start).
TIMINGS = r"""
const nav = performance.getEntriesByType("navigation")[0];
const api = performance.getEntriesByType("resource").find((e) => e.name.includes("/api/links/"));
const json = window.__bench.json.find((j) => j.url.includes("/api/links/"));
return { ready: window.__bench.ready, painted: window.__bench.painted,
  htmlResponseEnd: nav.responseEnd, domContentLoaded: nav.domContentLoadedEventEnd,
  apiStart: api && api.startTime, apiResponseStart: api && api.responseStart, apiResponseEnd: api && api.responseEnd,
  apiBytes: api && api.decodedBodySize, jsonStart: json && json.start, jsonEnd: json && json.end,
  nodes: document.getElementsByTagName("*").length,
  heap: performance.memory ? performance.memory.usedJSHeapSize : null };
"""


def start_browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    driver.implicitly_wait(0)
    driver.set_script_timeout(120)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": PAGE_HOOKS})
    driver.execute_cdp_cmd("Performance.enable", {})
    return driver


def open_picker(driver, url: str) -> dict:
    driver.get(url)
    end = time.monotonic() + 120
    while time.monotonic() < end:
        t = driver.execute_script(TIMINGS)
        if t["painted"] is not None:
            return t
        time.sleep(0.05)
    raise RuntimeError(f"the picker at {url} was not ready in 120 s")


def heap_after_gc(driver) -> tuple[int, int | None]:
    """JS heap in use after a full GC (CDP), and what performance.memory says then (coarse in Chromium)."""
    driver.execute_cdp_cmd("HeapProfiler.collectGarbage", {})
    metrics = {m["name"]: m["value"] for m in driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]}
    pm = driver.execute_script("return performance.memory ? performance.memory.usedJSHeapSize : null")
    return int(metrics["JSHeapUsedSize"]), pm


def cdp_metrics(driver) -> dict:
    return {m["name"]: m["value"] for m in driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]}


def choose(driver, select_id: str, value: str) -> dict:
    r = driver.execute_async_script(CHOOSE, select_id, value)
    if r["value"] != value:
        raise RuntimeError(f"#{select_id} did not take {value}")
    return r


# ---- one account size ----

def measure(base: str, secret: str, size: int, reps: int, work: Path, profile: bool) -> dict:
    res: dict = {"size": size}
    events = {}
    for name in ("first", "saved"):
        event, facts = make_event(size, name, seed=size * 7 + (name == "saved"))
        check_schema(event)
        t0 = time.perf_counter()
        answers = deliver(base, secret, event)
        events[name] = facts
        say(f"  {size} subnets ({name}): {len(answers)} deliveries, {sum(a['bytes'] for a in answers):,} bytes, "
            f"stored in {time.perf_counter() - t0:.2f} s")
        res.setdefault("deliveries", answers)
    facts = events["first"]
    res["facts"] = {k: v for k, v in facts.items() if k != "largest"} | {
        "largest": {k: v for k, v in facts["largest"].items() if k != "usable"}}

    # The API answer the page fetches: its size, and how long link-receiver takes to produce it.
    api_path = f"/api/links/{facts['link']}"
    status, body, _ = request(base, "GET", api_path)
    link = json.loads(body)
    if status != 200 or link["state"] != "linked":
        raise RuntimeError(f"GET {api_path}: {status}")
    got = sum(len(v["subnets"]) for r in link["inventory"] for v in r["vpcs"])
    if got != size:
        raise RuntimeError(f"the registry holds {got} subnets for the {size}-subnet account")
    res["api_bytes"] = len(body)
    res["api_gzip_bytes"] = len(gzip.compress(body, 6))
    res["api_server_ms"] = [request(base, "GET", api_path)[2] * 1000 for _ in range(7)]
    res["page_server_ms"] = [request(base, "GET", f"/links/{facts['link']}")[2] * 1000 for _ in range(7)]

    profile_dir = Path(tempfile.mkdtemp(prefix="console-bench-chromium-", dir=work))
    driver = start_browser(profile_dir)
    try:
        url_first = f"{base}/links/{facts['link']}"
        largest = facts["largest"]
        open_picker(driver, url_first)  # warm-up: not counted
        load, vpc, region, heap, heap_pm, build, fetch, nodes = [], [], [], [], [], [], [], 0
        cdp = []
        for _ in range(reps):
            t = open_picker(driver, url_first)
            load.append(t)
            if t["jsonEnd"] is not None:
                build.append(t["ready"] - t["jsonEnd"])
                fetch.append(t["apiResponseEnd"] - t["apiStart"])
            choose(driver, "region", largest["region"])
            before = cdp_metrics(driver)
            r = choose(driver, "vpc", largest["vpcId"])
            after = cdp_metrics(driver)
            if (r["options"], r["disabled"]) != (largest["subnets"], largest["disabled"]):
                raise RuntimeError(f"select#subnets holds {r['options']} options ({r['disabled']} disabled), not "
                                   f"{largest['subnets']} ({largest['disabled']})")
            vpc.append(r)
            cdp.append({k: after[k] - before[k] for k in ("ScriptDuration", "RecalcStyleDuration",
                                                          "LayoutDuration", "TaskDuration", "Nodes")})
            nodes = int(after["Nodes"])
            h, pm = heap_after_gc(driver)
            heap.append(h)
            heap_pm.append(pm)
            region.append(choose(driver, "region", facts["other_region"]))
        res.update(load=load, vpc=vpc, region=region, heap=heap, heap_pm=heap_pm, build=build, fetch=fetch,
                   nodes=nodes, cdp=cdp)

        # Save, on a second link of the same shape: each visit opens with the saved choice (the largest
        # VPC, its subnets listed and three selected), as a returning customer sees it.
        saved = events["saved"]
        url_saved = f"{base}/links/{saved['link']}"
        usable = saved["largest"]["usable"]
        open_picker(driver, url_saved)
        choose(driver, "region", saved["largest"]["region"])
        choose(driver, "vpc", saved["largest"]["vpcId"])
        first = driver.execute_async_script(SAVE, usable[:3])
        if first["text"] != "Saved.":
            raise RuntimeError(f"Save said {first['text']!r}")
        saves, reload = [], []
        for i in range(reps):
            t = open_picker(driver, url_saved)
            reload.append(t)
            shown = driver.execute_script(
                "return [document.getElementById('vpc').value, document.getElementById('subnets').options.length,"
                " [...document.getElementById('subnets').selectedOptions].length]")
            if shown[0] != saved["largest"]["vpcId"] or shown[1] != saved["largest"]["subnets"] or shown[2] != 3:
                raise RuntimeError(f"the saved choice is not shown on reload: {shown}")
            pick = usable[3 * (i + 1): 3 * (i + 2)] or usable[:3]
            s = driver.execute_async_script(SAVE, pick)
            if s["text"] != "Saved.":
                raise RuntimeError(f"Save said {s['text']!r}")
            saves.append(s["ms"])
        res.update(saves=saves, reload=reload)

        # The same first visit over a slower link than loopback (Chromium's network emulation).
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.emulateNetworkConditions", SLOW_LINK)
        try:
            res["slow"] = [open_picker(driver, url_first) for _ in range(max(3, reps // 4))]
        finally:
            driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
                "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        if profile:
            res["profile"] = profile_page(driver, url_first, facts)
    finally:
        driver.quit()
        shutil.rmtree(profile_dir, ignore_errors=True)
    return res


# Pieces of what choosing a VPC does, timed one by one on the page's own data (the same calls as
# console.js's fillSubnets and renderRouteTables, run outside it).
PIECES = r"""
const [regionName, vpcId, done] = arguments;
(async () => {
const t = () => performance.now();
const out = {};
let a = t();
const res = await fetch(location.pathname.replace("/links/", "/api/links/"), { headers: { "x-csrf-token": document.body.dataset.csrf } });
const text = await res.text();
out.fetchText = t() - a;
a = t(); const link = JSON.parse(text); out.parse = t() - a;
const region = link.inventory.find((r) => r.region === regionName);
const vpc = region.vpcs.find((v) => v.vpcId === vpcId);
a = t();
const ordered = [...vpc.subnets].sort((x, y) => (x.availabilityZone || "").localeCompare(y.availabilityZone || "") || x.subnetId.localeCompare(y.subnetId));
out.sortLocaleCompare = t() - a;
a = t();
[...vpc.subnets].sort((x, y) => (x.availabilityZone < y.availabilityZone ? -1 : x.availabilityZone > y.availabilityZone ? 1 : x.subnetId < y.subnetId ? -1 : x.subnetId > y.subnetId ? 1 : 0));
out.sortPlain = t() - a;
a = t();
const frag = document.createDocumentFragment();
for (const s of ordered) { const o = document.createElement("option"); o.value = s.subnetId; o.textContent = s.name + " · " + s.subnetId; frag.append(o); }
out.buildOptions = t() - a;
a = t();
const zones = new Set(region.vpcs.flatMap((x) => x.subnets.map((s) => s.availabilityZone)).filter(Boolean));
out.zones = t() - a;
const box = document.createElement("div");
a = t();
for (const rt of vpc.routeTables) {
  const tb = document.createElement("table");
  for (const r of rt.routes) { const tr = tb.insertRow(); for (const c of [r.destination, r.target, r.state]) tr.insertCell().textContent = c || ""; }
  const h = document.createElement("h3"); h.textContent = rt.routeTableId + " · subnets " + rt.subnetIds.join(", ");
  box.append(h, tb);
}
out.buildRouteTables = t() - a;
out.routeTableNodes = box.getElementsByTagName("*").length;
return out;
})().then(done, (e) => done({ error: String(e) }));
"""


def profile_page(driver, url: str, facts: dict) -> dict:
    """Where the time of the largest account goes: the page's phases and the pieces of a VPC choice."""
    open_picker(driver, url)
    pieces = []
    for _ in range(5):
        p = driver.execute_async_script(PIECES, facts["largest"]["region"], facts["largest"]["vpcId"])
        if "error" in p:
            raise RuntimeError(f"profiling failed in the page: {p['error']}")
        pieces.append(p)
    out = {k: statistics.median(p[k] for p in pieces) for k in pieces[0]}
    # The same choice with console.js's renderRouteTables (a global function) replaced by a no-op: what
    # building the closed "Route tables" box on every choice costs.
    stubbed, full = [], []
    for stub in (False, True) * 4:
        open_picker(driver, url)
        if stub:
            driver.execute_script("window.renderRouteTables = () => {};")
        choose(driver, "region", facts["largest"]["region"])
        before = cdp_metrics(driver)
        r = choose(driver, "vpc", facts["largest"]["vpcId"])
        after = cdp_metrics(driver)
        r["nodes"] = after["Nodes"] - before["Nodes"]
        (stubbed if stub else full).append(r)
    for name, xs in (("withTables", full), ("withoutTables", stubbed)):
        out[name] = {k: statistics.median(x[k] for x in xs) for k in ("handler", "frame", "nodes")}
    return out


# ---- the report ----

def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(xs)
    return s[max(0, min(len(s) - 1, int(-(-q * len(s) // 1)) - 1))]


def fmt_ms(x: float) -> str:
    return f"{x:.1f}" if x < 100 else f"{x:.0f}"


def med_p95(xs: list[float]) -> str:
    return f"{fmt_ms(statistics.median(xs))} / {fmt_ms(pct(xs, 0.95))}"


def mib(n: float) -> str:
    return f"{n / 1048576:.1f}"


def machine() -> dict:
    cpu = "unknown"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1])
    version = lambda *cmd: subprocess.run(cmd, capture_output=True, text=True).stdout.strip()  # noqa: E731
    import selenium
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory": f"{mem_kib / 1048576:.1f} GiB",
        "kernel": platform.release(), "python": platform.python_version(),
        "chromium": version(shutil.which("chromium") or "/usr/bin/chromium", "--version"),
        "chromedriver": version(shutil.which("chromedriver") or "/usr/bin/chromedriver", "--version").split(" (")[0],
        "selenium": selenium.__version__, "rustc": version("rustc", "--version"),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load": "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
    }


def report(results: list[dict], info: dict, load_start: str, reps: int) -> str:
    L = [BEGIN, "## The console", ""]
    L.append(f"Generated by `make bench` (`bench/console_bench.py`, issue #11) on {info['date']}; method below.")
    L.append("")
    L.append(f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory']} RAM, Linux {info['kernel']}; "
             f"{info['chromium'].replace('built on ', 'built for ')}, headless (`--headless=new`), driven by "
             f"{info['chromedriver']} and Selenium {info['selenium']}; `target/release/link-receiver` "
             f"({info['rustc']}) on SQLite; load average at start {load_start}, at end {info['load']}.")
    L.append("")
    sizes = [r["size"] for r in results]
    L.append("| Account | " + " | ".join(f"{s:,} subnets" for s in sizes) + " |")
    L.append("|---|" + "---:|" * len(sizes))
    row = lambda name, f: L.append(f"| {name} | " + " | ".join(f(r) for r in results) + " |")  # noqa: E731
    row("VPCs (regions), route tables, unusable subnets",
        lambda r: f"{r['facts']['vpcs']} ({len(r['facts']['regions'])}), {r['facts']['tables']:,}, {r['facts']['unusable']:,}")
    row("Largest VPC: subnets, route tables", lambda r: f"{r['facts']['largest']['subnets']:,}, {r['facts']['largest']['tables']:,}")
    row("Deliveries (parts ≤ 1 MiB), bytes", lambda r: f"{len(r['deliveries'])}, {sum(d['bytes'] for d in r['deliveries']):,}")
    row("`/api/links/{id}` JSON (bytes; gzip -6 for comparison)", lambda r: f"{r['api_bytes']:,} ({r['api_gzip_bytes']:,})")
    row("link-receiver: `GET /api/links/{id}`, median (ms)", lambda r: fmt_ms(statistics.median(r["api_server_ms"])))
    row("link-receiver: `GET /links/{id}` (the HTML page), median (ms)", lambda r: fmt_ms(statistics.median(r["page_server_ms"])))
    row("**Navigation → picker ready** (`select#region` filled), median / p95 (ms)",
        lambda r: med_p95([t["ready"] for t in r["load"]]))
    row("… to the next frame (painted), median / p95 (ms)", lambda r: med_p95([t["painted"] for t in r["load"]]))
    row("… of which the API call (request → last byte), median (ms)", lambda r: fmt_ms(statistics.median(r["fetch"])))
    row("… of which building the picker (JSON parsed → ready), median (ms)", lambda r: fmt_ms(statistics.median(r["build"])))
    row("… over a 20 Mbit/s link with 20 ms latency (emulated), median (ms)",
        lambda r: fmt_ms(statistics.median(t["ready"] for t in r["slow"])))
    row("… of which the API call there, median (ms)",
        lambda r: fmt_ms(statistics.median(t["apiResponseEnd"] - t["apiStart"] for t in r["slow"])))
    row("**Choose the largest VPC** → `select#subnets` holds all its options, median / p95 (ms)",
        lambda r: med_p95([v["handler"] for v in r["vpc"]]))
    row("… to the next frame (painted), median / p95 (ms)", lambda r: med_p95([v["frame"] for v in r["vpc"]]))
    row("**Switch region** (largest VPC shown → another region), median / p95 (ms)",
        lambda r: med_p95([v["handler"] for v in r["region"]]))
    row("… to the next frame, median / p95 (ms)", lambda r: med_p95([v["frame"] for v in r["region"]]))
    row("**Save → \"Saved.\"** (3 subnets of the largest VPC), median / p95 (ms)", lambda r: med_p95(r["saves"]))
    row("Return visit → picker ready (saved choice: largest VPC listed), median / p95 (ms)",
        lambda r: med_p95([t["ready"] for t in r["reload"]]))
    row("JS heap used, largest VPC shown, after a GC (MiB, median; CDP `JSHeapUsedSize`)",
        lambda r: mib(statistics.median(r["heap"])))
    row("`performance.memory.usedJSHeapSize` then (MiB, median; Chromium rounds it)",
        lambda r: mib(statistics.median(r["heap_pm"])) if all(x is not None for x in r["heap_pm"]) else "n/a")
    row("DOM nodes, largest VPC shown (CDP `Nodes`)", lambda r: f"{r['nodes']:,}")
    L.append("")
    L.append(f"{reps} repetitions per figure and size (p95: nearest rank, so with {reps} samples the "
             f"{'slowest' if reps < 20 else 'second slowest' if reps < 40 else 'p95'}); one Chromium per size, "
             "one unmeasured visit first.")
    prof = next((r for r in results if r.get("profile")), None)
    if prof:
        p, c = prof["profile"], prof["cdp"]
        L.append("")
        L.append(f"**Where the time goes, {prof['size']:,} subnets** (medians). Choosing the largest VPC "
                 f"({prof['facts']['largest']['subnets']:,} subnets, {prof['facts']['largest']['tables']:,} route tables), "
                 f"Chromium's own counters (CDP `Performance.getMetrics`, deltas over the choice): script "
                 f"{statistics.median(x['ScriptDuration'] for x in c) * 1000:.0f} ms, style "
                 f"{statistics.median(x['RecalcStyleDuration'] for x in c) * 1000:.0f} ms, layout "
                 f"{statistics.median(x['LayoutDuration'] for x in c) * 1000:.0f} ms, all tasks "
                 f"{statistics.median(x['TaskDuration'] for x in c) * 1000:.0f} ms; "
                 f"{statistics.median(x['Nodes'] for x in c):+,.0f} DOM nodes. The pieces, timed alone on the page's data: "
                 f"fetch the API answer as text {fmt_ms(p['fetchText'])} ms, `JSON.parse` {fmt_ms(p['parse'])} ms, "
                 f"sort the subnets with `localeCompare` {fmt_ms(p['sortLocaleCompare'])} ms (plain `<` comparison: "
                 f"{fmt_ms(p['sortPlain'])} ms), create their options {fmt_ms(p['buildOptions'])} ms, the region's zones "
                 f"{fmt_ms(p['zones'])} ms, the VPC's route tables {fmt_ms(p['buildRouteTables'])} ms "
                 f"({p['routeTableNodes']:,} elements). With console.js's `renderRouteTables` replaced by a no-op "
                 f"(the route tables sit in a closed `<details>`), the same choice takes "
                 f"{fmt_ms(p['withoutTables']['handler'])} ms (next frame {fmt_ms(p['withoutTables']['frame'])} ms, "
                 f"{p['withoutTables']['nodes']:+,.0f} nodes) instead of {fmt_ms(p['withTables']['handler'])} ms "
                 f"({fmt_ms(p['withTables']['frame'])} ms, {p['withTables']['nodes']:+,.0f} nodes), 4 visits each.")
    L.append("")
    L.append("Method:")
    L.append("")
    L.append("- **Accounts**: generated by the script (seeded, so every run has the same ones) following "
             "docs/provider-events.md and checked against schema/link-event.v1.json: the largest VPC holds 30 % of the "
             "subnets, the next 20 %, 12 %, 8 %, the rest share the remainder; /26 subnets over as many /16 blocks as "
             "needed, 2 % IPv6-only and 10 % with fewer free addresses than `--min-free-ips 16` (shown "
             "disabled); one route table per ten subnets (explicit associations) plus the main one, each with a local "
             "route per IPv4 block, the others also `0.0.0.0/0` to an internet or NAT gateway, `::/0` to an egress-only "
             "gateway, a transit gateway route (some blackholed) and a prefix-list route; small VPCs use some zones "
             "only; one VPC in nine is shared from another account. Each size is stored twice, as two links (two stacks) of the same shape.")
    L.append("- **Delivery**: as the function sends it: `crates/link-contract/examples/split_and_sign.rs` splits the "
             "event with `link_contract::parts::split` at 1 MiB (the function's default `PROVIDER_MAX_BODY_BYTES`) and "
             "signs each part with `link_contract::signing::sign`; the script POSTs the parts to "
             "`link-receiver --auth-mode hmac-only` (loopback, no `--api-token`, SQLite in a temporary directory), "
             "which reassembles them; the benchmark checks the link is `linked` with every subnet.")
    L.append("- **Browser**: Debian's Chromium, headless, the flags of tests/console/test_console.py, a fresh "
             "`--user-data-dir` per size. A script injected before the page's own (CDP "
             "`Page.addScriptToEvaluateOnNewDocument`) records `performance.now()` (milliseconds since navigation "
             "start) when `select#region` gets its options, and after the next frame (`requestAnimationFrame` then "
             "`setTimeout 0`). Selenium only reads these values afterwards, so its round trips are not counted.")
    L.append("- **Choosing and switching**: one `execute_async_script` sets `select#vpc` (or `select#region`) and "
             "dispatches `change`, as a user's choice does; the handler builds the lists synchronously, so "
             "`performance.now()` around `dispatchEvent` is the time until `select#subnets` holds every option of the "
             "VPC (checked: as many as the VPC's subnets, the unusable ones disabled); \"next frame\" adds style, layout and paint. Each "
             "repetition: a fresh visit of the first link, choose the largest VPC's region, choose the largest VPC, "
             "measure the heap, switch to another region.")
    L.append("- **Save**: on the second link, which opens with the saved choice (largest VPC, three subnets "
             "selected): select three other usable subnets, click `button#save`, until `#save-status` reads "
             "\"Saved.\" (a MutationObserver), i.e. the PUT to `/api/links/{id}/selection`, which link-receiver "
             "checks against the stored inventory, and its answer.")
    L.append("- **Heap**: after `HeapProfiler.collectGarbage`, CDP `Performance.getMetrics` `JSHeapUsedSize` (exact) "
             "and the page's `performance.memory.usedJSHeapSize` (Chromium reports it in coarse buckets unless "
             "started with `--enable-precise-memory-info`, which the test's flags do not include).")
    L.append("- **API size and server time**: `GET /api/links/{id}` and the HTML page from Python over loopback "
             "(median of 7); link-receiver does not compress responses (gzip size given for comparison).")
    L.append(END)
    return "\n".join(L) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replaces our section between its markers; without them, adds it before a later section that a
    benchmark rewrites to the end of the file ("## The registry"), or at the end."""
    text = path.read_text() if path.exists() else ""
    i, j = text.find(BEGIN), text.find(END)
    if i >= 0 and j > i:
        rest = text[j + len(END):].lstrip("\n")
        text = text[:i] + section + ("\n" + rest if rest else "")
    else:
        k = text.find("\n## The registry\n")
        if k >= 0:
            text = text[:k + 1] + section + "\n" + text[k + 1:]
        else:
            text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def wait_quiet(limit: float) -> None:
    """Other builds on a 2-core machine move every figure: wait (a while) until the machine is quiet."""
    end = time.monotonic() + limit
    if limit > 0 and os.getloadavg()[0] >= 1.0:
        say(f"waiting up to {limit:.0f} s for the load average ({os.getloadavg()[0]:.2f}) to drop below 1")
    while os.getloadavg()[0] >= 1.0 and time.monotonic() < end:
        time.sleep(5)


def stop_all() -> None:
    CHILDREN.stop_all()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 repetitions; does not write BENCHMARKS.md")
    ap.add_argument("--sizes", help="comma-separated subnet counts (default 100,1000,10000)")
    ap.add_argument("--reps", type=int, help="repetitions per figure (default 20, 3 with --quick)")
    ap.add_argument("--no-build", action="store_true", help="use the binaries in target/release as they are")
    ap.add_argument("--out", type=Path, help="write the section into this file (default BENCHMARKS.md, full run)")
    ap.add_argument("--quiet-wait", type=float, default=300,
                    help="seconds to wait at most for the 1-minute load average to drop below 1 (default 300)")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [100, 1000, 10000]
    reps = args.reps or (3 if args.quick else 20)
    out = args.out or (None if args.quick or args.sizes or args.reps else ROOT / "BENCHMARKS.md")

    if not args.no_build:
        build()
    for binary in (RECEIVER, SPLITTER):
        if not binary.exists():
            say(f"{binary} is missing (run without --no-build)")
            return 1
    signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(143)))
    if not args.quick:
        wait_quiet(args.quiet_wait)
    load_start = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    work = Path(tempfile.mkdtemp(prefix="console-bench-"))
    ok = False
    try:
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        base = start_receiver(work, secret)
        say(f"link-receiver at {base}, work dir {work}")
        results = []
        for size in sizes:
            say(f"{size} subnets: {reps} repetitions")
            results.append(measure(base, secret, size, reps, work, profile=size == max(sizes)))
            r = results[-1]
            say(f"  ready {med_p95([t['ready'] for t in r['load']])} ms, largest VPC "
                f"{med_p95([v['handler'] for v in r['vpc']])} ms (frame {med_p95([v['frame'] for v in r['vpc']])}), "
                f"region {med_p95([v['handler'] for v in r['region']])} ms, save {med_p95(r['saves'])} ms, "
                f"API {r['api_bytes']:,} bytes, heap {mib(statistics.median(r['heap']))} MiB")
        section = report(results, machine(), load_start, reps)
        print(section)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1, default=str))
        if out:
            write_section(out, section)
            say(f"wrote the console section of {out}")
        ok = True
    finally:
        stop_all()
        if ok and not os.environ.get("BENCH_KEEP_WORK"):
            shutil.rmtree(work, ignore_errors=True)
        elif not ok:
            say(f"work dir kept: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
