#!/usr/bin/env python3
"""Makes an account-link proof of the account with botocore's SigV4 signer: an implementation independent
of the Rust function's (aws-sigv4), for the interoperability tests.

  sts_proof.py --access-key AK --secret-key SK [--session-token T] --region R \\
      --audience A --event-id ID [--time YYYYMMDDTHHMMSSZ] [--dns-suffix amazonaws.com] < body

prints {"proof": "v1.<base64url JSON>", "authorization": "...", "amzDate": "..."}: a POST of
Action=GetCallerIdentity&Version=2011-06-15 to https://sts.<region>.<dns suffix>/ whose signed headers bind
the audience, the event id and the SHA-256 of the body read from standard input. --time fixes the
signing time (default: now). See docs/provider-events.md, "Proof of the account".
"""
import argparse
import base64
import datetime
import hashlib
import json
import sys
from unittest import mock

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

BODY = "Action=GetCallerIdentity&Version=2011-06-15"
CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"


def make(args, body: bytes) -> dict:
    host = f"sts.{args.region}.{args.dns_suffix}"
    headers = {
        "Content-Type": CONTENT_TYPE,
        "Host": host,
        "X-Account-Link-Audience": args.audience,
        "X-Account-Link-Event-Id": args.event_id,
        "X-Account-Link-Body-Sha256": hashlib.sha256(body).hexdigest(),
    }
    request = AWSRequest(method="POST", url=f"https://{host}/", data=BODY, headers=headers)
    auth = SigV4Auth(Credentials(args.access_key, args.secret_key, args.session_token), "sts", args.region)
    if args.time:
        at = datetime.datetime.strptime(args.time, "%Y%m%dT%H%M%SZ")
        with mock.patch("botocore.auth.datetime") as dt:
            dt.datetime.utcnow.return_value = at
            auth.add_auth(request)
    else:
        auth.add_auth(request)
    signed = {k.lower(): v for k, v in request.headers.items()}
    proof = {"method": "POST", "url": f"https://{host}/", "headers": signed, "body": BODY}
    encoded = base64.urlsafe_b64encode(json.dumps(proof).encode()).decode().rstrip("=")
    return {"proof": "v1." + encoded, "authorization": signed["authorization"], "amzDate": signed["x-amz-date"]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--access-key", required=True)
    p.add_argument("--secret-key", required=True)
    p.add_argument("--session-token")
    p.add_argument("--region", required=True)
    p.add_argument("--dns-suffix", default="amazonaws.com")
    p.add_argument("--audience", required=True)
    p.add_argument("--event-id", required=True)
    p.add_argument("--time", help="signing time, YYYYMMDDTHHMMSSZ (default: now)")
    args = p.parse_args()
    print(json.dumps(make(args, sys.stdin.buffer.read())))


if __name__ == "__main__":
    main()
