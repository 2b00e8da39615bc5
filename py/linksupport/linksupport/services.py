"""The programs tests, benchmarks and the demo run beside the function: moto, link-receiver, PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .procs import LINK_RECEIVER, MOTO, NotReady, Process, free_port, start, stop

# The virtualenv's bin folder: moto_server and the other tools come with the Python running this.
VENV_BIN = Path(sys.executable).parent


def moto(log: Path, **kw) -> Process:
    """moto's server (every service) on a loopback port of its choosing; `.url` is its endpoint."""
    return start([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", "0"], name="moto", log=log,
                 ready=MOTO, **kw)


def link_receiver(binary: Path, args: list[str], log: Path, listen: str = "127.0.0.1:0", **kw) -> Process:
    """link-receiver started with `args`, listening on `listen`: by default a loopback port of its choosing,
    read back from its "listening on" line; `.url` is its origin. A receiver whose console or proofs must
    name its own URL (its public URL and audience default to the listen address) is given a port instead."""
    if not binary.exists():
        raise FileNotFoundError(f"{binary} is missing: build it first (`cargo test --workspace --no-run`)")
    return start([str(binary), "--listen", listen, *args], name="link-receiver", log=log, ready=LINK_RECEIVER,
                 **kw)


def pg_bin(name: str) -> str:
    """A PostgreSQL server program (Debian installs them outside PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        raise FileNotFoundError(f"PostgreSQL's {name} is missing: `make system-deps` installs Debian's postgresql")
    return str(found[-1])


def as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, `cmd` runs as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class Postgres:
    """A PostgreSQL cluster of its own in `dir` (as crates/link-registry/tests/support starts one), fsync and
    synchronous commit on, listening on loopback; `close` stops it and removes it. `settings` are extra `-c`
    settings. By default it trusts every connection; `tls_password_only`: TCP connections only over TLS (a
    self-signed certificate) and with a SCRAM password, like RDS with rds.force_ssl (its own tools connect
    through its Unix socket)."""

    def __init__(self, dir: Path, settings: dict[str, str] | None = None, tls_password_only: bool = False,
                 timeout: float = 60.0):
        self.dir = dir
        self.dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "postgres:postgres", str(self.dir)], check=True)
        data = self.dir / "data"
        auth = ["--auth-local=trust", "--auth-host=scram-sha-256"] if tls_password_only else ["--auth=trust"]
        subprocess.run(
            as_postgres([pg_bin("initdb"), "-D", str(data), "-U", "postgres", *auth, "--no-sync", "-E", "UTF8"]),
            check=True, capture_output=True,
        )
        settings = {"listen_addresses": "127.0.0.1", "unix_socket_directories": str(self.dir), **(settings or {})}
        if tls_password_only:
            subprocess.run(as_postgres(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                                        "-subj", "/CN=127.0.0.1", "-keyout", str(data / "server.key"),
                                        "-out", str(data / "server.crt")]), check=True, capture_output=True)
            (data / "pg_hba.conf").write_text("local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n")
            settings.update(ssl="on", ssl_cert_file="server.crt", ssl_key_file="server.key")
        # The host its tools use: loopback, or the Unix socket where TCP needs a password.
        self.host = str(self.dir) if tls_password_only else "127.0.0.1"
        # PostgreSQL names its socket after its port, so it must be given one.
        self.port = free_port()
        self.proc = subprocess.Popen(
            as_postgres([pg_bin("postgres"), "-D", str(data), "-p", str(self.port),
                         *[a for k, v in settings.items() for a in ("-c", f"{k}={v}")]]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        end = time.monotonic() + timeout
        while subprocess.run([pg_bin("pg_isready"), "-h", self.host, "-p", str(self.port)],
                             capture_output=True).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > end:
                self.close()
                raise NotReady("postgres did not start")
            time.sleep(0.1)
        self.version = subprocess.run([pg_bin("postgres"), "--version"], capture_output=True,
                                      text=True).stdout.strip()

    def psql(self, sql: str, db: str = "postgres") -> str:
        out = subprocess.run(
            [pg_bin("psql"), "-h", self.host, "-p", str(self.port), "-U", "postgres", "-At", "-d", db,
             "-c", sql],
            capture_output=True, text=True, check=True,
        )
        return out.stdout.strip()

    def database(self, name: str) -> str:
        """Creates database `name`; returns its URL."""
        self.psql(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)
