"""The proofs in verifiers/vectors.json are genuine SigV4: botocore (scripts/sts_proof.py), given the vectors'
test credentials, signing time, audience, delivery id and body, computes the same authorization header as the
generator (crates/link-contract/examples/vectors)."""

import base64
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "verifiers/vectors.json").read_text())
SCRIPT = ROOT / "scripts/sts_proof.py"


def proof_of(vector):
    carrier = vector.get("headers") or vector.get("attributes") or {}
    text = carrier.get("account-link-proof") or carrier.get("accountLinkProof")
    return json.loads(base64.urlsafe_b64decode(text[3:] + "=" * (-len(text[3:]) % 4)))


def regional(vector):
    """Genuine deliveries whose proof names a regional endpoint (what sts_proof.py signs for)."""
    if not vector["expect"]["ok"] or vector["sts"] is None:
        return False
    host = proof_of(vector)["headers"]["host"]
    return host.startswith("sts.") and host.count(".") >= 3


def distinct(vectors):
    """One vector per endpoint, signing time and channel: each botocore run takes a second."""
    seen, out = set(), []
    for v in vectors:
        h = proof_of(v)["headers"]
        key = (h["host"], h["x-amz-date"], v["channel"])
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out


GENUINE = distinct(v for v in VECTORS["deliveries"] if regional(v))


def test_there_are_genuine_proofs_to_compare():
    assert len(GENUINE) >= 4


@pytest.mark.parametrize("vector", GENUINE, ids=[v["name"] for v in GENUINE])
def test_botocore_signs_the_vectors_proofs_alike(vector):
    proof = proof_of(vector)
    headers = proof["headers"]
    _, region, suffix = headers["host"].split(".", 2)
    creds = VECTORS["testCredentials"]
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--access-key", creds["accessKeyId"], "--secret-key", creds["secretAccessKey"],
         "--session-token", creds["sessionToken"], "--region", region, "--dns-suffix", suffix,
         "--audience", headers["x-account-link-audience"], "--event-id", headers["x-account-link-event-id"],
         "--time", headers["x-amz-date"]],
        input=vector["body"].encode(), capture_output=True, check=True)
    theirs = json.loads(run.stdout)
    assert theirs["authorization"] == headers["authorization"]
