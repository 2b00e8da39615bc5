#!/usr/bin/env python3
"""make bench: the Rust function against the same job written in Python (crhelper + boto3), in one run,
on the same local backend, through the same Lambda Runtime API emulator. Writes a markdown table to stdout
and to BENCHMARKS.md.

    bench/run.py                 # full run (20 cold starts each, 200 warm invocations, 100/1 000/10 000 subnets)
    bench/run.py --quick         # smoke run (3 cold, 20 warm, 100 and 1 000 subnets); does not write BENCHMARKS.md
    bench/run.py --only rust     # skip the Python handler
    bench/run.py --bootstrap P   # measure another build of the bootstrap (no build step)
    bench/run.py --candidate P --candidate-env K=V --candidate-note TEXT
                                 # also measure a proposed build, side by side (see bench/PROFILE.md)

Everything listens on loopback only; every process it starts is stopped on exit (Ctrl-C included).
See BENCHMARKS.md for what each figure means.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

from fake_ec2 import Dataset, FakeAws
from linksupport import procs
from linksupport.runtime_api import RuntimeApi
from sinks import Sinks, make_tls_files

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# The virtualenv running this (make bench runs .venv's python).
VENV_BIN = Path(sys.executable).parent
PYTHON = VENV_BIN / "python"
BOOTSTRAP = ROOT / "target" / "lambda" / "account-link" / "bootstrap"
BUILD_CMD = ["nice", "-n", "10", "cargo", "lambda", "build", "--release", "--bin", "account-link"]
TOPIC_ARN = "arn:aws:sns:us-west-2:123456789012:links"
PY_TASK_PACKAGES = ["crhelper", "standardwebhooks"]  # what the Python zip carries besides handler.py
LAMBDA_RUNTIME_PACKAGES = ["boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six"]
STANDARD_SUBNETS = 100
INVOKE_TIMEOUT = 120.0
PROCS: list[subprocess.Popen] = []
RUST_KINDS = ("rust", "candidate")
TITLES = {"rust": "Rust", "candidate": "Rust candidate", "python": "Python"}


def say(msg: str = "") -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def union_length(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    total, end = 0.0, lo
    for a, b in sorted((max(a, lo), min(b, hi)) for a, b in intervals):
        if b <= a:
            continue
        if a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


def read_status(pid: int) -> dict:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
    except FileNotFoundError:
        pass
    return out


def peak_rss_kib(pid: int) -> int:
    """VmHWM of the process and any children it has (none for either runtime, but checked)."""
    total = int(read_status(pid).get("VmHWM", "0 kB").split()[0])
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        children = []
    return total + sum(peak_rss_kib(int(c)) for c in children)


def cpu_seconds(pid: int) -> float:
    """CPU time of the live threads of a process, in ns precision (/proc/PID/stat counts 10 ms ticks)."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return 0.0
    for tid in tids:
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            pass
    return total / 1e9


class LoadMeter:
    """What else the machine did while a phase ran: the load average before and after, and the CPU time of
    every other process (the machine's busy time in /proc/stat less this process's and its reaped
    children's, the functions included)."""

    def __init__(self):
        self.phases: list[dict] = []

    @staticmethod
    def _sample() -> tuple[float, float, float, str]:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(x) for x in fields]
        busy = (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait
        own = sum(getattr(resource.getrusage(w), a) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                  for a in ("ru_utime", "ru_stime"))
        load = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
        return time.monotonic(), busy, own, load

    def phase(self, name: str):
        meter = self

        class Phase:
            def __enter__(self):
                self.start = meter._sample()

            def __exit__(self, *exc):
                end = meter._sample()
                wall = end[0] - self.start[0]
                others = max(0.0, (end[1] - self.start[1]) - (end[2] - self.start[2]))
                meter.phases.append({"name": name, "wall": wall, "others": others,
                                     "load_start": self.start[3], "load_end": end[3]})

        return Phase()

    def summary(self) -> str:
        if not self.phases:
            return ""
        wall = sum(p["wall"] for p in self.phases)
        others = sum(p["others"] for p in self.phases)
        each = "; ".join(f"{p['name']} {p['others'] / p['wall']:.2f} (load {p['load_start']} → {p['load_end']})"
                         for p in self.phases if p["wall"] > 0)
        return (f"Other processes' CPU while it ran: {others:.0f} CPU-s in {wall:.0f} s, "
                f"{others / wall:.2f} of the {os.cpu_count()} cores on average; per phase: {each}.")


# ---------------------------------------------------------------------------------------------------------
# The two functions


class Bench:
    """The shared backend: TLS sinks (answer + webhook), one fake EC2/SNS endpoint per dataset size."""

    def __init__(self, work: Path, bootstrap: Path, log_level: str, rust_env: dict | None = None,
                 candidate: Path | None = None, candidate_env: dict | None = None):
        self.rust_env = rust_env or {}
        self.candidate, self.candidate_env = candidate, candidate_env or {}
        self.work = work
        self.bootstrap = bootstrap
        self.log_level = log_level
        cert, key, self.ca_bundle = make_tls_files(str(work))
        self.sinks = Sinks(cert, key).start()
        self.secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        self.backends: dict[int, FakeAws] = {}
        self.template = json.loads((ROOT / "events" / "create.json").read_text())
        self.task_dir = self._python_task_dir()

    def backend(self, subnets: int) -> FakeAws:
        if subnets not in self.backends:
            ds = Dataset(subnets)
            ds.warm()
            self.backends[subnets] = FakeAws(ds).start()
        return self.backends[subnets]

    def _python_task_dir(self) -> Path:
        """/var/task as Lambda would unpack the Python zip: handler.py and its non-runtime dependencies,
        sources only (no __pycache__: /var/task is read-only, so they are compiled at every cold start)."""
        import importlib.metadata as md

        task = self.work / "python-task"
        task.mkdir()
        shutil.copy(HERE / "python_handler" / "handler.py", task / "handler.py")
        for dist_name in PY_TASK_PACKAGES:
            dist = md.distribution(dist_name)
            for f in dist.files or []:
                if "__pycache__" in f.parts or f.suffix == ".pyc":
                    continue
                src = Path(dist.locate_file(f))
                if not src.is_file() or ".." in f.parts:
                    continue
                dst = task / f
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, dst)
        return task

    def env(self, kind: str, api: RuntimeApi, subnets: int, log_level: str | None = None) -> dict:
        env = {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "AWS_LAMBDA_FUNCTION_NAME": "account-link",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
            "AWS_LAMBDA_LOG_GROUP_NAME": "bench",
            "AWS_LAMBDA_LOG_LEVEL": log_level or self.log_level,
            "AWS_REGION": "us-west-2",
            "AWS_DEFAULT_REGION": "us-west-2",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(self.work / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.work / "no-aws-credentials"),
            "AWS_ENDPOINT_URL": self.backend(subnets).url,
            "PROVIDER_CALLBACK_URL": f"{self.sinks.base}/hook",
            "PROVIDER_SIGNING_SECRET": self.secret,
            "PROVIDER_SNS_TOPIC_ARN": TOPIC_ARN,
            "SSL_CERT_FILE": self.ca_bundle,
        }
        if kind in RUST_KINDS:
            env["ACCOUNT_LINK_ALLOW_LOOPBACK"] = "true"
            env.update(self.rust_env if kind == "rust" else self.candidate_env)
        else:
            env.update({
                "LAMBDA_TASK_ROOT": str(self.task_dir),
                "PYTHONPATH": str(self.task_dir),
                "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONUNBUFFERED": "1",
            })
        return env

    def event(self, key: str) -> dict:
        e = json.loads(json.dumps(self.template))
        e["RequestId"] = str(uuid.uuid4())
        e["ResponseURL"] = self.sinks.response_url(key)
        e["ResourceProperties"]["Regions"] = ["us-west-2"]
        return e

    def close(self) -> None:
        self.sinks.close()
        for b in self.backends.values():
            b.close()


class Function:
    """One function process (Rust bootstrap or Python awslambdaric) under its own Runtime API emulator."""

    def __init__(self, bench: Bench, kind: str, subnets: int, log_name: str, log_level: str | None = None,
                 wrapper: list[str] | None = None, extra_env: dict | None = None):
        self.bench, self.kind, self.subnets = bench, kind, subnets
        self.api = RuntimeApi().start()
        self.backend = bench.backend(subnets)
        env = {**bench.env(kind, self.api, subnets, log_level), **(extra_env or {})}
        if kind in RUST_KINDS:
            cmd, cwd = [str(bench.bootstrap if kind == "rust" else bench.candidate)], str(bench.work)
        else:
            cmd, cwd = [str(PYTHON), "-m", "awslambdaric", "handler.handler"], str(bench.task_dir)
        self.cmd = (wrapper or []) + cmd
        self.log = open(bench.work / log_name, "ab")
        self._env, self._cwd = env, cwd
        self.proc: subprocess.Popen | None = None
        self.spawned_at = 0.0

    def spawn(self) -> None:
        self.spawned_at = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, cwd=self._cwd, env=self._env, stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        PROCS.append(self.proc)

    def invoke(self) -> dict:
        """One Create, measured from the moment it is queued to the moment the answer's body arrived."""
        key = uuid.uuid4().hex
        inv = self.api.invoke(self.bench.event(key))
        t0 = inv.enqueued_at
        try:
            answer = self.bench.sinks.wait_answer(key, INVOKE_TIMEOUT)
        except TimeoutError:
            self._check_alive()
            raise
        result = inv.wait(INVOKE_TIMEOUT)
        if result["kind"] != "response":
            raise RuntimeError(f"{self.kind}: invocation ended with {result['kind']}: {result['body'][:500]!r}")
        t1 = answer.body_read_at
        return self._measure(t0, t1, answer, inv)

    def _measure(self, t0, t1, answer, inv) -> dict:
        reqs = self.backend.between(t0, t1)
        sink_reqs = self.bench.sinks.between(t0, t1)
        backend = backend_time(self.bench, self.backend, answer, t0, t1)
        body = json.loads(answer.body)
        hooks = [r for r in sink_reqs if r.path == "/hook"]
        publishes = [r for r in reqs if r.action == "Publish"]
        return {
            "e2e": t1 - t0,
            "backend": backend,
            "overhead": t1 - t0 - backend,
            "answer": body,
            "answer_bytes": len(answer.body),
            "hook_bytes": sum(r.body_bytes for r in hooks),
            "hooks": len(hooks),
            "sns_parts": len(publishes),
            "sns_max_bytes": max((r.message_bytes for r in publishes), default=0),
            "sns_bytes": sum(r.message_bytes for r in publishes),
            "ec2_requests": sum(1 for r in reqs if r.service == "ec2"),
            "delivered_after": (inv.delivered_at or t0) - t0,
        }

    def _check_alive(self) -> None:
        if self.proc and self.proc.poll() is not None:
            tail = (self.bench.work / Path(self.log.name).name).read_bytes()[-2000:].decode(errors="replace")
            raise RuntimeError(f"{self.kind} process exited with {self.proc.returncode}; log tail:\n{tail}")

    def peak_rss_kib(self) -> int:
        return peak_rss_kib(self.proc.pid) if self.proc else 0

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid) if self.proc else 0.0

    def stop(self) -> float:
        """Kills the process; returns its total CPU time (all threads, from wait4)."""
        cpu = 0.0
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                _, status, usage = os.wait4(self.proc.pid, 0)
                self.proc.returncode = -signal.SIGKILL
                cpu = usage.ru_utime + usage.ru_stime
            except ChildProcessError:
                self.proc.wait(timeout=10)
        if self.proc in PROCS:
            PROCS.remove(self.proc)
        self.api.close()
        self.log.close()
        return cpu


def backend_time(bench: Bench, backend: FakeAws, answer, t0: float, t1: float) -> float:
    """The time in [t0, t1] in which any backend request was being served (EC2/SNS, webhook, the answer's
    PUT), plus the sinks' CPU for TLS handshakes: what is not the function's own work."""
    intervals = [(r.start, r.end) for r in backend.between(t0, t1)]
    intervals += [(r.start, r.end) for r in bench.sinks.between(t0, t1)]
    intervals.append((answer.start, answer.body_read_at))
    return union_length(intervals, t0, t1) + bench.sinks.handshake_cpu_between(t0, t1)


def check_answer(m: dict, ds: Dataset, kind: str) -> None:
    a = m["answer"]
    data = a.get("Data", {})
    want = {"VpcCount": ds.vpcs, "SubnetCount": ds.subnets, "RouteTableCount": ds.route_tables}
    got = {k: int(data.get(k, -1)) for k in want}
    if a.get("Status") != "SUCCESS" or got != want:
        raise RuntimeError(f"{kind}: wrong answer: {a.get('Status')} {a.get('Reason')!r} {got} != {want}")


# ---------------------------------------------------------------------------------------------------------
# Measurements


def cold_starts(bench: Bench, kinds: list[str], n: int) -> dict:
    """n fresh processes per kind, interleaved so background load hits both alike; one unmeasured first
    start per kind warms the page cache."""
    out = {k: {"cold": [], "init": [], "first": [], "own": [], "rss": [], "cpu": []} for k in kinds}
    for i in range(n + 1):
        for kind in kinds:
            f = Function(bench, kind, STANDARD_SUBNETS, f"{kind}-cold.log")
            try:
                key = uuid.uuid4().hex
                inv = f.api.invoke(bench.event(key))
                f.spawn()
                answer = bench.sinks.wait_answer(key, INVOKE_TIMEOUT)
                res = inv.wait(INVOKE_TIMEOUT)
                if res["kind"] != "response":
                    raise RuntimeError(f"{kind} cold start: {res['kind']}: {res['body'][:300]!r}")
                check_answer({"answer": json.loads(answer.body)}, f.backend.dataset, kind)
                if i == 0:
                    continue
                t0, t1 = f.spawned_at, answer.body_read_at
                out[kind]["cold"].append(t1 - t0)
                out[kind]["init"].append(f.api.first_poll_at - t0)
                out[kind]["first"].append(t1 - f.api.first_poll_at)
                out[kind]["own"].append(t1 - t0 - backend_time(bench, f.backend, answer, t0, t1))
                out[kind]["rss"].append(f.peak_rss_kib())
            finally:
                cpu = f.stop()
            if i:
                out[kind]["cpu"].append(cpu)
        if i:
            say(f"  cold start {i}/{n}: " + ", ".join(
                f"{k} {out[k]['cold'][-1] * 1000:.0f} ms" for k in kinds))
    return out


def warm(bench: Bench, kind: str, n: int, subnets: int = STANDARD_SUBNETS, log_level: str | None = None,
         warmup: int = 5, label: str = "warm") -> dict:
    f = Function(bench, kind, subnets, f"{kind}-{label}.log", log_level)
    try:
        f.spawn()
        for _ in range(warmup):
            check_answer(f.invoke(), f.backend.dataset, kind)
        cpu0 = f.cpu()
        ms = []
        for i in range(n):
            m = f.invoke()
            check_answer(m, f.backend.dataset, kind)
            ms.append(m)
            if (i + 1) % 50 == 0:
                say(f"  {kind} {label}: {i + 1}/{n}")
        cpu = (f.cpu() - cpu0) / n
        return {"m": ms, "rss": f.peak_rss_kib(), "cpu": cpu}
    finally:
        f.stop()


def log_levels(bench: Bench, kind: str, n: int, levels=("WARN", "INFO")) -> dict:
    """The cost of logging: one process per level, invoked alternately so load hits both alike."""
    fs = {lvl: Function(bench, kind, STANDARD_SUBNETS, f"{kind}-log-{lvl}.log", lvl) for lvl in levels}
    out = {lvl: [] for lvl in levels}
    try:
        for f in fs.values():
            f.spawn()
        for i in range(n + 5):
            for lvl, f in fs.items():
                m = f.invoke()
                check_answer(m, f.backend.dataset, kind)
                if i >= 5:
                    out[lvl].append(m)
        return out
    finally:
        for f in fs.values():
            f.stop()


def scale(bench: Bench, kind: str, subnets: int, n: int) -> dict:
    f = Function(bench, kind, subnets, f"{kind}-scale-{subnets}.log")
    try:
        f.spawn()
        first = f.invoke()  # includes the cold start; not counted in the time
        check_answer(first, f.backend.dataset, kind)
        verified = verify_hook(bench)
        ms = []
        for _ in range(n):
            m = f.invoke()
            check_answer(m, f.backend.dataset, kind)
            ms.append(m)
        return {"m": ms, "rss": f.peak_rss_kib(), "verified": verified}
    finally:
        f.stop()


def verify_hook(bench: Bench) -> bool:
    """The last webhook, checked with the Python standardwebhooks package (the provider's view)."""
    from standardwebhooks.webhooks import Webhook

    hook = bench.sinks.last_hook
    if hook is None:
        return False
    Webhook(bench.secret).verify(hook.body, hook.headers)
    return True


# ---------------------------------------------------------------------------------------------------------
# Sizes, machine, report


def zip_bytes(files: list[tuple[Path, str]], work: Path, name: str) -> int:
    path = work / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for src, arc in files:
            info = zipfile.ZipInfo(arc, (1980, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if arc == "bootstrap" else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, src.read_bytes(), compresslevel=9)
    return path.stat().st_size


def python_zip_sizes(bench: Bench) -> tuple[int, int]:
    """(handler + crhelper + standardwebhooks, the same plus boto3 and its dependencies vendored)."""
    import importlib.metadata as md

    task = [(p, str(p.relative_to(bench.task_dir))) for p in sorted(bench.task_dir.rglob("*")) if p.is_file()]
    small = zip_bytes(task, bench.work, "python.zip")
    extra = []
    for dist_name in LAMBDA_RUNTIME_PACKAGES:
        dist = md.distribution(dist_name)
        for f in dist.files or []:
            src = Path(dist.locate_file(f))
            if "__pycache__" in f.parts or ".." in f.parts or not src.is_file():
                continue
            extra.append((src, str(f)))
    full = zip_bytes(task + extra, bench.work, "python-with-boto3.zip")
    return small, full


def machine() -> dict:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1])
    try:
        rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        rustc = "unknown"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "rustc": rustc,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load": "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
    }


def ms(x: float) -> str:
    return f"{x * 1000:.1f}" if x < 0.1 else f"{x * 1000:.0f}"


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def ratio(py: float, rs: float) -> str:
    return f"{py / rs:.1f}×" if rs > 0 else "n/a"


def report(res: dict, args, info: dict) -> str:
    kinds = res["kinds"]
    L = []
    L.append("# Benchmarks: account-link (Rust) vs the same job in Python")
    L.append("")
    L.append(f"Generated by `make bench` (`bench/run.py{' --quick' if args.quick else ''}`) on "
             f"{info['date']}; the method is at the end, the profile and build experiments are in "
             f"[bench/PROFILE.md](bench/PROFILE.md).")
    L.append("")
    L.append(f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory']} RAM, Linux {info['kernel']}; "
             f"{info['rustc']}; Python {info['python']}; load average at start {res['load_start']}, "
             f"at end {info['load']}.")
    if res.get("load"):
        L.append("")
        L.append(res["load"] + " Times are wall clock on a machine that may be shared: read the ratios of "
                 "phases with a low figure here.")
    L.append("")
    extra = "".join(f", `{kv}`" for kv in args.rust_env)
    L.append(f"Rust: `{res['bootstrap_name']}` (x86_64, `cargo lambda build --release`), "
             f"log level {args.log_level}{extra}. Python: `bench/python_handler/handler.py` (crhelper "
             f"{res['versions']['crhelper']}, boto3 {res['versions']['boto3']}, standardwebhooks "
             f"{res['versions']['standardwebhooks']}) under awslambdaric {res['versions']['awslambdaric']}, "
             f"log level {args.log_level}.")
    L.append("")
    L.append(f"Account for cold start, warm and memory: {res['std']['vpcs']} VPCs, {res['std']['subnets']} subnets, "
             f"{res['std']['tables']} route tables, one region; the provider is told over the webhook and SNS.")
    L.append("")
    rusts = [k for k in kinds if k in RUST_KINDS]
    ratios = [k for k in rusts if "python" in kinds]
    L.append("| | " + " | ".join(TITLES[k] for k in kinds) + " | "
             + "".join(f"Python / {TITLES[k]} | " for k in ratios) + ("Target |" if ratios else ""))
    L.append("|---|" + "---:|" * (len(kinds) + len(ratios)) + ("---|" if ratios else ""))

    def row(name, key_fn, fmt, target=None, target_label=""):
        vals = {k: key_fn(k) for k in kinds}
        cells = [fmt(vals[k]) for k in kinds]
        rs = {k: vals["python"] / vals[k] if vals[k] else float("inf") for k in ratios}
        cells += [f"{rs[k]:.1f}×" if rs[k] >= 0.1 else f"{rs[k]:.4f}×" for k in ratios]
        if ratios:
            cells.append(f"{target_label} " + ", ".join(
                f"{TITLES[k]} {'**met**' if rs[k] >= target else '**not met**'}" for k in ratios) if target else "")
        L.append(f"| {name} | " + " | ".join(cells) + " |")

    c = res["cold"]
    n_cold = len(c[kinds[0]]["cold"])
    row(f"Cold start, median (ms, {n_cold} processes)", lambda k: statistics.median(c[k]["cold"]), ms, 10,
        "≥ 10× faster:")
    row("Cold start, p95 (ms)", lambda k: pct(c[k]["cold"], 95), ms)
    row("… of which init: spawn → first `/next` (ms, median)", lambda k: statistics.median(c[k]["init"]), ms)
    row("… of which the first invocation: first `/next` → answer (ms, median)",
        lambda k: statistics.median(c[k]["first"]), ms)
    row("Function's own share of a cold start = cold start − backend (ms, median)",
        lambda k: statistics.median(c[k]["own"]), ms)
    row("CPU time of a cold process (ms, median)", lambda k: statistics.median(c[k]["cpu"]), ms)
    w = res["warm"]
    n_warm = len(w[kinds[0]]["m"])
    row(f"Warm invocation, p50 (ms, {n_warm} in one process)", lambda k: pct([m["e2e"] for m in w[k]["m"]], 50), ms)
    row("Warm invocation, p99 (ms)", lambda k: pct([m["e2e"] for m in w[k]["m"]], 99), ms)
    row("Backend time in a warm invocation, p50 (ms)", lambda k: pct([m["backend"] for m in w[k]["m"]], 50), ms)
    row("Handler overhead = end-to-end − backend, p50 (ms)",
        lambda k: pct([m["overhead"] for m in w[k]["m"]], 50), ms, 5, "≥ 5× lower:")
    row("Handler overhead, p99 (ms)", lambda k: pct([m["overhead"] for m in w[k]["m"]], 99), ms)
    row("CPU time per warm invocation (ms)", lambda k: w[k]["cpu"], ms)
    if "log_levels" in res:
        ll = res["log_levels"]
        n_ll = len(ll[kinds[0]]["WARN"])
        for lvl in ("WARN", "INFO"):
            row(f"Warm p50 at log level {lvl} (ms; {n_ll} each, WARN and INFO processes alternating)",
                lambda k: pct([m["e2e"] for m in ll[k][lvl]], 50), ms)
    row("Peak RSS after the cold invocation (MiB)", lambda k: statistics.median(c[k]["rss"]), mib)
    row(f"Peak RSS after {n_warm} warm invocations (MiB)", lambda k: w[k]["rss"], mib, 3, "Rust ≤ 1/3:")
    z = res["zip"]
    row("Deployable zip (bytes, deflate 9)", lambda k: z[k], lambda v: f"{v:,}")
    L.append("")
    if "python" in kinds:
        L.append(f"The Python zip is handler.py + crhelper + standardwebhooks; boto3 comes with the Lambda Python "
                 f"runtime (vendoring boto3 and its dependencies would make it {z['python_boto3']:,} bytes).")
    if "rust" in kinds:
        L.append(f"The Rust zip is the stripped `bootstrap` alone ({res['bootstrap_bytes']:,} bytes unzipped).")
    if "candidate" in kinds:
        L.append(f"**Rust candidate** is `{res['candidate_name']}`"
                 + "".join(f", `{kv}`" for kv in args.candidate_env)
                 + f": {args.candidate_note or 'a build with a proposed change'}. Its zip is of a stripped copy.")
    L.append("")
    if res.get("targets"):
        L.append("Targets, Python / Rust in this run: " + "; ".join(
            f"{name}: {TITLES[k]} {'met' if ok else 'NOT met'} ({val})" for name, k, ok, val in res["targets"]) + ".")
        L.append("")

    L.append("## Scale")
    L.append("")
    L.append("One process per size and handler; the first invocation (cold) is not counted; time is the median "
             "of the rest. Webhook and SNS sizes are the event's JSON bytes; the answer is the body PUT to the "
             "ResponseURL.")
    L.append("")
    L.append("| Subnets (VPCs, route tables) | Handler | Invocations | Time, median (ms) | Overhead (ms) | "
             "Webhook payload (bytes) | SNS parts | Largest SNS message (bytes) | Answer (bytes) | Peak RSS (MiB) |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, per in res["scale"].items():
        ds = res["datasets"][size]
        for k, sc in per.items():
            m = sc["m"]
            L.append(f"| {size:,} ({ds['vpcs']}, {ds['tables']:,}) | {TITLES[k]} | {len(m)} | "
                     f"{ms(statistics.median(x['e2e'] for x in m))} | "
                     f"{ms(statistics.median(x['overhead'] for x in m))} | {m[-1]['hook_bytes']:,} | "
                     f"{m[-1]['sns_parts']} | {m[-1]['sns_max_bytes']:,} | {m[-1]['answer_bytes']:,} | "
                     f"{mib(sc['rss'])} |")
        if "python" not in per:
            continue
        p = per["python"]
        for k in (k for k in per if k in RUST_KINDS):
            r = per[k]
            L.append(f"| | Python / {TITLES[k]} | | "
                     f"{ratio(statistics.median(x['e2e'] for x in p['m']), statistics.median(x['e2e'] for x in r['m']))} | "
                     f"{ratio(statistics.median(x['overhead'] for x in p['m']), statistics.median(x['overhead'] for x in r['m']))} | "
                     f"{p['m'][-1]['hook_bytes'] / r['m'][-1]['hook_bytes']:.2f}× | | | | "
                     f"{p['rss'] / r['rss']:.1f}× |")
    L.append("")
    L.append("Every answer was checked (SUCCESS, VpcCount/SubnetCount/RouteTableCount equal to the account's); "
             "one webhook per handler and size was verified with the Python `standardwebhooks` package.")
    L.append("")
    L.append(METHOD)
    return "\n".join(L) + "\n"


METHOD = """## Method

- **Runtime API**: `linksupport.runtime_api` (py/linksupport/), a Lambda Runtime API emulator (`/next` long poll, `/response`,
  `/error`, `/init/error`; deadline now + 300 s). Both functions run under it exactly as in Lambda: the Rust
  `bootstrap` directly, the Python handler as `python -m awslambdaric handler.handler` with `/var/task`
  laid out like the unpacked zip (sources only, `PYTHONDONTWRITEBYTECODE=1`: /var/task is read-only in
  Lambda, so those modules are compiled at each cold start; boto3 is precompiled, as in the runtime).
- **Backend** (the same for both, `AWS_ENDPOINT_URL`): `bench/fake_ec2.py` speaks the EC2 Query protocol
  (DescribeVpcs, DescribeSubnets, DescribeRouteTables) with realistic items, MaxResults limits and opaque
  NextTokens, pages pre-rendered; it also answers SNS Publish and records each message. `bench/sinks.py`
  is one TLS server (throwaway CA, P-256, trusted through `SSL_CERT_FILE` = system roots + that CA) for the
  pre-signed ResponseURL (PUT) and the provider webhook (POST). EC2 and SNS are plain http on loopback.
- **Cold start**: the Create event is queued, then the process is spawned; cold start is spawn → the
  ResponseURL has the answer's body. Rust and Python starts alternate, after one unmeasured start each.
  Init is spawn → the first `/next`; the first invocation is that `/next` → the answer; the function's own
  share is the cold start less the backend time in it (as for warm invocations, below).
- **Warm**: one process, 5 unmeasured invocations, then each Create (new RequestId) is timed from being
  queued to the answer's arrival. **Backend time** is the union of the intervals in which any backend
  request was being served (EC2/SNS/webhook/answer, headers read → response written) plus the server's
  CPU for TLS handshakes; **overhead** = end-to-end − backend time: the function's own work, runtime
  client included.
- **Logging**: one WARN and one INFO process of each handler, invoked alternately (so background load
  hits both alike); INFO is the default level in Lambda.
- **CPU time**: for a cold process, user + system time of the whole process (all threads, from `wait4`
  after it is killed); for warm invocations, the growth of the threads' `schedstat` run time over the
  measured invocations, divided by their number.
- **Memory**: VmHWM of the function process (no child processes) from /proc.
- **Scale**: EC2 pages of 1 000 VPCs/subnets and 100 route tables (the MaxResults both handlers ask for);
  SNS parts are the Publish calls the backend received for one invocation.
- Every process is started with the same environment: `AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256`, static
  credentials, region us-west-2; nothing in the run leaves loopback.
- **What each does**: both list the account, sign each webhook delivery (Standard Webhooks), split the
  event into parts where it does not fit (SNS 256 KiB, the webhook's 1 MiB) and answer CloudFormation. The
  Rust function also runs as on main by default (`PROVIDER_AUTH_MODE=hmac-and-proof`): each webhook
  delivery and SNS message carries a proof of the account (a SigV4-signed `sts:GetCallerIdentity` bound to
  its body), which the Python peer does not make. The signing secret is passed inline
  (`PROVIDER_SIGNING_SECRET`) to both; a stack reads it from Secrets Manager once per process instead
  (one more request in the cold start only).
- **Machine load**: the machine may be shared. The header gives the load average at start and end and, per
  phase, the CPU time other processes used (the machine's busy time in `/proc/stat` less this run's own
  processes); phases where it is high are noisy. Instruction counts (`bench/profile.py rust-callgrind`,
  bench/PROFILE.md) are the load-independent measure of the function's own work.
"""


# ---------------------------------------------------------------------------------------------------------


def build() -> None:
    say("building the bootstrap: " + " ".join(BUILD_CMD))
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    t = time.monotonic()
    subprocess.run(BUILD_CMD, cwd=ROOT, env=env, check=True)
    say(f"  built in {time.monotonic() - t:.0f} s")


def stop_all(*_):
    """On the way out: every process still running (each leads its own group), SIGTERM then SIGKILL."""
    for p in list(PROCS):
        procs.stop(p, group=True)
    PROCS.clear()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 cold starts, 20 warm, sizes 100 and 1 000")
    ap.add_argument("--only", choices=["rust", "python"], help="run one handler only")
    ap.add_argument("--bootstrap", type=Path, help="measure this bootstrap instead of building target/lambda")
    ap.add_argument("--no-build", action="store_true", help="use target/lambda/account-link/bootstrap as is")
    ap.add_argument("--log-level", default="WARN", help="AWS_LAMBDA_LOG_LEVEL for both (default WARN)")
    ap.add_argument("--out", type=Path, help="write the table here (default BENCHMARKS.md for a full run)")
    ap.add_argument("--cold", type=int, help="cold starts per handler")
    ap.add_argument("--warm", type=int, help="warm invocations")
    ap.add_argument("--sizes", help="comma-separated subnet counts for the scale section")
    ap.add_argument("--rust-env", action="append", default=[], metavar="K=V",
                    help="extra environment for the Rust function (repeatable)")
    ap.add_argument("--candidate", type=Path, help="also measure this bootstrap (a proposed build), side by side")
    ap.add_argument("--candidate-env", action="append", default=[], metavar="K=V",
                    help="extra environment for the candidate (repeatable)")
    ap.add_argument("--candidate-note", help="what the candidate is, for the report")
    args = ap.parse_args()

    n_cold = args.cold or (3 if args.quick else 20)
    n_warm = args.warm or (20 if args.quick else 200)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([100, 1000] if args.quick else [100, 1000, 10000])
    kinds = [args.only] if args.only else ["rust", "python"]
    if args.candidate and args.only != "python":
        kinds.insert(1, "candidate")
    out = args.out or (None if args.quick or args.only or args.bootstrap else ROOT / "BENCHMARKS.md")

    bootstrap = args.bootstrap.resolve() if args.bootstrap else None
    if bootstrap is None and "rust" not in kinds:
        bootstrap = BOOTSTRAP
    elif bootstrap is None:
        if not args.no_build:
            build()
        bootstrap = BOOTSTRAP
    if "rust" in kinds and not bootstrap.exists():
        say(f"no bootstrap at {bootstrap}")
        return 1

    signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(143)))
    load_start = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    meter = LoadMeter()
    t_start = time.monotonic()
    import importlib.metadata as md

    res: dict = {"kinds": kinds, "load_start": load_start, "bootstrap_name": str(bootstrap.relative_to(ROOT))
                 if bootstrap.is_relative_to(ROOT) else str(bootstrap),
                 "versions": {d: md.version(d) for d in ("crhelper", "boto3", "standardwebhooks", "awslambdaric")}}
    work = Path(tempfile.mkdtemp(prefix="account-link-bench-"))
    bench = None
    ok = False
    try:
        bench = Bench(work, bootstrap, args.log_level, dict(kv.split("=", 1) for kv in args.rust_env),
                      args.candidate.resolve() if args.candidate else None,
                      dict(kv.split("=", 1) for kv in args.candidate_env))
        if args.candidate:
            res["candidate_name"] = str(args.candidate)
        say(f"work dir {work} (kept on failure or with BENCH_KEEP_WORK=1)")
        ds = bench.backend(STANDARD_SUBNETS).dataset
        res["std"] = {"vpcs": ds.vpcs, "subnets": ds.subnets, "tables": ds.route_tables}

        say(f"cold starts: {n_cold} per handler")
        with meter.phase("cold starts"):
            res["cold"] = cold_starts(bench, kinds, n_cold)

        res["warm"] = {}
        for k in kinds:
            say(f"warm: {n_warm} invocations, {k}")
            with meter.phase(f"warm ({TITLES[k]})"):
                res["warm"][k] = warm(bench, k, n_warm)
        if not args.quick:
            res["log_levels"] = {}
            for k in kinds:
                say(f"log levels: 100 invocations each at WARN and INFO, {k}")
                with meter.phase(f"log levels ({TITLES[k]})"):
                    res["log_levels"][k] = log_levels(bench, k, 100)
        res["scale"], res["datasets"] = {}, {}
        for size in sizes:
            d = bench.backend(size).dataset
            res["datasets"][size] = {"vpcs": d.vpcs, "tables": d.route_tables}
            res["scale"][size] = {}
            n = 2 if args.quick else (4 if size >= 10000 else 8)
            for k in kinds:
                say(f"scale: {size} subnets, {k}, {n} invocations")
                with meter.phase(f"{size:,} subnets ({TITLES[k]})"):
                    res["scale"][size][k] = scale(bench, k, size, n)
                if not res["scale"][size][k]["verified"]:
                    raise RuntimeError(f"{k}: no webhook to verify")

        res["zip"] = {}
        if "rust" in kinds:
            res["bootstrap_bytes"] = bootstrap.stat().st_size
            res["zip"]["rust"] = zip_bytes([(bootstrap, "bootstrap")], work, "rust.zip")
        if "candidate" in kinds:
            stripped = work / "candidate-stripped"
            shutil.copy(args.candidate, stripped)
            subprocess.run(["strip", str(stripped)], check=True)
            res["zip"]["candidate"] = zip_bytes([(stripped, "bootstrap")], work, "candidate.zip")
        if "python" in kinds:
            res["zip"]["python"], res["zip"]["python_boto3"] = python_zip_sizes(bench)
            c, w = res["cold"], res["warm"]
            ov = lambda k: pct([m["overhead"] for m in w[k]["m"]], 50)  # noqa: E731
            res["targets"] = []
            for k in (k for k in kinds if k in RUST_KINDS):
                cold_r = statistics.median(c["python"]["cold"]) / statistics.median(c[k]["cold"])
                mem_r = w[k]["rss"] / w["python"]["rss"]
                ov_r = ov("python") / ov(k)
                res["targets"] += [
                    ("cold start ≥ 10× faster", k, cold_r >= 10, f"{cold_r:.1f}×"),
                    ("peak memory ≤ 1/3", k, mem_r <= 1 / 3, f"{mem_r:.2f} of Python's"),
                    ("warm overhead ≥ 5× lower", k, ov_r >= 5, f"{ov_r:.1f}×"),
                ]
        res["load"] = meter.summary()
        table = report(res, args, machine())
        print(table)
        if out:
            out.write_text(table)
            say(f"wrote {out}")
        say(f"benchmark took {time.monotonic() - t_start:.0f} s")
        ok = True
        return 0
    finally:
        stop_all()
        if bench:
            bench.close()
        if ok and os.environ.get("BENCH_KEEP_WORK") != "1":
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"kept {work} (function logs, certificates, zips)")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)
