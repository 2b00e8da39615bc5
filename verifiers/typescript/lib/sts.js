// Sending a checked proof to STS (link_registry::proof::ProofVerifier): exactly as signed, no redirects, a
// short timeout, a bounded answer, and a bounded number at a time so that a flood of deliveries cannot make the
// receiver hammer STS.

import { isIP } from 'node:net';

import { STS_BODY, checkCaller, fail, parseCallerIdentity, parseStsError } from './core.js';

/** STS's answers are small; nothing beyond this is read. */
export const MAX_ANSWER_BYTES = 16 * 1024;
/** Proofs sent to STS at once per process; more wait up to `queueWait` ms, then fail with reason `busy`. */
export const limits = { maxConcurrent: 16, queueWait: 2000 };

let active = 0;
const waiting = [];

async function acquire() {
  if (active < limits.maxConcurrent) {
    active += 1;
    return;
  }
  await new Promise((resolve, reject) => {
    const waiter = { resolve };
    waiter.timer = setTimeout(() => {
      waiting.splice(waiting.indexOf(waiter), 1);
      reject(fail('busy', 'too many proofs are being verified at once; try again later'));
    }, limits.queueWait);
    waiting.push(waiter);
  });
}

function release() {
  const next = waiting.shift();
  if (next) {
    clearTimeout(next.timer);
    next.resolve(); // the slot passes on
  } else {
    active -= 1;
  }
}

/** The STS stand-in for tests: an http(s) URL of a loopback host, or a TypeError. */
export function checkEndpoint(url) {
  if (url == null) return null;
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    parsed = null;
  }
  const host = parsed?.hostname.replace(/^\[|\]$/g, '') ?? '';
  const loopback = isIP(host) === 4 ? host.startsWith('127.') : isIP(host) === 6 ? host === '::1' : host.toLowerCase() === 'localhost';
  if (!parsed || !['http:', 'https:'].includes(parsed.protocol) || !loopback) {
    throw new TypeError(`stsEndpoint ${url} is not a loopback http(s) URL; it exists for tests only`);
  }
  return url;
}

async function readCapped(response) {
  if (!response.body) return Buffer.alloc(0);
  const reader = response.body.getReader();
  const chunks = [];
  let size = 0;
  while (size < MAX_ANSWER_BYTES) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.length;
  }
  await reader.cancel().catch(() => {});
  return Buffer.concat(chunks).subarray(0, MAX_ANSWER_BYTES);
}

function unreachable(host, e) {
  const why = e?.name === 'TimeoutError' || e?.name === 'AbortError' ? 'no answer in time'
    : e?.cause?.code === 'ECONNREFUSED' ? 'could not connect' : 'the request failed';
  return fail('sts-unavailable', `STS at ${host} could not be reached: ${why}`);
}

/** Sends the replay (from checkProof) and checks STS's answer against `expected`: the caller, or a throw. */
export async function send(replay, expected, { endpoint = null, timeoutMs = 5000 } = {}) {
  await acquire();
  try {
    let response;
    let body;
    try {
      // The signal bounds the whole exchange, answer included.
      response = await fetch(endpoint ?? replay.url, {
        method: 'POST', headers: replay.headers, body: STS_BODY, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs),
      });
      if (response.status >= 300 && response.status < 400) {
        await response.body?.cancel().catch(() => {});
        throw fail('sts-redirect', `STS at ${replay.host} answered with a redirect (HTTP ${response.status}); redirects are not followed`);
      }
      body = await readCapped(response);
    } catch (e) {
      if (e?.name === 'VerificationError') throw e;
      throw unreachable(replay.host, e);
    }
    const { status } = response;
    if (status < 200 || status >= 300) {
      const error = parseStsError(body);
      if (error !== null && status >= 400 && status < 500) {
        const reason = error.code === 'Throttling' ? 'sts-unavailable' : 'sts-refused';
        throw fail(reason, `STS refused the proof (HTTP ${status}, ${error.code.slice(0, 64)}): ${error.message.slice(0, 200)}`);
      }
      throw fail(status >= 500 || status === 429 ? 'sts-unavailable' : 'sts-refused', `STS at ${replay.host} answered HTTP ${status}`);
    }
    return checkCaller(parseCallerIdentity(body), expected);
  } finally {
    release();
  }
}
