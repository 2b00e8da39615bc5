"""The link-receiver image (`make image`), run the way docs/provider-deploy.md says: the doc's podman commands
are read from the page (blocks marked `<!-- test: NAME -->`) and run as they are, with only the container's
name, the host port and the volume name changed. Against SQLite on a volume and against a PostgreSQL on
this host that, like RDS, accepts only TLS and a password: a delivery signed by the Python
`standardwebhooks` package is posted and read back through the API with the token.

Needs the image: `make image-test` builds it first (IMAGE names it; default localhost/link-receiver:latest).
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import re
import secrets
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from cfnlint.decode import cfn_yaml
# A host port for a container to publish (podman must be told one).
from linksupport.procs import free_port
from standardwebhooks import Webhook

ROOT = Path(__file__).resolve().parents[2]
# tests/template's renderer and scenarios, importable through pytest.ini's pythonpath.
from render import Renderer  # noqa: E402
from test_provider_stack import SCENARIOS  # noqa: E402

DOC = ROOT / "docs" / "provider-deploy.md"
CONTAINERFILE = ROOT / "deploy" / "Containerfile"
IMAGE = os.environ.get("IMAGE", "localhost/link-receiver:latest")
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]
MAX_IMAGE_BYTES = 25 * 1024 * 1024
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
TOKEN = secrets.token_hex(24)
# What RDS generates can hold any of these; link-receiver must put it into the URL intact.
DB_PASSWORD = "p@ss:w/rd%41+" + secrets.token_hex(8) + "?#&"
RUN = f"t{os.getpid()}-{secrets.token_hex(3)}"


def doc_blocks() -> dict[str, str]:
    text = DOC.read_text()
    blocks = dict(re.findall(r"<!-- test: ([a-z0-9-]+) -->\n```sh\n(.*?)```", text, re.S))
    assert set(blocks) == {"image-sqlite", "image-postgres-migrate", "image-postgres-serve", "image-health"}
    return blocks


def replace(text: str, old: str, new: str) -> str:
    assert old in text, f"the doc's command no longer has {old!r}: update this test"
    return text.replace(old, new)


def doc_command(name: str, container: str = "", port: int = 0, volume: str = "") -> str:
    """The doc's block, with this run's container name, host port and volume, and the image under test."""
    text = doc_blocks()[name]
    if container and "--name link-receiver" in text:
        text = replace(text, "--name link-receiver", f"--name {container}")
    if container and "healthcheck run link-receiver" in text:
        text = replace(text, "healthcheck run link-receiver", f"healthcheck run {container}")
    if port:
        text = replace(text, "127.0.0.1:8080", f"127.0.0.1:{port}")
    if volume:
        text = replace(text, "link-registry:/data", f"{volume}:/data")
    if IMAGE != "localhost/link-receiver:latest":
        text = replace(text, "localhost/link-receiver:latest", IMAGE)
    return text


def sh(script: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                       env={**os.environ, **(env or {})}, timeout=120)
    if check:
        assert p.returncode == 0, f"{script}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=120)
    if check:
        assert p.returncode == 0, f"podman {' '.join(args)}: {p.stderr}"
    return p


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_healthy(base: str, container: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if http("GET", f"{base}/healthz")[0] == 200:
                return
        except OSError:
            pass
        state = podman("inspect", "--format", "{{.State.Status}}", container, check=False).stdout.strip()
        if state not in ("running", "created", "configured"):
            break
        time.sleep(0.2)
    logs = podman("logs", container, check=False)
    raise AssertionError(f"{container} did not become healthy ({state}): {logs.stdout}{logs.stderr}")


def deliver(base: str) -> dict:
    """Posts a signed account.linked event, as the customer's function would; returns the event."""
    event = json.loads((ROOT / "docs" / "examples" / "account.linked.json").read_text())
    data = event["data"]
    data["eventId"] = "msg_" + secrets.token_hex(16)
    # A stack of its own, and the link id the receiver recomputes from it (link-contract's link_id).
    data["stackId"] = data["stackId"].rsplit("/", 1)[0] + "/" + str(uuid.uuid4())
    digest = hashlib.sha256(f"{data['stackId']}\n{data['logicalResourceId']}".encode()).hexdigest()[:32]
    data["physicalResourceId"] = "link-" + digest
    now = datetime.datetime.now(datetime.timezone.utc)
    event["timestamp"] = now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    body = json.dumps(event)
    msg_id = event["data"]["eventId"]
    signature = Webhook(SECRET).sign(msg_id, now, body)
    status, answer = http("POST", f"{base}/hooks/account-link", body.encode(), {
        "content-type": "application/json", "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature,
    })
    assert status == 200, answer
    # The same delivery again is acknowledged and stored once.
    assert http("POST", f"{base}/hooks/account-link", body.encode(), {
        "content-type": "application/json", "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature,
    })[0] == 200
    return event


def read_back(base: str, event: dict) -> dict:
    link = event["data"]["physicalResourceId"]
    status, body = http("GET", f"{base}/api/links/{link}", headers={"authorization": f"Bearer {TOKEN}"})
    assert status == 200, body
    stored = json.loads(body)
    assert (stored["linkId"], stored["accountId"], stored["state"]) == (link, event["data"]["accountId"], "linked")
    assert stored["lastEventId"] == event["data"]["eventId"]
    return stored


@pytest.fixture(scope="module")
def image() -> dict:
    p = podman("image", "inspect", IMAGE, check=False)
    if p.returncode != 0:
        pytest.fail(f"{IMAGE} is missing: run `make image` (make image-test does)")
    (info,) = json.loads(p.stdout)
    return info


@pytest.fixture
def cleanup():
    names: list[tuple[str, str]] = []
    yield names
    for kind, name in names:
        if kind == "container":
            # --volumes: the image's anonymous /data volume goes with the container.
            podman("rm", "--force", "--volumes", "--time", "2", name, check=False)
        else:
            podman("volume", "rm", "--force", name, check=False)


# --- the image itself ---------------------------------------------------------------------------------


def test_the_image_is_small_static_and_unprivileged(image, tmp_path):
    assert image["Size"] <= MAX_IMAGE_BYTES, image["Size"]
    cfg = image["Config"]
    assert cfg["User"] == "10001:10001"
    assert "8080/tcp" in cfg["ExposedPorts"] and "/data" in cfg["Volumes"]
    assert cfg["Entrypoint"] == ["/usr/local/bin/link-receiver"]
    assert image["Architecture"] == "amd64" and image["Os"] == "linux"
    labels = cfg["Labels"]
    version = re.search(r'^version = "(.+)"', (ROOT / "crates/link-registry/Cargo.toml").read_text(), re.M).group(1)
    assert labels["org.opencontainers.image.version"] == version
    # The version-and-commit tag is the same image.
    tagged = f"{IMAGE.rsplit(':', 1)[0]}:{version}-{labels['org.opencontainers.image.revision']}"
    assert json.loads(podman("image", "inspect", tagged).stdout)[0]["Id"] == image["Id"]
    # The health check is the binary itself (podman keeps it in the docker format).
    assert image["Healthcheck"]["Test"] == ["CMD", "/usr/local/bin/link-receiver", "healthcheck"]

    # Nothing in it but the binary (static), the CA bundle of the build host, the user and /data.
    name = f"lr-files-{RUN}"
    podman("create", "--name", name, IMAGE)
    try:
        podman("export", "--output", str(tmp_path / "fs.tar"), name)
    finally:
        podman("rm", "--volumes", name, check=False)
    with tarfile.open(tmp_path / "fs.tar") as tar:
        files = {m.name.lstrip("./"): m for m in tar.getmembers() if m.isfile()}
        assert set(files) == {"etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt",
                              "usr/local/bin/link-receiver"}, sorted(files)
        ca = tar.extractfile(files["etc/ssl/certs/ca-certificates.crt"]).read()
        assert ca == Path("/etc/ssl/certs/ca-certificates.crt").read_bytes()
        binary = tar.extractfile(files["usr/local/bin/link-receiver"]).read()
        assert binary[:4] == b"\x7fELF" and b"/lib/ld-musl" not in binary and b"/lib64/ld-linux" not in binary
        data = next(m for m in tar.getmembers() if m.name.lstrip("./") == "data")
        assert data.isdir() and (data.uid, data.gid) == (10001, 10001)
        passwd = tar.extractfile(files["etc/passwd"]).read().decode()
        assert "link-receiver:x:10001:10001:" in passwd


def test_the_image_refuses_to_serve_without_a_token(image):
    # Its default listen address is every interface, so the API's token is required.
    p = subprocess.run([*PODMAN, "run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                        "--env", "LINK_RECEIVER_AUTH_MODE=hmac-only", "--env", f"PROVIDER_SIGNING_SECRET={SECRET}",
                        IMAGE], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert "--api-token" in p.stderr and SECRET not in p.stderr


# --- SQLite on a volume -------------------------------------------------------------------------------


def test_sqlite_on_a_volume(image, cleanup):
    container, volume, port = f"lr-sqlite-{RUN}", f"lr-data-{RUN}", free_port()
    cleanup += [("container", container), ("volume", volume)]
    env = {"PROVIDER_SIGNING_SECRET": SECRET, "LINK_REGISTRY_API_TOKEN": TOKEN}
    run = doc_command("image-sqlite", container=container, port=port, volume=volume)
    sh(run, env)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, container)
    event = deliver(base)
    read_back(base, event)
    # The API needs the token (the request comes through the port mapping, not loopback).
    assert http("GET", f"{base}/api/links")[0] == 401
    assert sh(doc_command("image-health", container=container)).stdout.strip() == "healthy"
    logs = podman("logs", container).stderr
    assert TOKEN not in logs and SECRET not in logs
    assert json.loads(logs.strip().splitlines()[-1])["level"] in ("INFO", "WARN")  # JSON log lines

    # A new container on the same volume has the registry (the database is on the volume).
    podman("rm", "--force", "--volumes", "--time", "5", container)
    sh(run, env)
    wait_healthy(base, container)
    stored = read_back(base, event)
    assert stored["lastEventId"] == event["data"]["eventId"]


# --- PostgreSQL on the host, TLS and a password only -------------------------------------------------


@pytest.fixture
def postgres(tls_postgres):
    """conftest's cluster taking TCP only over TLS and with a password, with the registry's role and database."""
    assert "'" not in DB_PASSWORD
    tls_postgres.psql(f"CREATE ROLE linkregistry LOGIN PASSWORD '{DB_PASSWORD}'")
    tls_postgres.psql("CREATE DATABASE linkregistry OWNER linkregistry")
    return tls_postgres


def test_postgres_with_tls_and_a_password(image, postgres, cleanup):
    url = f"postgres://linkregistry@127.0.0.1:{postgres.port}/linkregistry?sslmode=require"
    env = {"LINK_REGISTRY_DATABASE": url, "LINK_REGISTRY_DATABASE_PASSWORD": DB_PASSWORD,
           "PROVIDER_SIGNING_SECRET": SECRET, "LINK_REGISTRY_API_TOKEN": TOKEN}
    migrate = doc_command("image-postgres-migrate")

    # The server takes nothing but TLS: without it the migration is refused, so what follows used TLS.
    refused = sh(migrate, {**env, "LINK_REGISTRY_DATABASE": url.replace("require", "disable")}, check=False)
    assert refused.returncode == 1, refused.stderr
    assert "could not open the database" in refused.stderr and DB_PASSWORD not in refused.stderr
    # ...and the password is checked (a wrong one is refused).
    wrong = sh(migrate, {**env, "LINK_REGISTRY_DATABASE_PASSWORD": "not-the-password"}, check=False)
    assert wrong.returncode == 1, wrong.stderr

    first = sh(migrate, env)
    assert "applied migrations [" in first.stderr, first.stderr
    second = sh(migrate, env)
    assert "schema is current" in second.stderr, second.stderr
    assert DB_PASSWORD not in first.stderr + second.stderr

    container, port = f"lr-pg-{RUN}", free_port()
    cleanup.append(("container", container))
    sh(doc_command("image-postgres-serve", container=container, port=port), env)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, container)
    event = deliver(base)
    read_back(base, event)
    assert sh(doc_command("image-health", container=container)).stdout.strip() == "healthy"
    # Stored once in PostgreSQL (the delivery was posted twice).
    assert postgres.psql(f"SELECT count(*) FROM events WHERE webhook_id = '{event['data']['eventId']}'",
                         db="linkregistry") == "1"
    assert postgres.psql("SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) "
                         "WHERE usename = 'linkregistry' AND NOT ssl", db="linkregistry") == "0"
    logs = podman("logs", container)
    assert DB_PASSWORD not in logs.stdout + logs.stderr and TOKEN not in logs.stdout + logs.stderr


# --- the provider stack's task definition, on this image ------------------------------------------------


@pytest.mark.parametrize("scenario", ["default", "everything"])
def test_the_stacks_containers_start_the_image(image, scenario, cleanup):
    """deploy/provider.yaml's two containers, with their environment and command as the stack renders them,
    secrets given as ECS would, and only the database changed (SQLite in the image's /data instead of RDS):
    the migration exits 0 and the receiver starts, answers its health check and, behind its settings
    (https public URL, trusted proxy, audience, quick-create parameters), stores a delivery."""
    template = json.loads(json.dumps(cfn_yaml.load(str(ROOT / "deploy" / "provider.yaml"))))
    params = SCENARIOS[scenario]
    task = Renderer(template, params).resources()["TaskDefinition"]["Properties"]
    containers = {c["Name"]: c for c in task["ContainerDefinitions"]}
    secret_values = {"LINK_REGISTRY_API_TOKEN": TOKEN, "PROVIDER_SIGNING_SECRET": SECRET}
    volume = f"lr-stack-{scenario}-{RUN}"
    cleanup.append(("volume", volume))

    def args(container: dict, name: str, port: int = 0) -> list[str]:
        env = {e["Name"]: e["Value"] for e in container.get("Environment", [])}
        env["LINK_REGISTRY_DATABASE"] = "sqlite:///data/link-registry.db"
        for s in container.get("Secrets", []):
            if s["Name"] in secret_values:
                env[s["Name"]] = secret_values[s["Name"]]
        out = ["run", "--name", name, "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
               "--volume", f"{volume}:/data"]
        if port:
            out += ["--detach", "--publish", f"127.0.0.1:{port}:8080"]
        for k, v in env.items():
            out += ["--env", f"{k}={v}"]
        return [*out, IMAGE, *container.get("Command", [])]

    migrate = f"lr-stack-migrate-{scenario}-{RUN}"
    cleanup.append(("container", migrate))
    p = podman(*args(containers["migrate"], migrate), check=False)
    assert p.returncode == 0, p.stderr
    assert "applied migrations [" in p.stderr, p.stderr

    receiver, port = f"lr-stack-{scenario}-{RUN}", free_port()
    cleanup.append(("container", receiver))
    podman(*args(containers["link-receiver"], receiver, port))
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, receiver)
    health = containers["link-receiver"]["HealthCheck"]["Command"]
    assert health[0] == "CMD"
    assert podman("exec", receiver, *health[1:], check=False).returncode == 0
    if params.get("AuthMode") == "hmac-only":
        read_back(base, deliver(base))
    else:
        # The default mode also needs a proof of the account, which only AWS STS can check: a delivery with a
        # valid signature and no proof is refused, naming what is missing.
        event = json.loads((ROOT / "docs" / "examples" / "account.linked.json").read_text())
        now = datetime.datetime.now(datetime.timezone.utc)
        body = json.dumps(event)
        msg_id = event["data"]["eventId"]
        status, answer = http("POST", f"{base}/hooks/account-link", body.encode(), {
            "content-type": "application/json", "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(SECRET).sign(msg_id, now, body),
        })
        assert status == 401 and b"proof" in answer.lower(), (status, answer)
    logs = podman("logs", receiver)
    assert TOKEN not in logs.stdout + logs.stderr and SECRET not in logs.stdout + logs.stderr
