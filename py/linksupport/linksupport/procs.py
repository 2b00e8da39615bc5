"""Child processes: start a program with its output in a log, wait until it says where it listens, stop it
with a grace period.

A program that can choose its own port is started on port 0 (`--listen 127.0.0.1:0`, `-p 0`) and read back
from the line it prints once it listens: no free port is picked, closed and passed on, which another
process could take in between.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

# The lines that say where a program listens; each pattern's `url` group is the address it chose.
LINK_RECEIVER = r"listening on (?P<url>https?://\S+)"
MOTO = r"Running on (?P<url>http://\S+)"
UVICORN = r"Uvicorn running on (?P<url>http://\S+)"
GUNICORN = r"Listening at: (?P<url>http://\S+)"

# How long a stopped program has to exit after SIGTERM before it is killed.
GRACE = 10.0


class NotReady(RuntimeError):
    """The program exited, or did not say it listens in time; the message ends with its log's tail."""


class Process:
    """A started program: its `Popen`, its log, and (once ready) the URL it listens on."""

    def __init__(self, name: str, popen: subprocess.Popen, log: Path, group: bool):
        self.name, self.popen, self.log, self.group = name, popen, log, group
        self.url: str | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/", 1)[0])

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_bytes()[-chars:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self, grace: float = GRACE) -> int:
        return stop(self.popen, grace, group=self.group)

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start(cmd: list[str], *, name: str, log: Path, ready: str | None = LINK_RECEIVER, timeout: float = 60.0,
          env: dict | None = None, cwd: Path | str | None = None, group: bool = False,
          append: bool = False) -> Process:
    """Starts `cmd` with stdout and stderr in `log`. With `ready` (a pattern whose `url` group is where the
    program listens), returns once the log has a line matching it; raises `NotReady` (and stops the program)
    if it exits first or `timeout` seconds pass. `group`: the program leads a process group of its own,
    which `stop` signals as a whole (a terminal's Ctrl-C then reaches only this script)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    offset = log.stat().st_size if append and log.exists() else 0
    with open(log, "ab" if append else "wb") as out:
        popen = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=group)
    proc = Process(name, popen, log, group)
    if ready is not None:
        try:
            proc.url = wait_ready(proc, ready, timeout, offset)
        except BaseException:
            proc.stop()
            raise
    return proc


def wait_ready(proc: Process, pattern: str, timeout: float, offset: int = 0) -> str:
    """The `url` group of the first line of `proc`'s log (from byte `offset`) matching `pattern`, waiting
    for it."""
    regex = re.compile(pattern)
    end = time.monotonic() + timeout
    while True:
        with open(proc.log, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        found = regex.search(text)
        if found:
            return found.group("url")
        if proc.popen.poll() is not None:
            raise NotReady(f"{proc.name} exited with {proc.popen.returncode} before it listened; "
                           f"its log ends:\n{proc.log_tail()}")
        if time.monotonic() > end:
            raise NotReady(f"{proc.name} did not say where it listens within {timeout:.0f} s; "
                           f"its log ends:\n{proc.log_tail()}")
        time.sleep(0.05)


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    """For a program that cannot report the port it chose: waits until `port` on loopback accepts."""
    end = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None:
            raise NotReady(f"{what} exited with {proc.returncode} before listening on {port}")
        if time.monotonic() > end:
            raise NotReady(f"{what} did not listen on {port} within {timeout:.0f} s")
        time.sleep(0.1)


def free_port() -> int:
    """A port free now, for the programs that must be told one (PostgreSQL names its socket after it, a
    container's published port): it can be taken before they bind it, so prefer port 0 and `start`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(popen: subprocess.Popen, grace: float = GRACE, *, group: bool = False) -> int:
    """SIGTERM (to its process group when it leads one), up to `grace` seconds to exit, then SIGKILL.
    Returns the exit status."""
    if popen.poll() is None:
        _signal(popen, signal.SIGTERM, group)
        try:
            popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal(popen, signal.SIGKILL, group)
            popen.wait()
    return popen.returncode


def _signal(popen: subprocess.Popen, sig: int, group: bool) -> None:
    try:
        if group:
            os.killpg(popen.pid, sig)
        else:
            popen.send_signal(sig)
    except ProcessLookupError:
        pass


class Children:
    """The processes a script started, stopped together, last started first, on exit or SIGTERM."""

    def __init__(self):
        self._procs: list[Process] = []

    def start(self, cmd: list[str], **kw) -> Process:
        proc = start(cmd, **kw)
        self._procs.append(proc)
        return proc

    def adopt(self, proc: Process) -> Process:
        self._procs.append(proc)
        return proc

    def stop_all(self, grace: float = GRACE) -> None:
        """SIGTERM to every one first, then each gets what is left of one grace period before SIGKILL."""
        procs, self._procs = list(reversed(self._procs)), []
        for p in procs:
            if p.running():
                _signal(p.popen, signal.SIGTERM, p.group)
        end = time.monotonic() + grace
        for p in procs:
            stop(p.popen, max(0.1, end - time.monotonic()), group=p.group)
