// Verify account-link deliveries in Node with the same checks, in the same order, and with the same reason words
// as link-receiver: the Standard Webhooks headers (webhook-id, the timestamp window, the signature's syntax), the
// proof's presence, the signature (one HMAC per secret, compared in constant time), the event (JSON, schema
// version, every field's type, webhook-id = its delivery id, a timestamp not ahead of the clock, the part's
// bounds, its claims about its stack, link id, roles, external id, VPC and regions), the proof of the account
// without I/O (an STS endpoint of the event's partition, https, POST /, the GetCallerIdentity body, every header
// signed, the bindings to audience, delivery id and body, the signing date and scope), one request to STS (no
// redirects), whose answer must name data.accountId and an assumed-role session of it, and last the claims that
// name another stack's link (`link-id`, `stack-mismatch`: link-receiver answers those 409, once it knows who sent
// them). See docs/provider-events.md.

import {
  CONFLICTS, LIMITS, PROOF_HEADER, REASONS, RETRYABLE, SNS_PROOF_ATTRIBUTE, VerificationError, bodyBytes,
  checkHeaders, checkNotAhead, checkPart, checkProof, checkSignature, claimError, deliveryId, fail, headerMap,
  linkId, parseEvent, parseSecrets, shown, utf8Text,
} from './lib/core.js';
import { ENVELOPE_FIELDS, Reassembler } from './lib/reassembler.js';
import { checkEndpoint, send } from './lib/sts.js';

export { CONFLICTS, ENVELOPE_FIELDS, LIMITS, REASONS, RETRYABLE, Reassembler, VerificationError, deliveryId, linkId };

/** `ProviderAuthMode`: what a delivery must carry. */
export const MODES = Object.freeze(['hmac-and-proof', 'proof-only', 'hmac-only']);

function config({ secrets, audience, mode = 'hmac-and-proof', stsEndpoint, tolerance = LIMITS.toleranceSecs, timeoutMs = 5000 }) {
  if (!MODES.includes(mode)) throw new TypeError(`mode must be one of ${MODES.join(', ')}, not ${JSON.stringify(mode)}`);
  const hmac = mode !== 'proof-only';
  const proof = mode !== 'hmac-only';
  const keys = hmac ? parseSecrets(secrets) : [];
  if (hmac && keys.length === 0) throw new TypeError(`secrets: mode ${mode} needs the whsec_... secret(s)`);
  if (proof && !audience) throw new TypeError(`audience: mode ${mode} needs this receiver's audience (e.g. https://hooks.example.com)`);
  if (!Number.isInteger(tolerance) || tolerance < 0) throw new TypeError('tolerance must be a whole number of seconds');
  return { hmac, proof, keys, audience: audience ?? '', endpoint: checkEndpoint(stsEndpoint), tolerance, timeoutMs };
}

const clock = (now) => Math.trunc(now ?? Date.now() / 1000);

/** The event with its delivery id and caller, neither of which is part of its JSON. */
function verified(event, id, caller) {
  return Object.defineProperties(event, {
    deliveryId: { value: id, enumerable: false },
    caller: { value: caller, enumerable: false },
  });
}

/** After the delivery id: the timestamp, the part's bounds, the claims. Returns a conflicting claim, to be thrown
 * after the proof (as link-receiver does), or null. */
function checkEvent(event, now, tolerance) {
  checkNotAhead(event, now, tolerance);
  if (event.data.part != null) checkPart(event.data.part);
  const error = claimError(event.data);
  if (error !== null && !CONFLICTS.includes(error.reason)) throw error;
  return error;
}

async function prove(proof, cfg, id, raw, event, now) {
  const expected = {
    audience: cfg.audience, eventId: id, body: raw, partition: event.data.partition, accountId: event.data.accountId,
  };
  const replay = checkProof(proof, expected, now);
  return send(replay, expected, { endpoint: cfg.endpoint, timeoutMs: cfg.timeoutMs });
}

/**
 * Verifies one callback delivery: its headers (node:http's `req.headers`, a fetch `Headers`, or pairs) and its raw
 * body bytes. Resolves to the event (with `deliveryId` and `caller`), or rejects with a VerificationError whose
 * `reason` names the failed check. Configuration errors reject with a TypeError.
 */
export async function verify(options) {
  const cfg = config(options);
  const now = clock(options.now);
  const h = headerMap(options.headers);
  const signed = checkHeaders(h, { signed: cfg.hmac, now, tolerance: cfg.tolerance });
  const proof = cfg.proof ? h.get(PROOF_HEADER) : undefined;
  if (cfg.proof && proof === undefined) throw fail('proof-missing', `missing ${PROOF_HEADER} header`);
  const raw = bodyBytes(options.body);
  const text = utf8Text(raw, 'the body');
  if (cfg.hmac) checkSignature(signed, cfg.keys, raw);
  const event = parseEvent(text);
  const id = deliveryId(event);
  if (id !== signed.id) throw fail('webhook-id', `webhook-id ${shown(signed.id)} is not the delivery id the event names (${id})`);
  const conflict = checkEvent(event, now, cfg.tolerance);
  const caller = cfg.proof ? await prove(proof, cfg, id, raw, event, now) : null;
  if (conflict !== null) throw conflict;
  return verified(event, id, caller);
}

/** An SNS message attribute's value: a string, or SNS's {Type, Value} / SQS's {StringValue}. */
function attribute(attributes, name) {
  let value = attributes?.[name];
  if (value !== null && typeof value === 'object') value = value.Value ?? value.StringValue;
  return typeof value === 'string' ? value : undefined;
}

/**
 * Verifies one SNS message: its `Message` and its message attributes (accountLinkProof is required). SNS carries
 * no Standard Webhooks signature; the proof binds the message's delivery id and exact bytes. Verify SNS's own
 * signature first when the message reached you over HTTP(S) rather than SQS.
 */
export async function verifySns(options) {
  const cfg = config({ ...options, mode: 'proof-only' });
  const now = clock(options.now);
  const proof = attribute(options.attributes, SNS_PROOF_ATTRIBUTE);
  if (proof === undefined) throw fail('proof-missing', `missing ${SNS_PROOF_ATTRIBUTE} message attribute`);
  const raw = bodyBytes(options.message);
  const event = parseEvent(utf8Text(raw, 'the message'));
  const conflict = checkEvent(event, now, cfg.tolerance);
  const id = deliveryId(event);
  const caller = await prove(proof, cfg, id, raw, event, now);
  if (conflict !== null) throw conflict;
  return verified(event, id, caller);
}
