"""Fixtures the Python tests share: moto, link-receiver and PostgreSQL, each started on a loopback port and
stopped (SIGTERM, then SIGKILL after a grace period) when its tests are done. The helpers are the
`linksupport` package (py/linksupport, installed into .venv by `make venv`)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from linksupport import procs, services

ROOT = Path(__file__).resolve().parents[1]
# What `cargo test --workspace --no-run` builds (make console-test runs it first).
RECEIVER = ROOT / "target" / "debug" / "link-receiver"
FUNCTION = ROOT / "target" / "debug" / "account-link"


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """moto's server (EC2, S3, SNS, SQS, STS...) on a port of its choosing: its endpoint URL."""
    with services.moto(tmp_path_factory.mktemp("moto") / "moto.log", timeout=30) as server:
        yield server.url


@pytest.fixture(scope="module")
def link_receiver(tmp_path_factory):
    """Starts link-receiver (target/debug) with the given flags: `start(args, listen=...)` returns the
    started `Process` (`.url` its origin); every one is stopped after the module's tests."""
    started = procs.Children()

    def start(args: list[str], **kw) -> procs.Process:
        if not RECEIVER.exists():
            pytest.fail(f"{RECEIVER} is missing: run `cargo test --workspace --no-run` (make console-test does)")
        log = tmp_path_factory.mktemp("link-receiver") / "link-receiver.log"
        return started.adopt(services.link_receiver(RECEIVER, args, log, timeout=30, **kw))

    yield start
    started.stop_all()


@pytest.fixture
def tls_postgres():
    """A PostgreSQL cluster of its own that takes TCP connections only over TLS and with a SCRAM password,
    like RDS with rds.force_ssl (`.psql` runs as its superuser through the Unix socket)."""
    # Not under pytest's tmp_path: its folders are private to this user, and the server runs as postgres.
    pg = services.Postgres(Path(tempfile.mkdtemp(prefix="lr-pg-")), tls_password_only=True)
    yield pg
    pg.close()
