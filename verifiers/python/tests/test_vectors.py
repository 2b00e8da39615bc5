"""Every vector of verifiers/vectors.json through account_link_verify, synchronously and with asyncio: the
outcome (delivery id and caller, or reason and retryability) and the number of requests STS received."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

import account_link_verify as alv
from account_link_verify import _core, _partitions
from conftest import VECTORS

DELIVERIES = VECTORS["deliveries"]
REASSEMBLY = VECTORS["reassembly"]


def body_of(v):
    return base64.b64decode(v["bodyBase64"]) if "bodyBase64" in v else v["body"].encode()


def run(v, sts_url, asynchronous=False):
    cfg = v["config"]
    if v["channel"] == "callback":
        kwargs = dict(secrets=cfg["secrets"] or None, audience=cfg["audience"], mode=cfg["mode"],
                      sts_endpoint=sts_url, tolerance=cfg["tolerance"], now=v["now"])
        if asynchronous:
            return asyncio.run(alv.verify_async(v["headers"], body_of(v), **kwargs))
        return alv.verify(v["headers"], body_of(v), **kwargs)
    kwargs = dict(audience=cfg["audience"], sts_endpoint=sts_url, now=v["now"])
    if asynchronous:
        return asyncio.run(alv.verify_sns_async(body_of(v), v["attributes"], **kwargs))
    return alv.verify_sns(body_of(v), v["attributes"], **kwargs)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("v", DELIVERIES, ids=[v["name"] for v in DELIVERIES])
def test_delivery_vector(v, asynchronous, fake_sts):
    fake_sts.serve(v["sts"])
    expect = v["expect"]
    if expect["ok"]:
        event = run(v, fake_sts.url, asynchronous)
        assert event.delivery_id == expect["deliveryId"]
        assert (event.caller.arn if event.caller else None) == expect["caller"]
        assert dict(event) == json.loads(body_of(v))
    else:
        with pytest.raises(alv.VerificationError) as e:
            run(v, fake_sts.url, asynchronous)
        assert (e.value.reason, e.value.retryable) == (expect["reason"], expect["retryable"]), str(e.value)
    assert fake_sts.hits == (0 if v["sts"] is None else 1)


@pytest.mark.parametrize("v", REASSEMBLY, ids=[v["name"] for v in REASSEMBLY])
def test_reassembly_vector(v):
    r = alv.Reassembler()
    expect, parts = v["expect"], v["parts"]
    last = None
    for i, p in enumerate(parts):
        event = json.loads(p["body"])
        if not expect["ok"] and expect["at"] == i:
            with pytest.raises(alv.VerificationError) as e:
                r.add(event, p["size"])
            assert e.value.reason == expect["reason"]
            return
        last = r.add(event, p["size"])
        assert last is None or i == len(parts) - 1, f"part {i} completed the event early"
    assert expect["ok"]
    assert last == expect["whole"]


def test_the_vectors_cover_the_contract():
    assert len(DELIVERIES) >= 100 and len(REASSEMBLY) >= 15
    assert {r["word"] for r in VECTORS["reasons"]} == alv.REASONS
    assert {r["word"] for r in VECTORS["reasons"] if r["retryable"]} == alv.RETRYABLE
    assert alv.CONFLICTS <= alv.REASONS and alv.CONFLICTS == {"link-id", "stack-mismatch"}
    assert list(alv.ENVELOPE_FIELDS) == VECTORS["envelopeFields"]
    limits = VECTORS["limits"]
    assert (limits["toleranceSecs"], limits["maxIdLen"], limits["maxSignatureCandidates"],
            limits["maxSignatureEntries"], limits["maxProofLen"], limits["maxProofAgeSecs"], limits["maxParts"],
            limits["maxSetBytes"], limits["setLen"]) == (
        _core.DEFAULT_TOLERANCE, _core.MAX_ID_LEN, _core.MAX_SIGNATURE_CANDIDATES, _core.MAX_SIGNATURE_ENTRIES,
        _core.MAX_PROOF_LEN, _core.MAX_PROOF_AGE, _core.MAX_PARTS, _core.MAX_SET_BYTES, _core.SET_LEN)


def test_the_sts_endpoints_are_link_contracts():
    """The embedded partition table accepts exactly the STS hosts link-contract accepts, and refuses the ones it
    refuses (FIPS names in partitions without FIPS, regions under another partition's suffix or in none)."""
    want = {e["host"]: (e["partition"], e["signingRegion"]) for e in VECTORS["stsEndpoints"]}
    got = {}
    for p in _partitions.PARTITIONS:
        hosts = [f"sts.{p.dns_suffix}"] + [f"{kind}.{r}.{p.dns_suffix}" for r in _partitions.REGIONS.get(p.name, ())
                                           for kind in ("sts", "sts-fips")]
        for host in hosts:
            e = _partitions.sts_endpoint(host)
            if e is not None:
                got[host] = (e[0].name, e[1])
    assert got == want
    refused = VECTORS["stsHostsRefused"]
    assert len(refused) >= 100 and "sts-fips.cn-north-1.amazonaws.com.cn" in refused
    assert [h for h in refused if _partitions.sts_endpoint(h) is not None] == []
    for host in ("sts.zz-fake-9.amazonaws.com", "sts.eu-west-1.amazonaws.com.evil.example", "sts.amazonaws.com.cn",
                 "sts-fips.cn-north-1.amazonaws.com.cn", "sts.EU-WEST-1.amazonaws.com", "127.0.0.1", ""):
        assert _partitions.sts_endpoint(host) is None, host
