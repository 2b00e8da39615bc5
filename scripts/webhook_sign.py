#!/usr/bin/env python3
"""Signs a body with the Python `standardwebhooks` package and prints the three headers as JSON.

  webhook_sign.py --secret whsec_... --id msg_... --timestamp UNIX_SECONDS < body
"""
import argparse
import datetime
import json
import sys

from standardwebhooks.webhooks import Webhook


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--secret", required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--timestamp", type=int, required=True)
    a = p.parse_args()
    body = sys.stdin.buffer.read().decode()
    ts = datetime.datetime.fromtimestamp(a.timestamp, tz=datetime.timezone.utc)
    sig = Webhook(a.secret).sign(a.id, ts, body)
    print(json.dumps({"webhook-id": a.id, "webhook-timestamp": str(a.timestamp), "webhook-signature": sig}))


if __name__ == "__main__":
    main()
