#!/usr/bin/env python3
"""The registry benchmark (issue #10): verified and durably stored events per second, and latency at a fixed
offered rate, for link-receiver (Rust) and a Python peer doing the same job (bench/registry/py_registry.py),
on SQLite and PostgreSQL, with the same pre-signed events sent by a separate load process
(bench/registry/loadgen). Writes the "## The registry" section of BENCHMARKS.md.

    bench/registry/run.py            # full run (~15 minutes after the build): writes the run's results to
                                     # bench/registry/results/last-full-run.json, then renders the section from it
    bench/registry/run.py --quick    # smoke run: small counts, short latency runs; does not write BENCHMARKS.md
    bench/registry/run.py --from-results bench/registry/results/last-full-run.json --out BENCHMARKS.md
                                     # re-renders the section from a run's results, measuring nothing

Every figure in the section comes from a results file (the section names it and its SHA-256): the section is
only ever rendered from one, so the published figures can always be re-rendered and checked
(tests/bench/test_registry_report.py). Without a results file there are no figures.

What each figure means is in the section's Method.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from linksupport import procs
from linksupport.services import Postgres

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# The virtualenv running this (make bench runs .venv's python).
VENV_BIN = Path(sys.executable).parent
RECEIVER = ROOT / "target" / "release" / "link-receiver"
LOADGEN = ROOT / "target" / "release" / "registry-loadgen"
EXAMPLES = ROOT / "docs" / "examples"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HOOK = "/hooks/account-link"
LINKS = 1000
MARKER = "## The registry"
# The results of the run BENCHMARKS.md publishes (committed with it).
RESULTS = HERE / "results" / "last-full-run.json"
# The packages whose versions the section names (recorded in the results at run time).
PACKAGES = ("standardwebhooks", "psycopg", "uvicorn", "gunicorn")

# The Python setups tried; the faster on SQLite is the peer in the latency runs and the ratios. Both are
# sized for 2 cores: a few processes (the GIL allows one running thread per process), each waiting on
# disk and database concurrently.
PY_SETUPS = {
    "uvicorn": {
        "label": "uvicorn 3 workers (uvloop, httptools), ASGI; SQLite on 8 threads per worker, psycopg async pool of 8",
        # Port 0 and log level info (no access log): the line saying where it listens, nothing per request.
        "cmd": [
            str(VENV_BIN / "uvicorn"), "--workers", "3", "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--log-level", "info", "--host", "127.0.0.1", "--port", "0",
            "py_registry:asgi_app",
        ],
        "ready": procs.UVICORN,
        "env": {"REGISTRY_POOL": "8"},
    },
    "gunicorn": {
        "label": "gunicorn 3 workers × 8 threads (gthread), WSGI; psycopg pool of 8 per worker",
        "cmd": [
            str(VENV_BIN / "gunicorn"), "-k", "gthread", "--workers", "3", "--threads", "8",
            "--keep-alive", "30", "--log-level", "info", "--bind", "127.0.0.1:0",
            "py_registry:wsgi_app",
        ],
        "ready": procs.GUNICORN,
        "env": {"REGISTRY_POOL": "8"},
    },
}

_children = procs.Children()


def say(msg: str = "") -> None:
    print(msg, file=sys.stderr, flush=True)


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and all its live descendants (/proc, 10 ms ticks)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        p = int(entry)
        children.setdefault(int(fields[1]), []).append(p)
        stats[p] = (int(fields[11]), int(fields[12]))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        u, s = stats.get(p, (0, 0))
        total += u + s
        todo.extend(children.get(p, []))
    return total / tick


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat (iowait counts as idle)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return (total - idle) / tick, total / tick


def wait_quiet(limit_s: float, busy_share: float = 0.2) -> float:
    """Waits (up to limit_s) until other work on the machine (other developers' builds) uses less than
    busy_share of it over 2 s; returns the seconds waited."""
    t0 = time.monotonic()
    while True:
        b0, a0 = machine_cpu()
        time.sleep(2)
        b1, a1 = machine_cpu()
        if (b1 - b0) / max(a1 - a0, 1e-9) < busy_share or time.monotonic() - t0 > limit_s:
            return time.monotonic() - t0


def stop_all(*_) -> None:
    _children.stop_all()


# ---- targets ----


class Target:
    """One receiver on one fresh database, on a port of its choosing."""

    def __init__(self, impl: str, engine: str, database: str, work: Path, n: int):
        self.impl, self.engine, self.database = impl, engine, database
        log = work / f"{impl}-{engine}-{n}.log"
        if impl.startswith("rust"):
            # The receiver's defaults (log level INFO: one line per delivery) except the auth mode: proofs
            # need AWS STS, which this benchmark leaves out for both. "rust-warn": at log level WARN.
            cmd = [str(RECEIVER), "--listen", "127.0.0.1:0", "--database", database,
                   "--auth-mode", "hmac-only", "--secret", SECRET]
            env = dict(os.environ, RUST_LOG="warn" if impl == "rust-warn" else "info")
            cwd, ready = ROOT, procs.LINK_RECEIVER
        else:
            subprocess.run([str(VENV_BIN / "python"), str(HERE / "py_registry.py"), "migrate", database], check=True)
            setup = PY_SETUPS[impl.removeprefix("python-")]
            cmd, ready = setup["cmd"], setup["ready"]
            env = dict(os.environ, REGISTRY_DATABASE=database, REGISTRY_SECRET=SECRET, **setup["env"])
            cwd = HERE
        self.proc = _children.start(cmd, name=impl, log=log, ready=ready, env=env, cwd=cwd)
        if not impl.startswith("rust"):
            time.sleep(2)  # every worker process up, not only the first

    @property
    def url(self) -> str:
        return f"{self.proc.url}{HOOK}"

    def cpu(self) -> float:
        return tree_cpu(self.proc.pid)

    def close(self) -> None:
        self.proc.stop()


def stored_ids(engine: str, database: str) -> list[str]:
    if engine == "sqlite":
        c = sqlite3.connect(database.removeprefix("sqlite://"))
        try:
            return [r[0] for r in c.execute("SELECT webhook_id FROM events")]
        finally:
            c.close()
    import psycopg

    with psycopg.connect(database) as c:
        return [r[0] for r in c.execute("SELECT webhook_id FROM events")]


def verify(engine: str, database: str, acked_file: Path) -> dict:
    """Every acknowledged delivery is in the events table, exactly once (and nothing else is)."""
    acked = acked_file.read_text().split()
    rows = stored_ids(engine, database)
    stored = set(rows)
    missing = [i for i in acked if i not in stored]
    return {
        "acked": len(acked),
        "rows": len(rows),
        "distinct_rows": len(stored),
        "missing": len(missing),
        "unacknowledged_rows": len(stored - set(acked)),
        "ok": not missing and len(rows) == len(stored) and len(set(acked)) == len(acked),
    }


def loadgen(args: list[str]) -> tuple[dict, float]:
    """Runs the load process; its report and its own CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([str(LOADGEN), *args], capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen {args[0]} failed: {out.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(out.stdout.strip().splitlines()[-1]), cpu


def generate(work: Path, count: int) -> tuple[Path, dict]:
    """Signs the events right before a run (receivers accept 5 minutes of clock skew)."""
    path = work / "events.jsonl"
    info, _ = loadgen(["gen", "--examples", str(EXAMPLES), "--out", str(path), "--count", str(count),
                       "--links", str(LINKS), "--secret", SECRET])
    return path, info


class Bench:
    def __init__(self, work: Path, pg: Postgres | None, quiet_s: float):
        self.work, self.pg, self.n_db, self.quiet_s = work, pg, 0, quiet_s

    def fresh_database(self, engine: str, impl: str) -> str:
        self.n_db += 1
        name = f"{impl.replace('-', '_')}_{self.n_db}"
        if engine == "sqlite":
            d = self.work / f"sqlite-{name}"
            d.mkdir()
            return f"sqlite://{d / 'registry.db'}"
        return self.pg.database(name)

    def run(self, impl: str, engine: str, mode: str, count: int, warmup: int, **kw) -> dict:
        database = self.fresh_database(engine, impl)
        events, info = generate(self.work, count)
        acked = self.work / "acked.txt"
        waited = wait_quiet(self.quiet_s)
        target = Target(impl, engine, database, self.work, self.n_db)
        try:
            cpu0 = target.cpu()
            pg0 = tree_cpu(self.pg.proc.pid) if engine == "postgres" else 0.0
            busy0, all0 = machine_cpu()
            args = [mode, "--events", str(events), "--url", target.url, "--warmup", str(warmup), "--acked", str(acked)]
            if mode == "closed":
                args += ["--connections", str(kw["connections"])]
            else:
                # At most 256 connections, under link-receiver's default cap of 512: past its cap, each new
                # connection waits for an idle one to be closed, which would measure that policy instead of the
                # store. Requests beyond 256 in flight wait in the load process,
                # and their wait counts (latency runs from the due time).
                args += ["--rate", str(kw["rate"]), "--connections", "16", "--max-connections", "256"]
            report, lg_cpu = loadgen(args)
            busy1, all1 = machine_cpu()
            cpu = target.cpu() - cpu0
            pg_cpu = (tree_cpu(self.pg.proc.pid) - pg0) if engine == "postgres" else None
        finally:
            target.close()
        report["verify"] = verify(engine, database, acked)
        total_sent = report["sent"] + report["warmup"]["sent"]
        report["cpu_s"] = cpu
        report["pg_cpu_s"] = pg_cpu
        report["loadgen_cpu_s"] = lg_cpu
        # CPU the rest of the machine used meanwhile (other developers' builds share these cores), as a share
        # of the machine's capacity over the run.
        foreign = max(0.0, (busy1 - busy0) - cpu - (pg_cpu or 0.0) - lg_cpu)
        report["foreign_cpu_share"] = foreign / max(all1 - all0, 1e-9)
        report["waited_for_quiet_s"] = waited
        report["events"] = total_sent
        report["digest"] = info["digest"]
        report["body_bytes_mean"] = info["body_bytes_mean"]
        if engine == "sqlite":
            shutil.rmtree(Path(database.removeprefix("sqlite://")).parent, ignore_errors=True)
        else:
            self.pg.psql(f"DROP DATABASE {database.rsplit('/', 1)[1]}")
        lat = report["latency_ms"]
        say(f"  {impl:16} {engine:8} {mode:6} sent {total_sent:6}  stored/s {report.get('stored_per_s', 0):8.0f}  "
            f"p50 {lat['p50']} p99 {lat['p99']} p99.9 {lat['p99_9']} ms  outcomes {report['outcomes']}  "
            f"cpu {cpu:.1f}s{'' if pg_cpu is None else f' + pg {pg_cpu:.1f}s'}  loadgen {lg_cpu:.1f}s  "
            f"other load {report['foreign_cpu_share']:.0%}  verified {report['verify']}")
        return report


# ---- report ----


def machine(pg: Postgres | None) -> dict:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
    mem_kib = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1])
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    fs = subprocess.run(["df", "-T", tempfile.gettempdir()], capture_output=True, text=True).stdout.splitlines()[-1].split()[1]
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(), "python": platform.python_version(), "rustc": rustc,
        "sqlite": sqlite3.sqlite_version, "postgres": pg.version if pg else "n/a", "fs": fs,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load": "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
    }


def bundled_sqlite() -> str:
    """The SQLite version libsqlite3-sys bundles into link-receiver (from the crate's sources in Cargo's cache)."""
    lock = (ROOT / "Cargo.lock").read_text()
    i = lock.find('name = "libsqlite3-sys"')
    if i < 0:
        return "?"
    version = lock[i:].split('version = "', 1)[1].split('"', 1)[0]
    home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    for header in home.glob(f"registry/src/*/libsqlite3-sys-{version}/sqlite3/sqlite3.h"):
        for line in header.read_text(errors="replace").splitlines():
            if line.startswith("#define SQLITE_VERSION "):
                return "SQLite " + line.split('"')[1]
    return f"libsqlite3-sys {version}"


def fsync_ms(directory: Path, n: int = 200) -> float:
    """The disk's cost of one durable write (4 KiB + fsync), the floor of a commit."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        t = time.perf_counter()
        for _ in range(n):
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
        return (time.perf_counter() - t) / n * 1000
    finally:
        os.close(fd)
        path.unlink()


def f0(x) -> str:
    return "n/a" if x is None else f"{x:,.0f}"


def fms(x) -> str:
    if x is None:
        return "n/a"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:,.0f}"


def ratio(a, b) -> str:
    return f"{a / b:.1f}×" if a and b else "n/a"


def package_version(name: str) -> str:
    out = subprocess.run([str(VENV_BIN / "python"), "-c",
                          f"import importlib.metadata as m; print(m.version({name!r}))"], capture_output=True, text=True)
    return out.stdout.strip() or "?"


def sustained(r: dict) -> bool:
    """The target kept up with the offered rate: everything stored, and the last answer came within 1 s of
    the timetable's end."""
    return r["stored"] == r["sent"] and r["elapsed_s"] <= r["schedule_s"] + 1.0


def cpu_per_1000(r: dict, with_pg: bool = False) -> float:
    total = r["cpu_s"] + ((r["pg_cpu_s"] or 0.0) if with_pg else 0.0)
    return total / r["events"] * 1000


class NoResults(Exception):
    """There is no results file to render figures from."""


def shown_path(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def render(path: Path) -> str:
    """The section, from the results file at `path` and nothing else (no figure comes from anywhere but the
    file; the section names the file and its SHA-256)."""
    if not path.is_file():
        raise NoResults(
            f"{path}: no such results file. The registry's figures are rendered only from a run's results "
            f"(a full run writes {shown_path(RESULTS)}); run `make bench-registry` to measure.")
    raw = path.read_bytes()
    return report(json.loads(raw), shown_path(path), hashlib.sha256(raw).hexdigest())


def withdrawn_section() -> str:
    """What the section says while there is no results file: no figures."""
    return (
        f"{MARKER}\n\n"
        f"No figures: the registry benchmark's results file ({shown_path(RESULTS)}) is missing, and figures are "
        f"rendered only from one. The raw results of the last published run were not kept, so its figures were "
        f"withdrawn rather than kept unverifiable. `make bench` (or `make bench-registry`) measures again, writes "
        f"that file and renders this section from it.\n"
    )


def report(res: dict, source: str, digest: str) -> str:
    info = res["machine"]
    versions = res.get("versions", {})

    def version(name: str) -> str:
        return versions.get(name, "(version not recorded)")
    py = res["python_choice"]
    engines = res["engines"]
    cols = [(e, i) for e in engines for i in ("rust", py[e])]

    def name(i: str) -> str:
        return "Rust" if i == "rust" else f"Python ({i.removeprefix('python-')})"
    ename = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
    tp, lat = res["throughput"], res["latency"]
    L = [MARKER, ""]
    L.append(
        f"Generated by `make bench` (`bench/registry/run.py`) on {info['date']}; method below. "
        f"link-receiver (`target/release/link-receiver`, release profile of the workspace) against "
        f"`bench/registry/py_registry.py` (standardwebhooks {version('standardwebhooks')}, "
        f"psycopg {version('psycopg')}, uvicorn {version('uvicorn')}, gunicorn {version('gunicorn')}), "
        f"driven by `bench/registry/loadgen` (a separate process). Rendered from the run's results, "
        f"`{source}` (SHA-256 `{digest[:16]}…`), by `bench/registry/run.py --from-results {source}`."
    )
    L.append("")
    L.append(
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory']} RAM, Linux {info['kernel']}, {info['fs']} "
        f"(one 4 KiB write + fsync: {res['fsync_ms']:.2f} ms); {info['rustc']}; Python {info['python']}; "
        f"SQLite {info['sqlite']} (Python's; link-receiver's sqlx bundles {res['rust_sqlite']}); {info['postgres']}; load average at start {res['load_start']}, at end {info['load']}."
    )
    L.append("")
    L.append("| | " + " | ".join(f"{name(i)}, {ename[e]}" for e, i in cols) + " |")
    L.append("|---|" + "---:|" * len(cols))
    L.append(f"| Stored events/s, max (closed loop, {res['connections']} connections; median of {res['rounds']}) | "
             + " | ".join(f"**{f0(tp[e][i]['stored_per_s'])}**" for e, i in cols) + " |")
    if res["rounds"] > 1:
        L.append("| … lowest – highest of the rounds | " + " | ".join(
            f"{f0(tp[e][i]['range'][0])} – {f0(tp[e][i]['range'][1])}" for e, i in cols) + " |")
    L.append("| … Rust / Python | " + " | ".join(
        (ratio(tp[e]["rust"]["stored_per_s"], tp[e][py[e]]["stored_per_s"]) if i == "rust" else "") for e, i in cols) + " |")
    L.append("| Closed-loop latency p50 / p99 (ms) | " + " | ".join(
        f"{fms(tp[e][i]['latency_ms']['p50'])} / {fms(tp[e][i]['latency_ms']['p99'])}" for e, i in cols) + " |")
    L.append("| Receiver CPU s per 1000 events (closed loop) | " + " | ".join(
        f"{cpu_per_1000(tp[e][i]):.2f}" for e, i in cols) + " |")
    if "postgres" in engines:
        L.append("| … plus PostgreSQL's own CPU | " + " | ".join(
            (f"{cpu_per_1000(tp[e][i], True):.2f}" if e == "postgres" else "") for e, i in cols) + " |")
    for rate in res["rates"]:
        rows = lat[str(rate)]
        L.append(f"| **At {rate:,}/s offered** (open loop, {res['latency_seconds']} s): p50 / p99 / p99.9 (ms) | " + " | ".join(
            (f"{fms(rows[e][i]['latency_ms']['p50'])} / {fms(rows[e][i]['latency_ms']['p99'])} / "
             f"{fms(rows[e][i]['latency_ms']['p99_9'])}" + ("" if sustained(rows[e][i]) else " (not sustained)"))
            if i in rows.get(e, {}) else "not run" for e, i in cols) + " |")
        L.append(f"| … receiver CPU s per 1000 events at {rate:,}/s | " + " | ".join(
            (f"{cpu_per_1000(rows[e][i]):.2f}" + (f" (+ PostgreSQL {(rows[e][i]['pg_cpu_s'] or 0) / rows[e][i]['events'] * 1000:.2f})" if e == "postgres" else ""))
            if i in rows.get(e, {}) else "" for e, i in cols) + " |")
    L.append("| Acknowledged events stored exactly once (all runs) | " + " | ".join(
        ("yes" if all(r["verify"]["ok"] for r in res["all"] if r["impl"] == i and r["engine"] == e) else "**NO**")
        for e, i in cols) + " |")
    L.append("")
    # Issue #20's targets, each from the figures above.
    targets = []
    for e, want in (("sqlite", 10), ("postgres", 6)):
        if e in engines:
            r = tp[e]["rust"]["stored_per_s"] / tp[e][py[e]]["stored_per_s"]
            targets.append((f"Rust ≥ {want}× the Python peer's throughput on {ename[e]}", r >= want, f"{r:.1f}×"))
    low = str(res["rates"][0]) if res.get("rates") else None
    first = "sqlite" if "sqlite" in engines else engines[0]
    rows = lat.get(low, {}).get(first, {}) if low else {}
    if "rust" in rows and py[first] in rows:
        rust_cpu, py_cpu = cpu_per_1000(rows["rust"]), cpu_per_1000(rows[py[first]])
        targets.append((f"receiver CPU per event at {int(low):,}/s ({ename[first]}) ≤ 1/3 of the Python peer's",
                        rust_cpu * 3 <= py_cpu, f"{rust_cpu:.2f} against {py_cpu:.2f} CPU ms per event: {py_cpu / rust_cpu:.1f}× less, 3× wanted"))
    for what, met, figure in targets:
        L.append(f"Target, {what}: **{'met' if met else 'not met'}** ({figure}).  ")
    if targets:
        L[-1] = L[-1].rstrip()
        if not all(met for _, met, _ in targets):
            L.append("Where link-receiver's time goes, what was applied and measured, and the next steps, are in "
                     "[bench/registry/PROFILE.md](bench/registry/PROFILE.md).")
        L.append("")
    if "rust-warn" in tp.get("sqlite", {}):
        w = tp["sqlite"]["rust-warn"]
        L.append(
            f"link-receiver at log level WARN (no line per accepted delivery), SQLite, same closed loop: "
            f"**{f0(w['stored_per_s'])}** events/s (median of {res['rounds']}"
            + (f"; {f0(w['range'][0])} – {f0(w['range'][1])}" if res["rounds"] > 1 else "")
            + f"), {cpu_per_1000(w):.2f} CPU s per 1000 events; "
            f"{ratio(w['stored_per_s'], tp['sqlite'][py['sqlite']]['stored_per_s'])} the Python peer."
        )
        L.append("")
    L.append("Python setups tried (on each engine the faster is the peer above):")
    L.append("")
    L.append("| Setup | " + " | ".join(f"{ename[e]}, events/s" for e in engines) + " |")
    L.append("|---|" + "---:|" * len(engines))
    for key, setup in PY_SETUPS.items():
        impl = f"python-{key}"
        L.append(f"| {setup['label']} | " + " | ".join(f0(tp[e][impl]["stored_per_s"]) if impl in tp[e] else "not run" for e in engines) + " |")
    L.append("")
    all_ok = all(r["verify"]["ok"] for r in res["all"])
    L.append(
        f"Check in the database after each of the {len(res['all'])} runs: every acknowledged event stored exactly once: "
        f"**{'yes' if all_ok else 'NO'}** ({sum(r['verify']['acked'] for r in res['all']):,} acknowledged, "
        f"{sum(r['verify']['missing'] for r in res['all'])} missing, "
        f"{sum(r['verify']['unacknowledged_rows'] for r in res['all'])} stored without acknowledgement)."
    )
    L.append("")
    lg = max(r["loadgen_cpu_s"] / r["events"] * 1000 for r in res["all"])
    foreign = sorted(r["foreign_cpu_share"] for r in res["all"] if not r.get("superseded"))
    L.append(
        f"Other work on the machine during the runs (other developers' builds share its cores; kernel threads, such as writeback of the runs' own files, count here too): median "
        f"{foreign[len(foreign) // 2]:.0%}, at most {foreign[-1]:.0%} of its CPU, in the runs reported; each run "
        f"waited (up to 30 s) for a quiet machine before starting, and {res.get('repeated', 0)} run(s) during which "
        f"other work took more than 25% of the machine were done again."
    )
    L.append("")
    same = {r["digest"] for r in res["all"] if r["mode"] == "closed"}
    L.append(
        f"Same events for every target: bodies and ids are a function of the event index, re-signed right before each "
        f"run; all {sum(r['mode'] == 'closed' for r in res['all'])} closed-loop runs sent byte-identical bodies "
        f"(sha256 of ids and bodies: {', '.join(f'`{d[:16]}…`' for d in sorted(same))}), and the fixed-rate runs at one "
        f"rate likewise. The load process used at most {lg:.3f} CPU s per 1000 events."
    )
    L.append("")
    second_rate_note = " and, on SQLite only, 50% of link-receiver's" if len(res["rates"]) > 1 else ""
    L.append("### Method")
    L.append("")
    L.append(f"""- **Events**: `registry-loadgen gen` makes each event from docs/examples (account.linked for a link's first
  event, account.updated after), {res.get('links', LINKS):,} links (data.physicalResourceId, each with its own account), a unique
  data.eventId (= webhook-id) per event and timestamps 1 ms apart, so every event is stored and applied to its link
  (newer timestamp wins); {res['body_bytes']:,} bytes of JSON on average. They are signed once per run with
  link-contract's signer, just before the run: both receivers accept 5 minutes of skew (the Python
  `standardwebhooks` package has that window built in), and every run is shorter.
- **Load process**: `bench/registry/loadgen` (Rust, one thread), separate from both servers, renders every request
  before the clock starts and speaks HTTP/1.1 on keep-alive connections, spread over 64 loopback source addresses
  as deliveries come from many customers' functions (link-receiver holds one client to 32 connections). Only
  2xx answers whose message says "stored" count. It is a workspace of its own so that building it does not
  build link-registry's dev-dependencies (the function and the AWS SDK) in release.
- **Max throughput**: closed loop, {res['connections']} connections, each sending the next event when its answer
  arrives; {res['closed_events']:,} events, of which the first {res['closed_warmup']:,} warm up and are not counted;
  events/s = stored answers / time from the first to the last measured request.
- **Latency at a fixed rate**: open loop; request *i* is due at t0 + i/rate, dispatched by a thread that sleeps
  to each due time and sent on an idle connection (a new one if none is idle), and its latency runs from the due
  time to the end of the answer, so a stalled receiver is charged for every request queued behind the stall (no
  coordinated omission). {res['latency_seconds']} s per run, the first {res['latency_warmup_s']} s not counted. The rate is
  50% of the Python peer's SQLite maximum{second_rate_note}; "not sustained" means some
  request was not stored or the answers ended more than 1 s after the timetable.
- **Durability, both**: a 2xx only after the delivery's transaction committed. SQLite in WAL with
  synchronous=FULL (an fsync per commit); PostgreSQL with fsync and synchronous_commit on (defaults), a cluster of
  its own in a temporary directory (initdb as the `postgres` user, as the registry's tests start it), shared by all
  PostgreSQL runs, each on a new database. Every run starts on a new, empty database.
- **Same job, both**: verify the Standard Webhooks signature (Python: the `standardwebhooks` package), parse the
  event, check schema version, webhook-id = data.eventId, timestamp and link id, then in one transaction: INSERT
  into `events` keyed on webhook-id (ON CONFLICT DO NOTHING; a second delivery answers "duplicate" and writes
  nothing), upsert of the link row where the event is newer, upsert of the newest complete inventory; same schema
  (crates/link-registry/migrations). link-receiver batches the deliveries waiting into one transaction (group
  commit, one writer task); the Python peer commits each delivery in its own transaction, as a WSGI/ASGI
  application does (SQLite: `BEGIN IMMEDIATE`, busy_timeout 10 s, because several worker processes write).
- **The Python peer** (`bench/registry/py_registry.py`) is what a competent Python team would ship, built so that
  it does not lose on anything other than the work itself. It runs on standard production servers: uvicorn
  with uvloop and httptools (the fastest mainstream ASGI stack) or gunicorn with gthread workers (the classic
  WSGI deployment). Both are sized for 2 cores: 3 processes, because the GIL runs one thread per process, plus
  threads or a pool of 8 to overlap disk and database waits. In trials, uvicorn with 2 workers managed 1 000/s
  on SQLite, and gunicorn with 4 × 4 managed 625/s. The app is a bare WSGI/ASGI callable, with no Flask or
  FastAPI in the path, and no access log. Its checks cover the fields it stores, where link-receiver
  deserialises the whole event into typed structs. Each request commits its own transaction, as WSGI/ASGI
  apps with sqlite3 or psycopg do. Group commit across worker processes is not something SQLite offers, and
  it is a design advantage of link-receiver that this benchmark is meant to measure. Both setups are run,
  and on each engine the faster is the peer. The peer does not handle split events; the benchmark sends none.
- **Receivers' settings**: link-receiver as shipped (`--auth-mode hmac-only`: account proofs need AWS STS, left out
  for both; log level INFO, one line per delivery). Python: no access log.
- **Check**: after each run, the webhook-ids the load process saw acknowledged are looked up in the database: each
  must be there, once (the table's rows are distinct); rows that were never acknowledged are counted too (none in
  these runs: every request was answered).
- **CPU**: user + system time from /proc of the receiver's process tree (all of gunicorn's or uvicorn's workers),
  over the load; for PostgreSQL also of the cluster's processes. Divided by the events sent in that run.
""")
    if res.get("profile"):
        L.append(res["profile"])
    return "\n".join(L).rstrip() + "\n"


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else ""
    i = text.find("\n" + MARKER + "\n")
    if i >= 0:
        text = text[:i + 1]
    else:
        text = text.rstrip("\n") + "\n\n"
    path.write_text(text + section)


def build() -> None:
    say("building link-receiver and the load process (release)")
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "link-registry", "--bin", "link-receiver"],
                   cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "--locked", "--manifest-path",
                    str(HERE / "loadgen" / "Cargo.toml")],
                   cwd=ROOT, check=True, env=dict(os.environ, CARGO_TARGET_DIR=str(ROOT / "target")))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run; does not write BENCHMARKS.md")
    ap.add_argument("--no-build", action="store_true", help="use the binaries in target/release as they are")
    ap.add_argument("--engines", default="sqlite,postgres")
    ap.add_argument("--python", default=",".join(PY_SETUPS), help="Python setups to try")
    ap.add_argument("--connections", type=int, default=64, help="closed-loop connections")
    ap.add_argument("--events", type=int, help="events per closed-loop run")
    ap.add_argument("--seconds", type=int, help="length of each fixed-rate run")
    ap.add_argument("--rate", type=int, action="append", help="fixed offered rate(s) instead of the derived ones")
    ap.add_argument("--out", type=Path, help="write the section into this file (default: BENCHMARKS.md, full run)")
    ap.add_argument("--rounds", type=int, help="closed-loop runs per target (the median is reported)")
    ap.add_argument("--from-results", type=Path,
                    help=f"only render the section from a run's results JSON (with --out: into that file); "
                         f"the published run's is {shown_path(RESULTS)}")
    args = ap.parse_args()
    reps = args.rounds or (1 if args.quick else 3)
    if args.from_results:
        # Re-renders the section from a run's results without measuring.
        try:
            section = render(args.from_results)
        except NoResults as e:
            say(f"run.py: {e}")
            return 2
        print(section)
        if args.out:
            write_section(args.out, section)
        return 0
    t_start = time.monotonic()
    closed_events = args.events or (4000 if args.quick else 40000)
    closed_warmup = max(200, closed_events // 20)
    seconds = args.seconds or (8 if args.quick else 60)
    warm_s = 1 if args.quick else 5
    out = args.out or (None if args.quick else ROOT / "BENCHMARKS.md")
    engines = [e for e in args.engines.split(",") if e]
    setups = [f"python-{s}" for s in args.python.split(",") if s]
    if not args.no_build:
        build()
    signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(143)))
    work = Path(tempfile.mkdtemp(prefix="registry-bench-"))
    os.chmod(work, 0o755)
    pg = None
    res: dict = {"engines": engines, "all": [], "throughput": {e: {} for e in engines}, "latency": {},
                 "load_start": "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
                 "fsync_ms": fsync_ms(work), "closed_events": closed_events, "closed_warmup": closed_warmup,
                 "latency_seconds": seconds, "latency_warmup_s": warm_s, "rounds": reps,
                 "rust_sqlite": bundled_sqlite()}
    try:
        if "postgres" in engines:
            # A cluster of its own, as crates/link-registry/tests/support/mod.rs starts one.
            pg = Postgres(work / "pg", settings={"max_connections": "200"})
        bench = Bench(work, pg, 0 if args.quick else 30)

        res["repeated"] = 0

        def run(impl, engine, mode, count, warmup, **kw):
            # A run during which other work took more than a quarter of the machine is done again (twice at
            # most; the last one counts whatever happened).
            for attempt in range(3):
                r = bench.run(impl, engine, mode, count, warmup, **kw)
                r.update(impl=impl, engine=engine)
                res["all"].append(r)
                if r["foreign_cpu_share"] <= 0.25 or attempt == 2 or args.quick:
                    break
                res["repeated"] += 1
                r["superseded"] = True
                say("  (other load above 25%: again)")
            return r

        say(f"max throughput: closed loop, {args.connections} connections, {closed_events} events, {reps} rounds")
        runs: dict = {e: {} for e in engines}
        for _ in range(reps):
            # Rounds, each target once per round, so a burst of other work on the machine hits one round.
            for engine in engines:
                for impl in ["rust", *(["rust-warn"] if engine == "sqlite" else []), *setups]:
                    runs[engine].setdefault(impl, []).append(
                        run(impl, engine, "closed", closed_events, closed_warmup, connections=args.connections))
        for engine in engines:
            for impl, rs in runs[engine].items():
                ordered = sorted(rs, key=lambda r: r["stored_per_s"])
                median = dict(ordered[len(ordered) // 2])
                median["range"] = (ordered[0]["stored_per_s"], ordered[-1]["stored_per_s"])
                res["throughput"][engine][impl] = median
        res["closed_digest"] = res["all"][0]["digest"]
        first_engine = "sqlite" if "sqlite" in engines else engines[0]
        # The peer on each engine is the faster Python setup there.
        py = {e: max(setups, key=lambda s: res["throughput"][e][s]["stored_per_s"]) for e in engines}
        res["python_choice"] = py
        py_max = res["throughput"][first_engine][py[first_engine]]["stored_per_s"]
        rust_max = res["throughput"][first_engine]["rust"]["stored_per_s"]
        rates = args.rate or [max(10, int(py_max * 0.5) // 10 * 10)]
        if not args.rate and rust_max * 0.5 > rates[0] * 1.5:
            # Also 50% of Rust's own SQLite maximum, on SQLite only (the engine of the target).
            rates.append(int(rust_max * 0.5) // 100 * 100)
        res["rates"] = rates
        for n, rate in enumerate(rates):
            say(f"latency: open loop at {rate}/s for {seconds} s")
            res["latency"][str(rate)] = {e: {} for e in engines}
            for engine in (engines if n == 0 else [first_engine]):
                for impl in ["rust", py[engine]]:
                    res["latency"][str(rate)][engine][impl] = run(
                        impl, engine, "open", int(rate * seconds), int(rate * warm_s), rate=rate)
        res["body_bytes"] = res["all"][0]["body_bytes_mean"]
        res["machine"] = machine(pg)
        res["connections"] = args.connections
        res["versions"] = {name: package_version(name) for name in PACKAGES}
        res["links"] = LINKS
        # The results first, then the section rendered from them: the published figures are the file's.
        publishing = out is not None and out.resolve() == (ROOT / "BENCHMARKS.md").resolve()
        results = RESULTS if publishing else ROOT / "target" / "registry-bench-results.json"
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(res, indent=1, default=str) + "\n")
        say(f"wrote {shown_path(results)}")
        section = render(results)
        print(section)
        if out:
            write_section(out, section)
            say(f"wrote {out}")
        say(f"registry benchmark took {time.monotonic() - t_start:.0f} s")
        return 0
    finally:
        stop_all()
        if pg:
            pg.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)
