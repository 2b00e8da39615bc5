"""What the vectors cannot express: configuration errors, header forms, STS out of reach or slow, the bound on
proofs sent at once, a caller's own HTTP client, and the reassembler's bounds."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import pytest

import account_link_verify as alv
from account_link_verify import _sts
from conftest import VECTORS
from test_vectors import body_of

BY_NAME = {v["name"]: v for v in VECTORS["deliveries"]}
GENUINE = BY_NAME["callback/hmac-and-proof/genuine"]
SECRET = GENUINE["config"]["secrets"][0]
AUDIENCE = GENUINE["config"]["audience"]


def verify(v=GENUINE, headers=None, **kw):
    args = dict(secrets=SECRET, audience=AUDIENCE, now=v["now"])
    args.update(kw)
    return alv.verify(v["headers"] if headers is None else headers, body_of(v), **args)


@pytest.mark.parametrize("kwargs, words", [
    (dict(mode="hmac"), "mode must be one of"),
    (dict(secrets=None), "secrets: mode hmac-and-proof needs"),
    (dict(audience=None), "audience: mode hmac-and-proof needs"),
    (dict(secrets="abc"), "secret #1 does not start with whsec_"),
    (dict(secrets=[SECRET, "whsec_!!"]), "secret #2 is not valid base64"),
    (dict(secrets="whsec_AAAA"), "secret #1 is 3 bytes long"),
    (dict(sts_endpoint="https://sts.evil.example/"), "not a loopback http(s) URL"),
    (dict(sts_endpoint="http://10.0.0.1:5000/"), "not a loopback http(s) URL"),
    (dict(sts_endpoint="file:///etc/passwd"), "not a loopback http(s) URL"),
])
def test_configuration_errors_name_the_parameter(kwargs, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        verify(**kwargs)


def test_the_clock_is_now_unless_given(fake_sts):
    fake_sts.serve(GENUINE["sts"])
    with pytest.raises(alv.VerificationError) as e:
        verify(now=None, sts_endpoint=fake_sts.url)
    assert e.value.reason == "timestamp" and "away from now" in str(e.value)
    assert fake_sts.hits == 0


def test_headers_in_any_form(fake_sts):
    raw = [(k.encode(), v.encode()) for k, v in GENUINE["headers"].items()]
    for headers in (raw, {k.upper(): v for k, v in GENUINE["headers"].items()},
                    list(GENUINE["headers"].items()) + [("webhook-id", "msg_second")]):
        fake_sts.serve(GENUINE["sts"])
        event = verify(headers=headers, sts_endpoint=fake_sts.url)
        assert event.delivery_id == GENUINE["expect"]["deliveryId"]


def test_a_receiver_takes_the_delivery_as_it_arrives(fake_sts):
    """http.server's headers (an email.message.Message) and the raw body, as a receiver reads them."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Receiver(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers["content-length"]))
            try:
                event = verify(headers=self.headers, body=body, sts_endpoint=fake_sts.url)
                status, text = 200, event.caller.arn
            except alv.VerificationError as e:
                status, text = (503 if e.retryable else 409 if e.reason in alv.CONFLICTS else 401), e.reason
            self.send_response(status)
            self.end_headers()
            self.wfile.write(text.encode())

    def verify(headers, body, **kw):
        return alv.verify(headers, body, secrets=SECRET, audience=AUDIENCE, now=GENUINE["now"], **kw)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hooks/account-link"
        fake_sts.serve(GENUINE["sts"])
        ok = httpx.post(url, headers=GENUINE["headers"], content=body_of(GENUINE))
        assert (ok.status_code, ok.text) == (200, GENUINE["expect"]["caller"])
        fake_sts.serve(GENUINE["sts"])
        forged = httpx.post(url, headers=GENUINE["headers"], content=body_of(GENUINE).replace(b"123456789012", b"210987654321"))
        assert (forged.status_code, forged.text) == (401, "signature") and fake_sts.hits == 0
        # Another stack's link, signed and proven: refused once STS said who sent it.
        taking = BY_NAME["callback/hmac-and-proof/claim-link-id-of-another-stack"]
        fake_sts.serve(taking["sts"])
        conflict = httpx.post(url, headers=taking["headers"], content=body_of(taking))
        assert (conflict.status_code, conflict.text) == (409, "link-id") and fake_sts.hits == 1
    finally:
        server.shutdown()
        server.server_close()


def test_secrets_as_a_list_or_space_separated(fake_sts):
    v = BY_NAME["callback/hmac-and-proof/receiver-holds-two-secrets"]
    for secrets in (v["config"]["secrets"], " ".join(v["config"]["secrets"])):
        fake_sts.serve(v["sts"])
        assert verify(v, secrets=secrets, sts_endpoint=fake_sts.url).caller.role_name


def test_sns_attributes_as_sns_and_sqs_write_them(fake_sts):
    v = BY_NAME["sns/genuine"]
    proof = v["attributes"]["accountLinkProof"]
    for attributes in ({"accountLinkProof": {"Type": "String", "Value": proof}},
                       {"accountLinkProof": {"DataType": "String", "StringValue": proof}}):
        fake_sts.serve(v["sts"])
        event = alv.verify_sns(v["body"], attributes, audience=AUDIENCE, now=v["now"], sts_endpoint=fake_sts.url)
        assert event.caller.arn == v["expect"]["caller"]


def test_a_callers_client_never_follows_redirects(fake_sts):
    v = BY_NAME["callback/hmac-and-proof/sts-redirect"]
    fake_sts.serve(v["sts"])
    with httpx.Client(follow_redirects=True) as client, pytest.raises(alv.VerificationError) as e:
        verify(v, sts_endpoint=fake_sts.url, client=client)
    assert e.value.reason == "sts-redirect" and fake_sts.hits == 1


def closed_port_url():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/"


def test_sts_out_of_reach_is_retryable():
    for run in (lambda: verify(sts_endpoint=closed_port_url()),
                lambda: asyncio.run(alv.verify_async(GENUINE["headers"], body_of(GENUINE), secrets=SECRET,
                                                     audience=AUDIENCE, now=GENUINE["now"],
                                                     sts_endpoint=closed_port_url()))):
        with pytest.raises(alv.VerificationError) as e:
            run()
        assert (e.value.reason, e.value.retryable) == ("sts-unavailable", True), str(e.value)


@pytest.fixture
def silent_sts():
    """Accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/"
    stop.set()
    thread.join()
    for c in held:
        c.close()
    server.close()


def test_a_silent_sts_times_out(silent_sts):
    started = time.monotonic()
    with pytest.raises(alv.VerificationError) as e:
        verify(sts_endpoint=silent_sts, timeout=0.5)
    assert e.value.reason == "sts-unavailable" and "no answer in time" in str(e.value)
    assert time.monotonic() - started < 3
    with pytest.raises(alv.VerificationError) as e:
        asyncio.run(alv.verify_async(GENUINE["headers"], body_of(GENUINE), secrets=SECRET, audience=AUDIENCE,
                                     now=GENUINE["now"], sts_endpoint=silent_sts, timeout=0.5))
    assert e.value.reason == "sts-unavailable"


def test_an_answer_is_read_up_to_16_kib(fake_sts):
    # Well-formed and genuine if read whole; past 16 KiB of leading blanks nothing of it is read.
    answer = dict(GENUINE["sts"], body=" " * (16 << 10) + GENUINE["sts"]["body"])
    fake_sts.serve(answer)
    with pytest.raises(alv.VerificationError) as e:
        verify(sts_endpoint=fake_sts.url)
    assert e.value.reason == "sts-answer"


def test_a_flood_of_proofs_waits_its_turn_then_is_busy(fake_sts, monkeypatch):
    monkeypatch.setattr(_sts, "QUEUE_WAIT", 0.2)
    fake_sts.serve(GENUINE["sts"])
    taken = 0
    while _sts._threads.acquire(blocking=False):
        taken += 1
    try:
        assert taken == _sts.MAX_CONCURRENT
        with pytest.raises(alv.VerificationError) as e:
            verify(sts_endpoint=fake_sts.url)
        assert (e.value.reason, e.value.retryable) == ("busy", True)
        assert fake_sts.hits == 0
    finally:
        for _ in range(taken):
            _sts._threads.release()
    assert verify(sts_endpoint=fake_sts.url).caller


def test_the_async_bound_is_per_event_loop(fake_sts, monkeypatch):
    monkeypatch.setattr(_sts, "QUEUE_WAIT", 0.2)
    fake_sts.serve(GENUINE["sts"])

    async def flood():
        sem = _sts._loop_semaphore()
        for _ in range(_sts.MAX_CONCURRENT):
            await sem.acquire()
        with pytest.raises(alv.VerificationError) as e:
            await alv.verify_async(GENUINE["headers"], body_of(GENUINE), secrets=SECRET, audience=AUDIENCE,
                                   now=GENUINE["now"], sts_endpoint=fake_sts.url)
        return e.value.reason
    assert asyncio.run(flood()) == "busy"
    assert fake_sts.hits == 0


# --- Reassembler ---------------------------------------------------------------------------------------------

PARTS = [json.loads(p["body"]) for p in next(v for v in VECTORS["reassembly"] if v["name"] == "reassembly/in-order")["parts"]]


def other_split(n, index=1):
    """Part `index` of a split of another event (its own eventId)."""
    p = json.loads(json.dumps(PARTS[index - 1]))
    p["data"]["eventId"] = f"msg_{n:032x}"
    return p


def test_open_splits_are_bounded_and_retryable():
    r = alv.Reassembler(max_open_splits=2)
    assert r.add(other_split(1), 100) is None and r.add(other_split(2), 100) is None
    with pytest.raises(alv.VerificationError) as e:
        r.add(other_split(3), 100)
    assert (e.value.reason, e.value.retryable) == ("reassembly-full", True)
    # Parts of splits already open are still taken.
    assert r.add(other_split(1, 2), 100) is None and r.open_splits == 2


def test_bytes_held_are_bounded():
    r = alv.Reassembler(max_bytes=1000)
    r.add(other_split(1), 600)
    with pytest.raises(alv.VerificationError) as e:
        r.add(other_split(2), 600)
    assert e.value.reason == "reassembly-full"
    assert r.bytes_held == 600


def test_a_split_over_16_mib_is_dropped():
    r = alv.Reassembler(max_bytes=1 << 30)
    r.add(PARTS[0], 10 << 20)
    with pytest.raises(alv.VerificationError) as e:
        r.add(PARTS[1], 7 << 20)
    assert e.value.reason == "part-set-size" and r.open_splits == 0 and r.bytes_held == 0


def test_incomplete_splits_expire():
    clock = [0.0]
    r = alv.Reassembler(ttl=60, clock=lambda: clock[0])
    r.add(PARTS[0], 10)
    r.add(PARTS[1], 10)
    clock[0] = 61
    assert r.add(other_split(9), 10) is None
    assert r.open_splits == 1 and r.bytes_held == 10, "the first split was dropped"
    assert r.add(PARTS[2], 10) is None, "its last part alone does not complete it"


def test_a_completed_split_is_not_reopened_by_a_late_duplicate():
    r = alv.Reassembler()
    whole = [r.add(p, 10) for p in PARTS][-1]
    assert whole is not None and "part" not in whole["data"]
    assert r.add(PARTS[1], 10) is None and r.open_splits == 0 and r.bytes_held == 0


def test_parts_are_checked_before_they_are_held():
    r = alv.Reassembler()
    bad = json.loads(json.dumps(PARTS[0]))
    bad["data"]["part"]["set"] = "0123456789ABCDEF"
    with pytest.raises(alv.VerificationError) as e:
        r.add(bad, 10)
    assert e.value.reason == "part-set" and r.open_splits == 0


def test_a_body_nested_too_deeply_is_refused_as_an_event():
    """json.loads recurses: a body nested deeper than Python's recursion limit (an unknown field is enough) is
    refused with `event`, never with RecursionError (a provider's handler would answer 500 to it)."""
    from account_link_verify import _core
    deep = "[" * 100_000 + "]" * 100_000
    text = body_of(GENUINE)
    with pytest.raises(alv.VerificationError) as e:
        _core.parse_event(text.decode().replace('{"type":', '{"x":' + deep + ',"type":', 1))
    assert e.value.reason == "event" and "nested too deeply" in str(e.value)
