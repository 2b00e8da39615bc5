"""Sending a checked proof to STS (link_registry::proof::ProofVerifier): exactly as signed, no redirects, a
short timeout, a bounded answer, and a bounded number at a time so that a flood of deliveries cannot make
the receiver hammer STS."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import threading
import time
import weakref
from urllib.parse import urlsplit

import httpx

from ._core import (
    BUSY,
    STS_BODY,
    STS_REDIRECT,
    STS_REFUSED,
    STS_UNAVAILABLE,
    Caller,
    Expected,
    Replay,
    check_caller,
    fail,
    parse_caller_identity,
    parse_sts_error,
)

#: STS's answers are small; nothing beyond this is read.
MAX_ANSWER_BYTES = 16 * 1024
#: Proofs sent to STS at once (per process, per event loop); more wait up to QUEUE_WAIT seconds, then
#: fail with reason `busy`.
MAX_CONCURRENT = 16
QUEUE_WAIT = 2.0

_threads = threading.BoundedSemaphore(MAX_CONCURRENT)
_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()
_shared: dict[str, object] = {}


def _shared_ssl() -> ssl.SSLContext:
    """One TLS context for every client: loading the CA bundle takes a quarter of a second."""
    with _shared_lock:
        if "ssl" not in _shared:
            _shared["ssl"] = httpx.create_ssl_context()
        return _shared["ssl"]  # type: ignore[return-value]


def _sync_client(test_endpoint: bool) -> httpx.Client:
    """One client per process (thread-safe; it keeps connections to STS open). A test endpoint is loopback:
    no proxy from the environment applies to it."""
    key = "test" if test_endpoint else "sts"
    ctx = _shared_ssl()
    with _shared_lock:
        if key not in _shared:
            _shared[key] = httpx.Client(verify=ctx, trust_env=not test_endpoint, follow_redirects=False)
        return _shared[key]  # type: ignore[return-value]


def check_endpoint(url: str | None) -> str | None:
    """The STS stand-in for tests: an http(s) URL of a loopback host, or ValueError."""
    if url is None:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host.lower() == "localhost"
    if parts.scheme not in ("http", "https") or not loopback:
        raise ValueError(f"sts_endpoint {url} is not a loopback http(s) URL; it exists for tests only")
    return url


def _unreachable(host: str, e: httpx.HTTPError) -> Exception:
    why = "no answer in time" if isinstance(e, httpx.TimeoutException) else "could not connect" \
        if isinstance(e, httpx.ConnectError) else "the request failed"
    return fail(STS_UNAVAILABLE, f"STS at {host} could not be reached: {why}")


def _outcome(replay: Replay, status: int, body: bytes, expected: Expected) -> Caller:
    if not 200 <= status < 300:
        error = parse_sts_error(body)
        if error is not None and 400 <= status < 500:
            code, message = error
            reason = STS_UNAVAILABLE if code == "Throttling" else STS_REFUSED
            raise fail(reason, f"STS refused the proof (HTTP {status}, {code[:64]}): {message[:200]}")
        reason = STS_UNAVAILABLE if status >= 500 or status == 429 else STS_REFUSED
        raise fail(reason, f"STS at {replay.host} answered HTTP {status}")
    account, arn = parse_caller_identity(body)
    return check_caller(account, arn, expected)


def _redirect(replay: Replay, status: int) -> Exception:
    return fail(STS_REDIRECT, f"STS at {replay.host} answered with a redirect (HTTP {status}); redirects are not followed")


def send(replay: Replay, expected: Expected, *, endpoint: str | None, timeout: float,
         client: httpx.Client | None = None) -> Caller:
    if not _threads.acquire(timeout=QUEUE_WAIT):
        raise fail(BUSY, "too many proofs are being verified at once; try again later")
    try:
        http = client or _sync_client(endpoint is not None)
        try:
            with http.stream("POST", endpoint or replay.url, headers=replay.headers, content=STS_BODY,
                             timeout=timeout, follow_redirects=False) as resp:
                if resp.is_redirect or 300 <= resp.status_code < 400:
                    raise _redirect(replay, resp.status_code)
                body = bytearray()
                # httpx's timeout is per read: a deadline bounds the whole answer.
                deadline = time.monotonic() + timeout
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) >= MAX_ANSWER_BYTES:
                        break
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout("the answer took too long")
                status = resp.status_code
        except httpx.HTTPError as e:
            raise _unreachable(replay.host, e) from None
        return _outcome(replay, status, bytes(body[:MAX_ANSWER_BYTES]), expected)
    finally:
        _threads.release()


def _loop_semaphore() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    sem = _loops.get(loop)
    if sem is None:
        sem = _loops[loop] = asyncio.Semaphore(MAX_CONCURRENT)
    return sem


async def send_async(replay: Replay, expected: Expected, *, endpoint: str | None, timeout: float,
                     client: httpx.AsyncClient | None = None) -> Caller:
    sem = _loop_semaphore()
    try:
        await asyncio.wait_for(sem.acquire(), QUEUE_WAIT)
    except asyncio.TimeoutError:
        raise fail(BUSY, "too many proofs are being verified at once; try again later") from None
    try:
        return await asyncio.wait_for(_exchange_async(replay, expected, endpoint, timeout, client), timeout)
    except asyncio.TimeoutError:
        raise fail(STS_UNAVAILABLE, f"STS at {replay.host} could not be reached: no answer in time") from None
    finally:
        sem.release()


async def _exchange_async(replay: Replay, expected: Expected, endpoint: str | None, timeout: float,
                          client: httpx.AsyncClient | None) -> Caller:
    own = client is None
    http = client or httpx.AsyncClient(verify=_shared_ssl(), trust_env=endpoint is None)
    try:
        async with http.stream("POST", endpoint or replay.url, headers=replay.headers, content=STS_BODY,
                               timeout=timeout, follow_redirects=False) as resp:
            if resp.is_redirect or 300 <= resp.status_code < 400:
                raise _redirect(replay, resp.status_code)
            body = bytearray()
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) >= MAX_ANSWER_BYTES:
                    break
            status = resp.status_code
    except httpx.HTTPError as e:
        raise _unreachable(replay.host, e) from None
    finally:
        if own:
            await http.aclose()
    return _outcome(replay, status, bytes(body[:MAX_ANSWER_BYTES]), expected)
