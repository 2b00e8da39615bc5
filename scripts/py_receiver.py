#!/usr/bin/env python3
"""A provider endpoint written the way a Python team would: the `standardwebhooks` package verifies each
delivery; verified payloads are appended to --out as JSON lines (204), anything else gets 401.

  py_receiver.py --secret whsec_... --out FILE [--port 0]
Prints "py-receiver listening on http://127.0.0.1:PORT" on stderr once ready.
"""
import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--secret", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args()
    wh = Webhook(a.secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                payload = wh.verify(body, headers)
            except WebhookVerificationError as e:
                self.send_response(401)
                self.end_headers()
                self.wfile.write(str(e).encode())
                return
            with open(a.out, "a") as f:
                f.write(json.dumps({"webhookId": headers["webhook-id"], "payload": payload}) + "\n")
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    print(f"py-receiver listening on http://127.0.0.1:{server.server_address[1]}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
