"""A Lambda Runtime API emulator (the part of Lambda a runtime talks to), for the benchmarks and the console test.

It serves `GET /2018-06-01/runtime/invocation/next` (long poll), `POST .../invocation/{id}/response`,
`POST .../invocation/{id}/error` and `POST /2018-06-01/runtime/init/error`, on loopback, HTTP/1.1 with
keep-alive (what both the Rust `lambda_runtime` and `awslambdaric` expect). One instance serves one function
process: a runtime that was killed can never take an invocation meant for its successor.

    api = RuntimeApi(); api.start()
    inv = api.invoke(event_dict)            # queued; the runtime's next poll takes it
    result = inv.wait(timeout=60)           # {"kind": "response"|"error", "body": bytes}
    api.close()

Times are `time.perf_counter()` values, comparable with the other bench servers in the same process.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class QuietServer(ThreadingHTTPServer):
    """A threaded HTTP/1.1 server that does not print a traceback when a killed client drops its
    connection."""

    daemon_threads = True
    request_queue_size = 64

    def get_request(self):
        sock, addr = self.socket.accept()
        # Headers and body are written separately: without this, Nagle + delayed ACK stall 40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, addr

    def handle_error(self, request, client_address):
        import sys
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, OSError)):
            super().handle_error(request, client_address)


PREFIX = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:us-west-2:123456789012:function:account-link"


class Invocation:
    def __init__(self, body: bytes, deadline_ms: int):
        self.request_id = str(uuid.uuid4())
        self.body = body
        self.deadline_ms = deadline_ms
        self.enqueued_at = time.perf_counter()
        self.delivered_at: float | None = None
        self.finished_at: float | None = None
        self.kind: str | None = None
        self.result: bytes | None = None
        self._done = threading.Event()

    def finish(self, kind: str, body: bytes) -> None:
        self.finished_at = time.perf_counter()
        self.kind, self.result = kind, body
        self._done.set()

    def wait(self, timeout: float) -> dict:
        if not self._done.wait(timeout):
            raise TimeoutError(f"invocation {self.request_id} got no result in {timeout:.0f} s")
        return {"kind": self.kind, "body": self.result}

    @property
    def done(self) -> bool:
        return self._done.is_set()


class RuntimeApi:
    def __init__(self, host: str = "127.0.0.1"):
        self._queue: deque[Invocation] = deque()
        self._by_id: dict[str, Invocation] = {}
        self._cond = threading.Condition()
        self._closing = False
        self.first_poll_at: float | None = None
        self.init_error: bytes | None = None
        self.polls = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, body: bytes = b"", headers: dict | None = None):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def do_GET(self):
                if self.path != f"{PREFIX}/invocation/next":
                    return self._send(404, b'{"errorType":"NotFound"}')
                inv = api._next()
                if inv is None:  # shutting down
                    self.close_connection = True
                    return self._send(500, b'{"errorType":"ShuttingDown"}')
                self._send(
                    200,
                    inv.body,
                    {
                        "Lambda-Runtime-Aws-Request-Id": inv.request_id,
                        "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
                        "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                        "Lambda-Runtime-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
                    },
                )

            def do_POST(self):
                body = self._body()
                if self.path == f"{PREFIX}/init/error":
                    with api._cond:
                        api.init_error = body
                        for inv in list(api._queue):
                            inv.finish("init_error", body)
                        api._cond.notify_all()
                    return self._send(202, b'{"status":"OK"}')
                parts = self.path[len(PREFIX) :].strip("/").split("/")
                if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                    inv = api._by_id.get(parts[1])
                    if inv is None:
                        return self._send(400, b'{"errorType":"InvalidRequestID"}')
                    inv.finish(parts[2], body)
                    return self._send(202, b'{"status":"OK"}')
                self._send(404, b'{"errorType":"NotFound"}')

        self._server = QuietServer((host, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> "RuntimeApi":
        self._thread.start()
        return self

    def invoke(self, event, deadline_s: float = 300.0) -> Invocation:
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        inv = Invocation(body, int(time.time() * 1000 + deadline_s * 1000))
        with self._cond:
            if self.init_error is not None:
                inv.finish("init_error", self.init_error)
                return inv
            self._by_id[inv.request_id] = inv
            self._queue.append(inv)
            self._cond.notify_all()
        return inv

    def _next(self) -> Invocation | None:
        with self._cond:
            self.polls += 1
            if self.first_poll_at is None:
                self.first_poll_at = time.perf_counter()
            while not self._queue and not self._closing:
                self._cond.wait(0.5)
            if self._closing:
                return None
            inv = self._queue.popleft()
            inv.delivered_at = time.perf_counter()
            return inv

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
