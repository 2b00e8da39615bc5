"""The shared vectors (verifiers/vectors.json, written by `cargo run -p link-contract --example vectors`) and a
local fake STS that serves each vector's answer."""

from __future__ import annotations

import json
import pathlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

VECTORS = json.loads((pathlib.Path(__file__).resolve().parents[2] / "vectors.json").read_text())

SIGNATURE_DOES_NOT_MATCH = (b"<ErrorResponse><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code>"
                            b"<Message>not the request that was signed</Message></Error></ErrorResponse>")


class FakeSts(ThreadingHTTPServer):
    """Answers POST / carrying the vector's expected headers and body with the vector's answer, and anything
    else with SignatureDoesNotMatch, as STS does; counts requests. `answer` is the vector's `sts` (or a dict
    a test builds the same way)."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer = None
        self.hits = 0
        self.lock = threading.Lock()
        self.url = f"http://127.0.0.1:{self.server_address[1]}/"

    def serve(self, answer):
        with self.lock:
            self.answer, self.hits = answer, 0


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _answer(self):
        server: FakeSts = self.server  # type: ignore[assignment]
        with server.lock:
            server.hits += 1
            sts = server.answer
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        want = (sts or {}).get("request", {})
        as_signed = (sts is not None and self.command == "POST" and self.path == "/"
                     and body == want.get("body", "").encode()
                     and all(self.headers.get(k) == v for k, v in want.get("headers", {}).items()))
        if as_signed:
            status, headers, text = sts["status"], sts["headers"], sts["body"].encode()
        else:
            status, headers, text = 403, {"content-type": "text/xml"}, SIGNATURE_DOES_NOT_MATCH
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(text)))
        self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(text)

    do_POST = do_GET = _answer


@pytest.fixture(scope="session")
def fake_sts():
    server = FakeSts()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
