// What the vectors cannot express: configuration errors, header forms, STS out of reach or slow, the bound on
// proofs sent at once, and the reassembler's bounds.

import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';

import { CONFLICTS, Reassembler, VerificationError, verify, verifySns } from '../index.js';
import { parseEvent, repeatedKeys } from '../lib/core.js';
import { limits } from '../lib/sts.js';
import { VECTORS, bodyOf, startFakeSts } from './support.js';

const byName = Object.fromEntries(VECTORS.deliveries.map((v) => [v.name, v]));
const GENUINE = byName['callback/hmac-and-proof/genuine'];
const SECRET = GENUINE.config.secrets[0];
const AUDIENCE = GENUINE.config.audience;
const options = (extra = {}, v = GENUINE) => ({
  headers: v.headers, body: bodyOf(v), secrets: SECRET, audience: AUDIENCE, now: v.now, ...extra,
});
const reason = (want, retryable = false) => (e) => {
  assert.ok(e instanceof VerificationError, String(e));
  assert.deepEqual([e.reason, e.retryable], [want, retryable], e.message);
  return true;
};

async function closedPort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}/`;
}

describe('with a fake STS', () => {
  let fake;
  before(async () => {
    fake = await startFakeSts();
  });
  after(() => fake.close());

  for (const [extra, words] of [
    [{ mode: 'hmac' }, 'mode must be one of'],
    [{ secrets: undefined }, 'secrets: mode hmac-and-proof needs'],
    [{ audience: undefined }, 'audience: mode hmac-and-proof needs'],
    [{ secrets: 'abc' }, 'secret #1 does not start with whsec_'],
    [{ secrets: [SECRET, 'whsec_!!'] }, 'secret #2 is not valid base64'],
    [{ secrets: 'whsec_AAAA' }, 'secret #1 is 3 bytes long'],
    [{ stsEndpoint: 'https://sts.evil.example/' }, 'not a loopback http(s) URL'],
    [{ stsEndpoint: 'http://10.0.0.1:5000/' }, 'not a loopback http(s) URL'],
    [{ stsEndpoint: 'file:///etc/passwd' }, 'not a loopback http(s) URL'],
    [{ tolerance: 1.5 }, 'tolerance must be'],
  ]) {
    test(`configuration: ${words}`, async () => {
      await assert.rejects(verify(options(extra)), (e) => e instanceof TypeError && e.message.includes(words));
    });
  }

  test('the clock is now unless given', async () => {
    fake.serve(GENUINE.sts);
    await assert.rejects(verify(options({ now: undefined, stsEndpoint: fake.url })), reason('timestamp'));
    assert.equal(fake.hits, 0);
  });

  test('headers in any form', async () => {
    const entries = Object.entries(GENUINE.headers);
    for (const headers of [new Headers(GENUINE.headers), new Map(entries), entries,
      Object.fromEntries(entries.map(([k, v]) => [k.toUpperCase(), v])),
      { ...Object.fromEntries(entries), 'webhook-id': [GENUINE.headers['webhook-id'], 'msg_second'] }]) {
      fake.serve(GENUINE.sts);
      const event = await verify(options({ headers, stsEndpoint: fake.url }));
      assert.equal(event.deliveryId, GENUINE.expect.deliveryId);
    }
  });

  test("the README's node:http receiver takes the delivery as it arrives", async () => {
    const server = createHttpServer(async (req, res) => {
      const chunks = [];
      for await (const c of req) chunks.push(c);
      try {
        const event = await verify({ headers: req.headers, body: Buffer.concat(chunks), secrets: SECRET, audience: AUDIENCE, now: GENUINE.now, stsEndpoint: fake.url });
        res.writeHead(200).end(event.caller.arn);
      } catch (e) {
        res.writeHead(e.retryable ? 503 : CONFLICTS.includes(e.reason) ? 409 : 401).end(e.reason);
      }
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${server.address().port}/hooks/account-link`;
      fake.serve(GENUINE.sts);
      const ok = await fetch(url, { method: 'POST', headers: GENUINE.headers, body: GENUINE.body });
      assert.deepEqual([ok.status, await ok.text()], [200, GENUINE.expect.caller]);
      fake.serve(GENUINE.sts);
      const forged = await fetch(url, { method: 'POST', headers: GENUINE.headers, body: GENUINE.body.replace('123456789012', '210987654321') });
      assert.deepEqual([forged.status, await forged.text()], [401, 'signature']);
      assert.equal(fake.hits, 0);
      // Another stack's link, signed and proven: refused once STS said who sent it.
      const taking = byName['callback/hmac-and-proof/claim-link-id-of-another-stack'];
      fake.serve(taking.sts);
      const conflict = await fetch(url, { method: 'POST', headers: taking.headers, body: taking.body });
      assert.deepEqual([conflict.status, await conflict.text()], [409, 'link-id']);
      assert.equal(fake.hits, 1);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  test('a body as a string or an ArrayBuffer', async () => {
    for (const body of [GENUINE.body, new TextEncoder().encode(GENUINE.body).buffer]) {
      fake.serve(GENUINE.sts);
      assert.equal((await verify(options({ body, stsEndpoint: fake.url }))).caller.arn, GENUINE.expect.caller);
    }
  });

  test('SNS attributes as SNS and SQS write them', async () => {
    const v = byName['sns/genuine'];
    const proof = v.attributes.accountLinkProof;
    for (const attributes of [{ accountLinkProof: { Type: 'String', Value: proof } },
      { accountLinkProof: { DataType: 'String', StringValue: proof } }]) {
      fake.serve(v.sts);
      const event = await verifySns({ message: v.body, attributes, audience: AUDIENCE, now: v.now, stsEndpoint: fake.url });
      assert.equal(event.caller.arn, v.expect.caller);
      assert.deepEqual(Object.keys(event), ['type', 'timestamp', 'data'], 'deliveryId and caller are not in its JSON');
    }
  });

  test('an answer is read up to 16 KiB', async () => {
    // Well-formed and genuine if read whole; past 16 KiB of leading blanks nothing of it is read.
    fake.serve({ ...GENUINE.sts, body: ' '.repeat(16 << 10) + GENUINE.sts.body });
    await assert.rejects(verify(options({ stsEndpoint: fake.url })), reason('sts-answer'));
    fake.serve({ ...GENUINE.sts, body: ' '.repeat(15 << 10) + GENUINE.sts.body });
    assert.ok((await verify(options({ stsEndpoint: fake.url }))).caller);
  });

  test('a flood of proofs waits its turn, then is busy', async () => {
    fake.serve(GENUINE.sts);
    const saved = { ...limits };
    Object.assign(limits, { maxConcurrent: 0, queueWait: 100 });
    try {
      await assert.rejects(verify(options({ stsEndpoint: fake.url })), reason('busy', true));
      assert.equal(fake.hits, 0);
    } finally {
      Object.assign(limits, saved);
    }
    assert.ok((await verify(options({ stsEndpoint: fake.url }))).caller);
  });

  test('proofs beyond the bound wait for a slot', async () => {
    const saved = { ...limits };
    Object.assign(limits, { maxConcurrent: 1, queueWait: 2000 });
    try {
      fake.serve(GENUINE.sts);
      const events = await Promise.all([1, 2, 3].map(() => verify(options({ stsEndpoint: fake.url }))));
      assert.equal(events.length, 3);
      assert.equal(fake.hits, 3);
    } finally {
      Object.assign(limits, saved);
    }
  });
});

test('STS out of reach is retryable', async () => {
  await assert.rejects(verify(options({ stsEndpoint: await closedPort() })), reason('sts-unavailable', true));
});

test('a silent STS times out', async () => {
  const sockets = [];
  const server = createServer((s) => sockets.push(s));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const started = Date.now();
    await assert.rejects(verify(options({ stsEndpoint: `http://127.0.0.1:${server.address().port}/`, timeoutMs: 300 })),
      (e) => reason('sts-unavailable', true)(e) && e.message.includes('no answer in time'));
    assert.ok(Date.now() - started < 3000);
  } finally {
    sockets.forEach((s) => s.destroy());
    await new Promise((resolve) => server.close(resolve));
  }
});

describe('reassembler', () => {
  const PARTS = VECTORS.reassembly.find((v) => v.name === 'reassembly/in-order').parts.map((p) => JSON.parse(p.body));
  const otherSplit = (n, index = 1) => {
    const p = structuredClone(PARTS[index - 1]);
    p.data.eventId = `msg_${n.toString(16).padStart(32, '0')}`;
    return p;
  };

  test('open splits are bounded, and retryable', () => {
    const r = new Reassembler({ maxOpenSplits: 2 });
    assert.equal(r.add(otherSplit(1), 100), null);
    assert.equal(r.add(otherSplit(2), 100), null);
    assert.throws(() => r.add(otherSplit(3), 100), reason('reassembly-full', true));
    assert.equal(r.add(otherSplit(1, 2), 100), null, 'parts of open splits are still taken');
    assert.equal(r.openSplits, 2);
  });

  test('bytes held are bounded', () => {
    const r = new Reassembler({ maxBytes: 1000 });
    r.add(otherSplit(1), 600);
    assert.throws(() => r.add(otherSplit(2), 600), reason('reassembly-full', true));
    assert.equal(r.bytesHeld, 600);
  });

  test('a split over 16 MiB is dropped', () => {
    const r = new Reassembler({ maxBytes: 2 ** 30 });
    r.add(PARTS[0], 10 << 20);
    assert.throws(() => r.add(PARTS[1], 7 << 20), reason('part-set-size'));
    assert.deepEqual([r.openSplits, r.bytesHeld], [0, 0]);
  });

  test('incomplete splits expire', () => {
    let now = 0;
    const r = new Reassembler({ ttl: 60, clock: () => now });
    r.add(PARTS[0], 10);
    r.add(PARTS[1], 10);
    now = 61;
    assert.equal(r.add(otherSplit(9), 10), null);
    assert.deepEqual([r.openSplits, r.bytesHeld], [1, 10], 'the first split was dropped');
    assert.equal(r.add(PARTS[2], 10), null, 'its last part alone does not complete it');
  });

  test('a completed split is not reopened by a late duplicate', () => {
    const r = new Reassembler();
    const whole = PARTS.map((p) => r.add(p, 10)).at(-1);
    assert.ok(whole && whole.data.part === undefined);
    assert.equal(r.add(PARTS[1], 10), null);
    assert.deepEqual([r.openSplits, r.bytesHeld], [0, 0]);
  });

  test('parts are checked before they are held', () => {
    const r = new Reassembler();
    const bad = structuredClone(PARTS[0]);
    bad.data.part.set = '0123456789ABCDEF';
    assert.throws(() => r.add(bad, 10), reason('part-set'));
    assert.equal(r.openSplits, 0);
  });
});

test('repeated keys are found however deep a body is nested, without recursion', () => {
  const deep = `${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}`;
  const text = bodyOf(GENUINE).toString().replace('{"type":', `{"x":${deep},"type":`);
  assert.equal(repeatedKeys(text), null);
  assert.equal(parseEvent(text).data.accountId, '123456789012');
  const repeated = repeatedKeys(`{"a":[{"b":1}, {"b":{"c":"\\"","c":2}}],"d":{"e":1},"d":{"f":1,"f":2}}`);
  assert.deepEqual([...repeated.repeated], ['d']);
  assert.deepEqual([...repeated.members.get('a').members.get(1).members.get('b').repeated], ['c']);
  // The last of a repeated key is what JSON.parse keeps, and what the tree describes.
  assert.deepEqual([...repeated.members.get('d').repeated], ['f']);
});
