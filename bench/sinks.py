"""The two HTTPS endpoints a link invocation ends at, for benchmarks: CloudFormation's pre-signed S3
`ResponseURL` (PUT) and the provider's webhook (POST /hook). One TLS server (a throwaway CA and a
certificate for 127.0.0.1) serves both, because CloudFormation's ResponseURL is always https and crhelper
only speaks https; both functions trust the CA through SSL_CERT_FILE (the system bundle plus this CA).

Every request's server-side time (headers read to response written) is recorded, and so is the CPU the
server thread spent in each TLS handshake: both are backend time, not the handler's.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from linksupport.runtime_api import QuietServer

SYSTEM_BUNDLE_CANDIDATES = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"]


def make_tls_files(directory: str) -> tuple[str, str, str]:
    """Writes a CA, a leaf certificate for 127.0.0.1/localhost (ECDSA P-256) and a trust bundle (the
    system roots plus the CA, so each client loads a realistic number of roots). Returns (cert, key, bundle)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "account-link bench CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path, bundle_path = (os.path.join(directory, n) for n in ("leaf.pem", "leaf.key", "bundle.pem"))
    with open(cert_path, "wb") as f:
        f.write(leaf.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    system = next((p for p in SYSTEM_BUNDLE_CANDIDATES if os.path.exists(p)), None)
    with open(bundle_path, "wb") as f:
        if system:
            with open(system, "rb") as s:
                f.write(s.read().rstrip(b"\n") + b"\n")
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path, bundle_path


@dataclass
class Received:
    start: float  # headers read
    end: float  # response written
    method: str
    path: str
    body_bytes: int
    body_read_at: float = 0.0
    headers: dict = field(default_factory=dict)
    body: bytes | None = None


class Sinks:
    def __init__(self, cert: str, key: str, host: str = "127.0.0.1"):
        self.received: list[Received] = []
        self.handshakes: list[tuple[float, float]] = []  # (wall time done, server CPU seconds)
        self.last_hook: Received | None = None
        self._answers: dict[str, Received] = {}
        self._cond = threading.Condition()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        sinks = self

        class Server(QuietServer):

            def get_request(self):
                sock, addr = super().get_request()
                # The handshake happens in the request's thread (setup), not in the accept loop.
                return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):
                cpu = time.thread_time()
                try:
                    self.request.do_handshake()
                finally:
                    with sinks._cond:
                        sinks.handshakes.append((time.perf_counter(), time.thread_time() - cpu))
                super().setup()

            def _handle(self, method: str):
                start = time.perf_counter()
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                rec = Received(start, 0.0, method, self.path.split("?", 1)[0], len(body), time.perf_counter())
                is_answer = method == "PUT" and rec.path.startswith("/cfn/")
                if is_answer:
                    rec.headers = {k.lower(): v for k, v in self.headers.items()}
                    rec.body = body
                code = 200 if is_answer or (method == "POST" and rec.path == "/hook") else 404
                self.send_response(code)
                if is_answer:
                    self.send_header("ETag", '"d41d8cd98f00b204e9800998ecf8427e"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.wfile.flush()
                rec.end = time.perf_counter()
                with sinks._cond:
                    sinks.received.append(rec)
                    if is_answer:
                        sinks._answers[rec.path[len("/cfn/"):]] = rec
                        sinks._cond.notify_all()
                    elif rec.path == "/hook":
                        # Only the latest webhook body is kept (they can be megabytes).
                        sinks.last_hook = Received(rec.start, rec.end, method, rec.path, len(body), rec.body_read_at,
                                                   {k.lower(): v for k, v in self.headers.items()}, body)

            def do_PUT(self):
                self._handle("PUT")

            def do_POST(self):
                self._handle("POST")

        self._server = Server((host, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"https://{host}:{port}"

    def response_url(self, key: str) -> str:
        """A URL shaped like CloudFormation's pre-signed S3 URL (the query string is a credential)."""
        return (f"{self.base}/cfn/{key}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20261123T120000Z"
                "&X-Amz-SignedHeaders=host&X-Amz-Expires=7200"
                "&X-Amz-Credential=AKIAEXAMPLE%2F20261123%2Fus-west-2%2Fs3%2Faws4_request"
                "&X-Amz-Signature=" + "0" * 64)

    def wait_answer(self, key: str, timeout: float) -> Received:
        deadline = time.monotonic() + timeout
        with self._cond:
            while key not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no CloudFormation answer for {key} within {timeout:.0f} s")
                self._cond.wait(left)
            return self._answers.pop(key)

    def start(self) -> "Sinks":
        self._thread.start()
        return self

    def between(self, t0: float, t1: float) -> list[Received]:
        with self._cond:
            return [r for r in self.received if t0 <= r.start <= t1]

    def handshake_cpu_between(self, t0: float, t1: float) -> float:
        with self._cond:
            return sum(cpu for t, cpu in self.handshakes if t0 <= t <= t1)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
