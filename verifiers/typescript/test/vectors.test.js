// Every vector of verifiers/vectors.json through account-link-verify: the outcome (delivery id and caller, or
// reason and retryability) and the number of requests STS received; the reassembly vectors; the tables the
// vectors carry (reasons, limits, envelope fields, STS endpoints).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  CONFLICTS, ENVELOPE_FIELDS, LIMITS, REASONS, RETRYABLE, Reassembler, VerificationError, verify, verifySns,
} from '../index.js';
import { PARTITIONS, REGIONS, stsEndpoint } from '../lib/partitions.js';
import { VECTORS, bodyOf, startFakeSts } from './support.js';

function run(v, stsEndpoint) {
  const { config } = v;
  if (v.channel === 'callback') {
    return verify({
      headers: v.headers, body: bodyOf(v), secrets: config.secrets.length ? config.secrets : undefined,
      audience: config.audience ?? undefined, mode: config.mode, tolerance: config.tolerance, now: v.now, stsEndpoint,
    });
  }
  return verifySns({
    message: bodyOf(v), attributes: v.attributes, audience: config.audience, tolerance: config.tolerance, now: v.now, stsEndpoint,
  });
}

describe('delivery vectors', () => {
  let fake;
  before(async () => {
    fake = await startFakeSts();
  });
  after(() => fake.close());

  for (const v of VECTORS.deliveries) {
    test(v.name, async () => {
      fake.serve(v.sts);
      const { expect } = v;
      if (expect.ok) {
        const event = await run(v, fake.url);
        assert.equal(event.deliveryId, expect.deliveryId);
        assert.equal(event.caller?.arn ?? null, expect.caller);
        assert.deepEqual(event, JSON.parse(bodyOf(v).toString()));
      } else {
        await assert.rejects(run(v, fake.url), (e) => {
          assert.ok(e instanceof VerificationError, String(e));
          assert.deepEqual([e.reason, e.retryable], [expect.reason, expect.retryable], e.message);
          return true;
        });
      }
      assert.equal(fake.hits, v.sts === null ? 0 : 1);
    });
  }
});

describe('reassembly vectors', () => {
  for (const v of VECTORS.reassembly) {
    test(v.name, () => {
      const r = new Reassembler();
      const { expect, parts } = v;
      let last = null;
      for (const [i, p] of parts.entries()) {
        const event = JSON.parse(p.body);
        if (!expect.ok && expect.at === i) {
          assert.throws(() => r.add(event, p.size), (e) => e instanceof VerificationError && e.reason === expect.reason);
          return;
        }
        last = r.add(event, p.size);
        assert.ok(last === null || i === parts.length - 1, `part ${i} completed the event early`);
      }
      assert.ok(expect.ok);
      assert.deepEqual(last, expect.whole);
    });
  }
});

test('the vectors cover the contract', () => {
  assert.ok(VECTORS.deliveries.length >= 100 && VECTORS.reassembly.length >= 15);
  assert.deepEqual(new Set(VECTORS.reasons.map((r) => r.word)), new Set(REASONS));
  assert.deepEqual(new Set(VECTORS.reasons.filter((r) => r.retryable).map((r) => r.word)), new Set(RETRYABLE));
  assert.deepEqual(new Set(CONFLICTS), new Set(['link-id', 'stack-mismatch']));
  assert.ok(CONFLICTS.every((r) => REASONS.includes(r)));
  assert.deepEqual([...ENVELOPE_FIELDS], VECTORS.envelopeFields);
  assert.deepEqual({ ...LIMITS }, VECTORS.limits);
});

test("the STS endpoints are link-contract's", () => {
  const want = Object.fromEntries(VECTORS.stsEndpoints.map((e) => [e.host, [e.partition, e.signingRegion]]));
  const got = {};
  for (const p of PARTITIONS) {
    const hosts = [`sts.${p.dnsSuffix}`];
    for (const r of REGIONS[p.name] ?? []) hosts.push(`sts.${r}.${p.dnsSuffix}`, `sts-fips.${r}.${p.dnsSuffix}`);
    for (const host of hosts) {
      const e = stsEndpoint(host);
      if (e) got[host] = [e.partition.name, e.signingRegion];
    }
  }
  assert.deepEqual(got, want);
  const refused = VECTORS.stsHostsRefused;
  assert.ok(refused.length >= 100 && refused.includes('sts-fips.cn-north-1.amazonaws.com.cn'));
  assert.deepEqual(refused.filter((h) => stsEndpoint(h) !== null), []);
  for (const host of ['sts.zz-fake-9.amazonaws.com', 'sts.eu-west-1.amazonaws.com.evil.example', 'sts.amazonaws.com.cn',
    'sts-fips.cn-north-1.amazonaws.com.cn', 'sts.EU-WEST-1.amazonaws.com', '127.0.0.1', '']) {
    assert.equal(stsEndpoint(host), null, host);
  }
});
