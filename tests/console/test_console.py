"""The provider's console in a real browser (Debian's headless Chromium, driven by Selenium), against the
real registry (`link-receiver`), the real function (`account-link`, under a Lambda Runtime API emulator)
and moto: log in, start a link, read the external id the page shows, run the stack's Create with it, see
the page say "connected" without a reload, pick a region, a VPC and subnets (the subnet list is exactly
moto's subnets of that VPC), save, reload, find the choice still there, and log out (the session ends on the
server).

Needs `cargo build --workspace` first (make test runs cargo test, which builds both binaries).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from linksupport import procs
from linksupport.runtime_api import RuntimeApi
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

ROOT = Path(__file__).resolve().parents[2]
FUNCTION = ROOT / "target" / "debug" / "account-link"
REGIONS = ["us-west-2", "eu-west-1"]
TOKEN = "console-test-token-" + secrets.token_hex(8)
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
TEMPLATE_URL = "https://provider-templates.s3.us-west-2.amazonaws.com/account-link/1.0.0/template.yaml"
# Every run keeps a screenshot of the picker in target/; UPDATE_SCREENSHOT=1 also refreshes the README's.
SCREENSHOT = ROOT / "target" / "test-output" / "console-picker.png"
DOCS_SCREENSHOT = ROOT / "docs" / "console-picker.png"


def fixture(endpoint: str, *args: str) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "moto_fixture.py"), "--endpoint", endpoint, *args],
                         capture_output=True, text=True, check=True)
    return out.stdout


@pytest.fixture(scope="module")
def moto(moto):
    """conftest's moto, seeded with an account's VPCs in REGIONS: its endpoint."""
    fixture(moto, "seed", "--regions", ",".join(REGIONS), "--vpcs", "2", "--subnets", "3")
    return moto


@pytest.fixture(scope="module")
def registry(tmp_path_factory, moto, link_receiver):
    db = tmp_path_factory.mktemp("registry") / "registry.db"
    # Told a port rather than choosing one: the console's public URL (the quick-create link's callback) and
    # the audience of proofs are its own origin, so they must be known before it starts.
    origin = f"http://127.0.0.1:{procs.free_port()}"
    # The default mode: a signature and a proof of the account, replayed to moto's STS (which does not
    # check SigV4 signatures; tests/trust.rs compares ours with botocore's).
    receiver = link_receiver(
        ["--database", f"sqlite://{db}",
         "--secret", SECRET, "--audience", origin, "--sts-endpoint", moto,
         "--api-token", TOKEN,
         "--template-url", TEMPLATE_URL, "--stack-region", "us-west-2",
         "--stack-param", "ProviderAccountId=111122223333", "--stack-param", "ProviderPlayerAccountId=222233334444",
         "--stack-param", "ProviderServiceAccountId=333344445555", "--min-free-ips", "16"],
        listen=origin.removeprefix("http://"),
        # The provider's own AWS access (role checks, the Refresh button): moto, with any credentials.
        env={**os.environ, "AWS_ACCESS_KEY_ID": "provider", "AWS_SECRET_ACCESS_KEY": "provider",
             "AWS_ENDPOINT_URL": moto, "AWS_EC2_METADATA_DISABLED": "true"})
    return receiver.url


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="console-test-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--window-size=1400,1100", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def run_function(moto: str, registry: str, event_name: str, properties: dict, log: Path) -> dict:
    """The real function binary under a Lambda Runtime API emulator: one CloudFormation request."""
    api = RuntimeApi().start()
    creds = json.loads(fixture(moto, "assume-role", "--role-name", "account-link-BasicLambdaRole",
                               "--session", "account-link"))
    env = {
        "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"),
        "AWS_LAMBDA_RUNTIME_API": api.address, "AWS_LAMBDA_FUNCTION_NAME": "account-link",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_STREAM_NAME": "test", "AWS_LAMBDA_LOG_GROUP_NAME": "test",
        "AWS_REGION": "us-west-2", "AWS_ENDPOINT_URL": moto, "AWS_ACCESS_KEY_ID": creds["accessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["secretAccessKey"], "AWS_SESSION_TOKEN": creds["sessionToken"],
        "ACCOUNT_LINK_ALLOW_LOOPBACK": "true",
        "PROVIDER_CALLBACK_URL": f"{registry}/hooks/account-link", "PROVIDER_SIGNING_SECRET": SECRET,
    }
    if not FUNCTION.exists():
        pytest.fail(f"{FUNCTION} is missing: run `cargo test --workspace --no-run` (make console-test does)")
    # No line to wait for: the runtime polls the emulator for its invocation once it is up.
    function = procs.start([str(FUNCTION)], name="account-link", log=log, ready=None, env=env)
    try:
        event = json.loads((ROOT / "events" / event_name).read_text())
        key = f"console/{event_name}-{secrets.token_hex(4)}"
        event["ResponseURL"] = fixture(moto, "presign", "--bucket", "cfn-responses", "--key", key).strip()
        event["ResourceProperties"].update(properties)
        api.invoke(event, deadline_s=60).wait(timeout=90)
        return json.loads(fixture(moto, "read", "--bucket", "cfn-responses", "--key", key))
    finally:
        api.close()
        function.stop()


def wait(driver, timeout=30):
    return WebDriverWait(driver, timeout, poll_frequency=0.1)


def test_link_connect_and_pick_a_network(moto, registry, browser, tmp_path):
    # Log in with the API token.
    browser.get(registry + "/")
    wait(browser).until(EC.url_contains("/login"))
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
    wait(browser).until(EC.presence_of_element_located((By.ID, "start-link")))
    cookie = browser.get_cookie("link_console")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie

    # Start a link: the page shows a fresh external id and a quick-create link that carries it.
    browser.find_element(By.ID, "start-link").click()
    wait(browser).until(EC.presence_of_element_located((By.ID, "external-id")))
    external_id = browser.find_element(By.ID, "external-id").text
    assert re.fullmatch(r"[A-Za-z0-9_-]{40}", external_id), external_id
    launch = browser.find_element(By.ID, "launch").get_attribute("href")
    parsed = urllib.parse.urlsplit(launch)
    assert parsed.scheme == "https" and parsed.hostname == "us-west-2.console.aws.amazon.com", launch
    params = dict(urllib.parse.parse_qsl(parsed.fragment.split("?", 1)[1]))
    assert params["templateURL"] == TEMPLATE_URL
    assert params["param_ExternalId"] == external_id
    assert params["param_ProviderCallbackUrl"] == registry + "/hooks/account-link"
    assert params["param_ProviderAccountId"] == "111122223333"
    assert SECRET not in launch and "whsec_" not in launch and "ProviderSigningSecret" not in launch
    assert browser.find_element(By.ID, "request").get_attribute("data-status") == "pending"
    request_url = browser.current_url

    # The customer's stack runs: the real function with that external id, against moto.
    answer = run_function(moto, registry, "create.json", {"ExternalId": external_id, "Regions": REGIONS},
                          tmp_path / "account-link.log")
    assert answer["Status"] == "SUCCESS", answer
    link_id = answer["PhysicalResourceId"]

    # The page says so without a reload.
    wait(browser).until(lambda d: d.find_element(By.ID, "request").get_attribute("data-status") == "connected")
    assert browser.current_url == request_url
    assert "123456789012" in browser.find_element(By.ID, "request-status").text
    browser.find_element(By.CSS_SELECTOR, "#connected-link a").click()

    # Pick a network: region, then VPC; the subnet list is exactly moto's subnets of that VPC.
    wait(browser).until(EC.presence_of_element_located((By.ID, "vpc")))
    assert browser.current_url.endswith(f"/links/{link_id}")
    listed = json.loads(fixture(moto, "inventory", "--regions", ",".join(REGIONS)))
    region = "eu-west-1"
    Select(browser.find_element(By.ID, "region")).select_by_value(region)
    vpcs = listed[region]
    vpc_id = next(v for v, x in sorted(vpcs.items()) if not x["isDefault"] and x["subnets"])
    vpc_select = Select(browser.find_element(By.ID, "vpc"))
    assert {o.get_attribute("value") for o in vpc_select.options if o.get_attribute("value")} == set(vpcs)
    vpc_select.select_by_value(vpc_id)
    subnet_select = Select(browser.find_element(By.ID, "subnets"))
    shown = [o.get_attribute("value") for o in subnet_select.options]
    assert sorted(shown) == sorted(vpcs[vpc_id]["subnets"]), "exactly this VPC's subnets, no other"
    for option in subnet_select.options:
        sid = option.get_attribute("value")
        assert vpcs[vpc_id]["subnets"][sid]["cidrBlock"] in option.text
        assert vpcs[vpc_id]["subnets"][sid]["availabilityZone"] in option.text
    picked = sorted(shown)[:2]
    for sid in picked:
        subnet_select.select_by_value(sid)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))
    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(SCREENSHOT, DOCS_SCREENSHOT)
    browser.find_element(By.ID, "save").click()
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "save-status"), "Saved."))

    # Reload: the choice is still there.
    browser.refresh()
    wait(browser).until(EC.presence_of_element_located((By.ID, "subnets")))
    assert Select(browser.find_element(By.ID, "region")).first_selected_option.get_attribute("value") == region
    assert Select(browser.find_element(By.ID, "vpc")).first_selected_option.get_attribute("value") == vpc_id
    chosen = sorted(o.get_attribute("value") for o in Select(browser.find_element(By.ID, "subnets")).all_selected_options)
    assert chosen == picked
    assert vpc_id in browser.find_element(By.ID, "current-selection").text

    # A subnet is added to the account after the stack reported it: Refresh shows it without a reload.
    added = json.loads(fixture(moto, "add-subnet", "--region", region, "--vpc", vpc_id))
    browser.execute_script("window.notReloaded = true;")
    browser.find_element(By.ID, "refresh").click()
    wait(browser, 60).until(EC.text_to_be_present_in_element((By.ID, "refresh-progress"), "Refreshed"))
    assert f"added subnet {added['subnetId']}" in browser.find_element(By.ID, "refresh-progress").text
    wait(browser).until(lambda d: added["subnetId"] in [
        o.get_attribute("value") for o in Select(d.find_element(By.ID, "subnets")).options])
    # The role checks and the refresh's outcome follow too (server-sent events), without a reload.
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "roles-check"), "roles verified"))
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "refresh-status"), "ok at"))
    assert added["subnetId"] in browser.find_element(By.ID, "refresh-changes").text
    assert browser.execute_script("return window.notReloaded === true;"), "the page was not reloaded"
    assert Select(browser.find_element(By.ID, "vpc")).first_selected_option.get_attribute("value") == vpc_id
    assert "refreshed" in browser.find_element(By.ID, "inventory-source").text

    # Route tables and the history are one click away.
    browser.find_element(By.CSS_SELECTOR, "#route-tables-box summary").click()
    tables = {e.get_attribute("data-route-table-id") for e in browser.find_elements(By.CSS_SELECTOR, "#route-tables .route-table")}
    assert tables == set(vpcs[vpc_id]["routeTables"])
    browser.find_element(By.CSS_SELECTOR, "#history-box summary").click()
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "history"), "account.linked"))

    # The accounts list shows the link, solicited and complete.
    browser.get(registry + "/")
    row = wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, f"tr[data-link-id='{link_id}']")))
    assert "linked" in row.text and "123456789012" in row.text and "unsolicited" not in row.text
    # The link page names the role whose proof established the account.
    browser.get(f"{registry}/links/{link_id}")
    proven = wait(browser).until(EC.presence_of_element_located((By.ID, "proven-by")))
    assert proven.text.startswith("arn:aws:sts::123456789012:assumed-role/account-link-BasicLambdaRole/"), proven.text

    # Log out: the session ends on the server, so its cookie, replayed, opens nothing.
    session = browser.get_cookie("link_console")["value"]
    browser.find_element(By.ID, "logout").click()
    wait(browser).until(EC.url_contains("/login"))
    assert browser.get_cookie("link_console") is None
    assert "data-csrf" not in browser.page_source
    replay = urllib.request.Request(registry + "/api/links", headers={"Cookie": f"link_console={session}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(replay, timeout=10)
    assert refused.value.code == 401
