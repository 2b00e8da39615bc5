#!/usr/bin/env python3
"""Where the time and memory go, on the same harness as bench/run.py (Runtime API emulator, fake EC2/SNS,
TLS sinks). Profiles need a bootstrap with symbols: the release build strips them, so build one with
`CARGO_PROFILE_RELEASE_STRIP=false` into another target dir and pass it with --bootstrap.

    bench/profile.py rust-perf   --bootstrap B [--subnets 1000] [--warm 200] [--cold 10] [--rust-env K=V]
    bench/profile.py rust-massif --bootstrap B [--subnets 1000] [--warm 20]
    bench/profile.py rust-callgrind --bootstrap B [--subnets 10000] [--warm 2]
    bench/profile.py python-cprofile [--subnets 1000] [--warm 50]
    bench/profile.py python-importtime

rust-perf samples (perf, DWARF call graphs) `--cold` fresh processes through their first invocation, then
one process through `--warm` invocations, and prints CPU by subsystem (a sample counts for the innermost
subsystem on its stack) and the hottest functions. rust-massif prints the heap peak and its largest
allocation sites. rust-callgrind counts instructions (valgrind's callgrind: the same counts however loaded
the machine is, unlike times) of init, of the first invocation and of each warm one, and the functions the
warm ones spend them in. The Python profiles run the handler module in a child process against the same servers.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import run

HERE = Path(__file__).resolve().parent

# Innermost match wins: a sample in malloc called from the XML parser counts as "allocator".
SUBSYSTEMS = [
    ("aws-lc entropy (jitterentropy)", r"jent_"),
    ("allocator (malloc/free)", r"^(__libc_malloc|malloc|free|cfree|realloc|calloc|_int_malloc|_int_free|_int_realloc|"
                                r"malloc_consolidate|__libc_free|__libc_realloc|__libc_calloc|tcache|unlink_chunk|"
                                r"sysmalloc|__rust_alloc|__rust_dealloc|__rust_realloc|__rdl_|mi_|_mi_)"),
    ("memcpy/memmove/memset", r"^__mem(cpy|move|set)|^mem(cpy|move|set)"),
    ("root certificates (PEM/DER parse)", r"rustls_native_certs|rustls_pki_types::pem|rustls_pki_types::base64|"
                                          r"rustls_platform_verifier|webpki::trust_anchor|x509_parser"),
    ("TLS (rustls + crypto)", r"rustls::|aws_lc_|aws_lc_rs::|ring::|ring_core|tokio_rustls|hyper_rustls|webpki::"),
    ("SigV4 signing", r"aws_sigv4::|hmac::|sha2::"),
    ("EC2 XML parsing", r"aws_smithy_xml::|aws_sdk_ec2::protocol_serde|xmlparser::"),
    ("SNS/EC2 query serialization", r"aws_smithy_query::|protocol_serde::shape_.*_input|form_urlencoded"),
    ("JSON (serde_json)", r"serde_json::"),
    ("SDK runtime (orchestrator, endpoints, retries)", r"aws_smithy_runtime|aws_smithy_runtime_api|aws_sdk_ec2::|"
                                                        r"aws_sdk_sns::|aws_config::|aws_runtime::|aws_types::|"
                                                        r"aws_smithy_types::|aws_smithy_http::|aws_credential_types|"
                                                        r"aws_smithy_async|aws_endpoint|aws_smithy_observability"),
    ("the handler's own code (account_link)", r"account_link::"),
    ("logging (tracing)", r"tracing::|tracing_core::|tracing_subscriber::"),
    ("HTTP (hyper, reqwest, h2)", r"hyper::|hyper_util::|reqwest::|h2::|http::|httparse::"),
    ("Lambda runtime client", r"lambda_runtime"),
    ("tokio runtime", r"tokio::"),
    ("kernel", r"^\[k\]|\[kernel"),
    ("dynamic loader / libc start", r"^_dl_|^dl_|_dl_relocate|__libc_start|^_start$|do_lookup"),
]
COMPILED = [(name, re.compile(p)) for name, p in SUBSYSTEMS]

# Inclusive: the share of samples with a matching frame anywhere on the stack (these overlap).
INCLUSIVE = [
    ("aws-lc RNG seeding (jitterentropy)", r"jent_entropy|jent_read_entropy|jent_time_entropy_init"),
    ("EC2 responses → SDK types (aws_sdk_ec2::protocol_serde)", r"aws_sdk_ec2::protocol_serde::.*de_"),
    ("inventory::assemble (SDK types → event types)", r"account_link::inventory::assemble"),
    ("SNS split (split_for_sns: sizing + parts)", r"split_for_sns"),
    ("webhook (serialize, sign, POST)", r"account_link::notify::webhook"),
    ("SNS publish (query encoding, send)", r"SnsPublisher::publish|aws_sdk_sns::"),
    ("CloudFormation answer (render, PUT)", r"account_link::cfn::response|account_link::handler::answer"),
    ("LinkEvent::new / clones of the event", r"account_link::event::LinkEvent::new|<account_link::event::.*as core::clone::Clone>"),
    ("SigV4 signing", r"aws_sigv4::"),
    ("TLS (rustls)", r"rustls::"),
    ("root certificates loaded", r"rustls_native_certs::|rustls_platform_verifier::"),
    ("SDK config / client construction", r"aws_config::|Ec2Clients::client|aws_sdk_.*::config::Builder::build"),
    ("logging (tracing)", r"tracing_subscriber::|tracing_core::"),
    ("Lambda runtime client", r"lambda_runtime::"),
    ("serde_json (anywhere)", r"serde_json::"),
    ("allocator (anywhere)", r"^(malloc|free|cfree|realloc|_int_malloc|_int_free|__libc_malloc)"),
]
INCLUSIVE_RX = [(n, re.compile(p)) for n, p in INCLUSIVE]


def classify(frames: list[tuple[str, str]]) -> str:
    """frames: innermost first, (symbol, dso)."""
    for sym, dso in frames:
        s = sym if not dso.startswith("[kernel") else "[k]" + sym
        for name, rx in COMPILED:
            if rx.search(s):
                return name
    leaf_dso = frames[0][1] if frames else "?"
    return f"other ({Path(leaf_dso).name})"


def perf_samples(data: Path):
    out = subprocess.run(["perf", "script", "-i", str(data), "-F", "comm,tid,period,ip,sym,dso", "--no-inline"],
                         capture_output=True, text=True, errors="replace").stdout
    sample: list[tuple[str, str]] = []
    period = 1
    for line in out.splitlines() + [""]:
        if not line.strip():
            if sample:
                yield period, sample
            sample, period = [], 1
            continue
        if not line.startswith((" ", "\t")):
            parts = line.split()
            try:
                period = int(parts[2]) if len(parts) > 2 else 1
            except ValueError:
                period = 1
            continue
        m = re.match(r"\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$", line)
        if m:
            sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1))
            sample.append((sym, m.group(2)))


def summarize_perf(datas: list[Path], title: str, top: int = 25) -> str:
    by_sub = collections.Counter()
    by_leaf = collections.Counter()
    incl = collections.Counter()
    total = 0
    for d in datas:
        for period, frames in perf_samples(d):
            total += period
            by_sub[classify(frames)] += period
            by_leaf[frames[0][0] if frames else "?"] += period
            for name, rx in INCLUSIVE_RX:
                if any(rx.search(sym) for sym, _ in frames):
                    incl[name] += period
    lines = [f"### {title}", "", f"{total / 1e6:.1f} ms of CPU sampled (task-clock) over {len(datas)} process(es)", "",
             "| Subsystem (innermost on the stack) | share |", "|---|---:|"]
    for name, v in by_sub.most_common():
        if v / total >= 0.005:
            lines.append(f"| {name} | {100 * v / total:.1f}% |")
    lines += ["", "| Inclusive (a frame anywhere on the stack; overlapping) | share |", "|---|---:|"]
    for name, _ in INCLUSIVE:
        if incl[name] / total >= 0.005:
            lines.append(f"| {name} | {100 * incl[name] / total:.1f}% |")
    lines += ["", "| Hottest functions (self) | share |", "|---|---:|"]
    for name, v in by_leaf.most_common(top):
        lines.append(f"| `{name[:110]}` | {100 * v / total:.1f}% |")
    return "\n".join(lines) + "\n"


def perf_wrapper(out: Path) -> list[str]:
    return ["perf", "record", "-q", "-e", "task-clock", "-F", "4999", "--call-graph", "dwarf,32768",
            "-o", str(out), "--"]


def stop_gracefully(f: run.Function) -> None:
    """SIGINT so perf/valgrind write their data, then the usual cleanup."""
    if f.proc and f.proc.poll() is None:
        os.killpg(f.proc.pid, signal.SIGINT)
        try:
            f.proc.wait(120)
        except subprocess.TimeoutExpired:
            pass
    f.stop()


def rust_perf(bench: run.Bench, args) -> str:
    out = []
    cold = []
    for i in range(args.cold):
        data = bench.work / f"cold-{i}.perf"
        f = run.Function(bench, "rust", args.subnets, "perf-cold.log", wrapper=perf_wrapper(data))
        try:
            key = uuid.uuid4().hex
            inv = f.api.invoke(bench.event(key))
            f.spawn()
            bench.sinks.wait_answer(key, 120)
            inv.wait(120)
        finally:
            stop_gracefully(f)
        cold.append(data)
    if cold:
        out.append(summarize_perf(cold, f"Rust cold start: spawn → first answer ({args.subnets} subnets)"))
    data = bench.work / "warm.perf"
    f = run.Function(bench, "rust", args.subnets, "perf-warm.log")
    try:
        f.spawn()
        for _ in range(5):
            f.invoke()
        # Attach only now, so the profile holds the warm invocations alone.
        perf = subprocess.Popen(perf_wrapper(data)[:-1] + ["-p", str(f.proc.pid)], start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run.PROCS.append(perf)
        time.sleep(1.0)
        for _ in range(args.warm):
            f.invoke()
        os.killpg(perf.pid, signal.SIGINT)
        perf.wait(120)
        run.PROCS.remove(perf)
    finally:
        f.stop()
    out.append(summarize_perf([data], f"Rust warm: {args.warm} invocations in one process ({args.subnets} subnets)"))
    return "\n".join(out)


def rust_massif(bench: run.Bench, args) -> str:
    out_file = bench.work / "massif.out"
    f = run.Function(bench, "rust", args.subnets, "massif.log",
                     wrapper=["valgrind", "--tool=massif", "--threshold=2.0", "--detailed-freq=1",
                              "--max-snapshots=200", f"--massif-out-file={out_file}"])
    try:
        f.spawn()
        for _ in range(args.warm + 1):
            f.invoke()
    finally:
        stop_gracefully(f)
    text = subprocess.run(["ms_print", str(out_file)], capture_output=True, text=True).stdout
    return "```\n" + "\n".join(text.splitlines()[:120]) + "\n```\n"


def callgrind_run(bench: run.Bench, args, invocations: int, name: str) -> Path:
    """One process under callgrind: init, then `invocations` Creates; its counts are written when it ends."""
    out_file = bench.work / f"callgrind.{name}"
    f = run.Function(bench, "rust", args.subnets, f"callgrind-{name}.log",
                     wrapper=["valgrind", "--tool=callgrind", "--dump-instr=no", "--collect-jumps=no",
                              f"--callgrind-out-file={out_file}"])
    try:
        f.spawn()
        end = time.monotonic() + 300
        while f.api.first_poll_at is None:
            if time.monotonic() > end or f.proc.poll() is not None:
                raise RuntimeError(f"the function did not start under callgrind; see {name}'s log")
            time.sleep(0.05)
        for _ in range(invocations):
            run.check_answer(f.invoke(), f.backend.dataset, "rust")
    finally:
        stop_gracefully(f)
    return out_file


def callgrind_functions(out_file: Path, inclusive: bool) -> dict[str, int]:
    text = subprocess.run(["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}", "--threshold=100",
                           str(out_file)], capture_output=True, text=True, errors="replace").stdout
    costs: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+)\s+(?:\([\s\d.]+%\)\s+)?(\S.*?)\s*(?:\[[^\]]*\])?$", line)
        if m and ":" in m.group(2):
            fn = m.group(2).split(":", 1)[1]
            costs[fn] = costs.get(fn, 0) + int(m.group(1).replace(",", ""))
    return costs


def callgrind_total(out_file: Path) -> int:
    for line in out_file.read_text(errors="replace").splitlines():
        if line.startswith("totals:") or line.startswith("summary:"):
            return int(line.split()[1])
    return 0


# What a warm invocation's instructions are spent on: the inclusive cost of these functions (summed over the
# functions a row matches, which never call one another).
CALLGRIND_ANCHORS = [
    ("EC2 responses → SDK types (aws-sdk-ec2's XML deserialisers)",
     r"^aws_sdk_ec2::protocol_serde::shape_describe_\w+::de_describe_\w+_http_response$"),
    ("SDK types → the event's inventory (`inventory::assemble`)", r"^account_link::inventory::assemble$"),
    ("the event → JSON, split into parts (`link_contract::parts`)",
     r"^link_contract::parts::(split|Serialized::new|Serialized::split)$"),
    ("Standard Webhooks signatures (HMAC-SHA256 of each delivery)", r"^link_contract::signing::sign$"),
    ("proofs of the account (SHA-256 of each body, SigV4)", r"^account_link::proof::Prover::prove::\{\{closure\}\}$"),
    ("SNS Publish: the query body (percent-encoding the message)",
     r"PublishRequestSerializer as .*SerializeRequest>::serialize_input$"),
    ("the SDK's SigV4 signing of its requests (payload SHA-256)",
     r"^aws_smithy_runtime::client::orchestrator::auth::sign_request$"),
    ("TLS: encrypting what is sent (rustls)",
     r"^rustls::conn::connection::<impl rustls::conn::ConnectionCommon<T>>::send_plaintext$"),
    ("SHA-256 rounds, wherever called (software under valgrind, see below)", r"^sha2::sha256::compress256$"),
]


def rust_callgrind(bench: run.Bench, args) -> str:
    """Instructions of init, of the first invocation and per warm invocation, by difference of three processes
    (init only; init + 1; init + 1 + warm), and the functions the warm invocations spend them in."""
    runs = {n: callgrind_run(bench, args, k, n) for n, k in
            (("init", 0), ("first", 1), ("warm", 1 + args.warm))}
    tot = {n: callgrind_total(p) for n, p in runs.items()}
    per_warm = (tot["warm"] - tot["first"]) / max(args.warm, 1)
    lines = [f"### Rust instructions (callgrind), {args.subnets} subnets", "",
             "| | instructions |", "|---|---:|",
             f"| init (spawn → first `/next`, and exit) | {tot['init']:,} |",
             f"| first invocation | {tot['first'] - tot['init']:,} |",
             f"| each warm invocation (mean of {args.warm}) | {per_warm:,.0f} |", ""]
    a = callgrind_functions(runs["first"], True)
    b = callgrind_functions(runs["warm"], True)
    lines += ["| Warm invocation: where it goes (inclusive) | instructions | share |", "|---|---:|---:|"]
    for label, rx in CALLGRIND_ANCHORS:
        r = re.compile(rx)
        v = sum(b.get(fn, 0) - a.get(fn, 0) for fn in b if r.search(fn)) / max(args.warm, 1)
        lines.append(f"| {label} | {v:,.0f} | {100 * v / per_warm:.1f}% |")
    lines.append("")
    for inclusive in (True, False):
        a = callgrind_functions(runs["first"], inclusive)
        b = callgrind_functions(runs["warm"], inclusive)
        diff = {fn: (b.get(fn, 0) - a.get(fn, 0)) / max(args.warm, 1) for fn in b}
        kind = "inclusive (the function and what it calls)" if inclusive else "self"
        lines += [f"| Warm invocation, {kind} | instructions | share |", "|---|---:|---:|"]
        for fn, v in sorted(diff.items(), key=lambda kv: -kv[1])[:args.top]:
            if v > 0:
                lines.append(f"| `{fn[:120]}` | {v:,.0f} | {100 * v / per_warm:.1f}% |")
        lines.append("")
    if os.environ.get("BENCH_KEEP_WORK") == "1":
        lines.append("callgrind files: " + ", ".join(str(p) for p in runs.values()))
    return "\n".join(lines) + "\n"


CHILD = r'''
import cProfile, json, pstats, sys, time, io
events = json.load(open(sys.argv[1]))
t = time.perf_counter()
import handler
print(f"import handler: {(time.perf_counter() - t) * 1000:.0f} ms", flush=True)
class Ctx:
    aws_request_id = "bench"; function_name = "account-link"; memory_limit_in_mb = "256"
    invoked_function_arn = "arn:aws:lambda:us-west-2:123456789012:function:account-link"
    def get_remaining_time_in_millis(self): return 300000
handler.handler(events[0], Ctx())  # first (cold) invocation, not profiled
p = cProfile.Profile()
p.enable()
for e in events[1:]:
    handler.handler(e, Ctx())
p.disable()
s = io.StringIO()
pstats.Stats(p, stream=s).sort_stats(sys.argv[2]).print_stats(int(sys.argv[3]))
print(s.getvalue())
'''


def python_cprofile(bench: run.Bench, args) -> str:
    backend = bench.backend(args.subnets)
    class NoApi:  # the child calls the handler directly; no Runtime API
        address = "127.0.0.1:9"

    env = bench.env("python", NoApi(), args.subnets)
    keys = [uuid.uuid4().hex for _ in range(args.warm + 1)]
    events_file = bench.work / "events.json"
    events_file.write_text(json.dumps([bench.event(k) for k in keys]))
    child = bench.work / "child.py"
    child.write_text(CHILD)
    outs = []
    for sort in ("tottime", "cumulative"):
        p = subprocess.Popen([str(run.PYTHON), str(child), str(events_file), sort, "30"], cwd=str(bench.task_dir),
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
        run.PROCS.append(p)
        t0 = time.perf_counter()
        out, _ = p.communicate(timeout=600)
        run.PROCS.remove(p)
        elapsed = time.perf_counter() - t0
        reqs = backend.between(t0, t0 + elapsed)
        outs.append(f"### Python warm, {args.warm} invocations, sorted by {sort} ({args.subnets} subnets; "
                    f"{len(reqs)} backend requests)\n\n```\n" + "\n".join(
                        l for l in out.splitlines() if l.strip())[:12000] + "\n```\n")
    return "\n".join(outs)


def python_importtime(bench: run.Bench, args) -> str:
    f = run.Function(bench, "python", run.STANDARD_SUBNETS, "python-importtime.log",
                     extra_env={"PYTHONPROFILEIMPORTTIME": "1"})
    try:
        key = uuid.uuid4().hex
        inv = f.api.invoke(bench.event(key))
        f.spawn()
        ans = bench.sinks.wait_answer(key, 120)
        inv.wait(120)
        cold = ans.body_read_at - f.spawned_at
        init = f.api.first_poll_at - f.spawned_at
    finally:
        f.stop()
    rows = []
    for line in (bench.work / "python-importtime.log").read_text(errors="replace").splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append((int(m.group(2)), len(m.group(3)), m.group(4)))
    top = [r for r in rows if r[1] <= 3]  # top-level imports (cumulative)
    top.sort(reverse=True)
    lines = [f"### Python cold start: {cold * 1000:.0f} ms, of which init (spawn → first /next) {init * 1000:.0f} ms",
             "", "| Import (cumulative, top level) | ms |", "|---|---:|"]
    for us, _, name in top[:20]:
        lines.append(f"| `{name}` | {us / 1000:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["rust-perf", "rust-massif", "rust-callgrind", "python-cprofile",
                                     "python-importtime"])
    ap.add_argument("--bootstrap", type=Path, default=run.BOOTSTRAP)
    ap.add_argument("--subnets", type=int, default=1000)
    ap.add_argument("--warm", type=int, default=200)
    ap.add_argument("--cold", type=int, default=10)
    ap.add_argument("--rust-env", action="append", default=[], metavar="K=V")
    ap.add_argument("--top", type=int, default=40, help="rust-callgrind: functions listed")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="account-link-profile-"))
    bench = run.Bench(work, args.bootstrap.resolve(), "WARN", dict(kv.split("=", 1) for kv in args.rust_env))
    try:
        text = {"rust-perf": rust_perf, "rust-massif": rust_massif, "rust-callgrind": rust_callgrind,
                "python-cprofile": python_cprofile,
                "python-importtime": python_importtime}[args.what](bench, args)
        print(text)
        return 0
    finally:
        run.stop_all()
        bench.close()
        if os.environ.get("BENCH_KEEP_WORK") == "1":
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
