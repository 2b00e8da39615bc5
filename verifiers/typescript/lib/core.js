// Every check that needs no network, as link-contract makes them (signing.rs, proof.rs, parts.rs, event.rs) and
// in link-receiver's order. Each failure throws VerificationError with link-contract's reason word.

import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

import * as partitions from './partitions.js';

/** The reason words (link_contract::reason), each with whether the same delivery may pass later. */
export const REASONS = Object.freeze([
  'webhook-id', 'timestamp', 'signature', 'event', 'schema-version', 'timestamp-ahead', 'stack-id', 'stack-mismatch',
  'logical-resource-id', 'link-id', 'role', 'external-id', 'vpc-id', 'region', 'part-count', 'part-index', 'part-set',
  'part-set-size', 'part-envelope', 'reassembly-full', 'proof-missing', 'proof-length', 'proof-encoding',
  'proof-method', 'proof-scheme', 'proof-url', 'proof-host', 'proof-partition', 'proof-body', 'proof-header',
  'proof-header-value', 'proof-header-missing', 'proof-unsigned-header', 'proof-signed-header-absent',
  'proof-host-header', 'proof-content-type', 'proof-authorization', 'proof-scope', 'proof-audience',
  'proof-event-id', 'proof-body-sha256', 'proof-date', 'proof-age', 'account-id', 'sts-redirect', 'sts-refused',
  'sts-unavailable', 'sts-answer', 'proof-account', 'proof-caller', 'busy',
]);
export const RETRYABLE = Object.freeze(['reassembly-full', 'sts-unavailable', 'busy']);
/** Claims that name another stack's link or contradict the event's own stack (link_contract::reason::CONFLICTS):
 * refused after the proof, so that the caller STS named is known; link-receiver keeps them apart and answers 409. */
export const CONFLICTS = Object.freeze(['stack-mismatch', 'link-id']);

export const LIMITS = Object.freeze({
  toleranceSecs: 300,
  maxIdLen: 256,
  maxSignatureCandidates: 8,
  maxSignatureEntries: 64,
  maxProofLen: 12 * 1024,
  maxProofAgeSecs: 15 * 60,
  maxParts: 64,
  maxSetBytes: 16 * 1024 * 1024,
  setLen: 16,
});
const SCHEMA = '1';
const MAX_ROLES = 16;
const MAX_ROLE_KEY_LEN = 64;
const MAX_REGIONS = 64;
const MAX_ARN_LEN = 2048;
export const PROOF_HEADER = 'account-link-proof';
export const SNS_PROOF_ATTRIBUTE = 'accountLinkProof';
const AUDIENCE_HEADER = 'x-account-link-audience';
const EVENT_ID_HEADER = 'x-account-link-event-id';
const BODY_SHA256_HEADER = 'x-account-link-body-sha256';
export const STS_BODY = 'Action=GetCallerIdentity&Version=2011-06-15';
const ALLOWED = new Set([
  'authorization', 'host', 'content-type', 'x-amz-date', 'x-amz-security-token', 'x-amz-content-sha256',
  AUDIENCE_HEADER, EVENT_ID_HEADER, BODY_SHA256_HEADER,
]);
const REQUIRED_SIGNED = ['host', 'content-type', 'x-amz-date', AUDIENCE_HEADER, EVENT_ID_HEADER, BODY_SHA256_HEADER];
const CONTENT_TYPES = ['application/x-www-form-urlencoded', 'application/x-www-form-urlencoded; charset=utf-8'];

/** A delivery that must not be accepted: `reason` names the failed check (link-contract's words), and
 * `retryable` is true when the same delivery may pass later (answer 503, not 401/400). */
export class VerificationError extends Error {
  constructor(reason, message) {
    super(message);
    this.name = 'VerificationError';
    this.reason = reason;
    this.retryable = RETRYABLE.includes(reason);
  }
}

export const fail = (reason, message) => new VerificationError(reason, message);
export const shown = (s, n = 120) => String(s).slice(0, n);
export const asciiLower = (s) => s.replace(/[A-Z]/g, (c) => c.toLowerCase());
const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const has = (o, k) => Object.prototype.hasOwnProperty.call(o, k);
const utf8 = new TextDecoder('utf-8', { fatal: true });

export function isAccountId(s) {
  return typeof s === 'string' && /^[0-9]{12}$/.test(s);
}

// ---------------------------------------------------------------------------------------------------------
// Configuration and inputs.

/** `whsec_<base64>` secrets (a space-separated string or an array): the HMAC keys, 24 to 64 bytes each. */
export function parseSecrets(secrets) {
  if (secrets == null) return [];
  const items = (Array.isArray(secrets) ? secrets : [secrets]).flatMap((s) => String(s).split(/\s+/)).filter(Boolean);
  return items.map((s, i) => {
    if (!s.startsWith('whsec_')) throw new TypeError(`secrets: secret #${i + 1} does not start with whsec_`);
    const key = strictBase64(s.slice('whsec_'.length));
    if (key === null) throw new TypeError(`secrets: secret #${i + 1} is not valid base64 after whsec_`);
    if (key.length < 24 || key.length > 64) {
      throw new TypeError(`secrets: secret #${i + 1} is ${key.length} bytes long; Standard Webhooks secrets are 24 to 64 bytes`);
    }
    return key;
  });
}

/** Lowercase names; the first of repeated headers (as link-receiver reads them). */
export function headerMap(headers) {
  const out = new Map();
  const proto = headers == null ? null : Object.getPrototypeOf(headers);
  let entries;
  if (headers == null) entries = [];
  else if (Array.isArray(headers)) entries = headers; // [[name, value], ...]
  else if (proto === Object.prototype || proto === null) entries = Object.entries(headers); // node:http's
  else if (typeof headers.entries === 'function') entries = headers.entries(); // fetch's Headers, a Map
  else throw new TypeError('headers must be an object, a Headers or Map, or an array of [name, value]');
  for (const [name, raw] of entries) {
    const value = Array.isArray(raw) ? raw[0] : raw;
    const key = asciiLower(String(name));
    if (value != null && !out.has(key)) out.set(key, String(value));
  }
  return out;
}

export function bodyBytes(body) {
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  if (body instanceof ArrayBuffer) return Buffer.from(body);
  if (ArrayBuffer.isView(body)) return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  throw new TypeError('body must be the raw bytes (Uint8Array, Buffer, ArrayBuffer) or a string');
}

export function utf8Text(bytes, what) {
  try {
    return utf8.decode(bytes);
  } catch {
    throw fail('event', `${what} is not UTF-8 JSON`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Standard Webhooks headers and signature (link_contract::signing).

/** Canonical, padded standard base64, or null. */
function strictBase64(s) {
  if (s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) return null;
  const raw = Buffer.from(s, 'base64');
  return raw.toString('base64') === s ? raw : null;
}

export function checkHeaders(h, { signed, now, tolerance }) {
  const id = h.get('webhook-id');
  if (!id) throw fail('webhook-id', 'missing webhook-id header');
  if (Buffer.byteLength(id, 'utf8') > LIMITS.maxIdLen) {
    throw fail('webhook-id', `webhook-id is longer than ${LIMITS.maxIdLen} characters`);
  }
  let raw = h.get('webhook-timestamp');
  if (raw === undefined) throw fail('timestamp', 'missing webhook-timestamp header');
  raw = raw.trim();
  if (!/^\+?[0-9]+$/.test(raw) || BigInt(raw) >= 2n ** 64n) {
    throw fail('timestamp', 'webhook-timestamp is not a Unix timestamp in seconds');
  }
  const ts = BigInt(raw);
  const diff = BigInt(Math.trunc(now)) - ts;
  const skew = diff < 0n ? -diff : diff;
  if (skew > BigInt(tolerance)) throw fail('timestamp', `webhook-timestamp is ${skew} s away from now, outside the tolerance`);
  const out = { id, timestamp: ts.toString(), candidates: [] };
  if (!signed) return out;
  const signature = h.get('webhook-signature');
  if (signature === undefined) throw fail('signature', 'missing webhook-signature header');
  for (const entry of signature.split(/\s+/).filter(Boolean).slice(0, LIMITS.maxSignatureEntries)) {
    // A base64 signature of 32 bytes is 44 characters: nothing longer is decoded.
    if (!entry.startsWith('v1,') || entry.length > 3 + 44) continue;
    const candidate = strictBase64(entry.slice(3));
    if (candidate !== null && candidate.length === 32) {
      out.candidates.push(candidate);
      if (out.candidates.length === LIMITS.maxSignatureCandidates) break;
    }
  }
  if (out.candidates.length === 0) throw fail('signature', 'webhook-signature holds no v1 signature of 32 bytes');
  return out;
}

/** One HMAC per secret, compared with every candidate in constant time. */
export function checkSignature(signed, keys, body) {
  for (const key of keys) {
    const expected = createHmac('sha256', key).update(`${signed.id}.${signed.timestamp}.`).update(body).digest();
    let matched = false;
    for (const candidate of signed.candidates) matched = timingSafeEqual(expected, candidate) || matched;
    if (matched) return;
  }
  throw fail('signature', 'no signature in webhook-signature matches');
}

// ---------------------------------------------------------------------------------------------------------
// The event (link_contract::event, as serde reads it; link-receiver's checks of timestamp and link id).

const opt = (spec) => ({ opt: spec });
const dflt = (spec) => ({ dflt: spec });
const list = (spec) => ({ list: spec });
const STR = 'a string';
const BOOL = 'true or false';
const U64 = 'a non-negative integer';
const I32 = 'a 32-bit integer';
const STRMAP = 'an object of strings';
const OS = opt(STR);
const LS = list(STR);
const ROUTE = { destination: OS, target: OS, state: OS, origin: OS };
const ROUTE_TABLE = { routeTableId: STR, name: OS, main: BOOL, subnetIds: LS, routes: list(ROUTE) };
const SUBNET = {
  subnetId: STR, name: OS, cidrBlock: OS, ipv6CidrBlocks: LS, availabilityZone: OS, availabilityZoneId: OS,
  availableIpAddressCount: opt(I32), mapPublicIpOnLaunch: BOOL, defaultForAz: BOOL, state: OS,
};
const VPC = {
  vpcId: STR, name: OS, cidrBlock: OS, cidrBlocks: LS, ipv6CidrBlocks: LS, isDefault: BOOL, state: OS, ownerId: OS,
  subnets: list(SUBNET), routeTables: list(ROUTE_TABLE),
};
const PEERING = {
  vpcPeeringConnectionId: STR, status: STR, providerCidr: STR, routeTableIds: LS, requesterVpcId: OS, accepterVpcId: OS,
};
const PROPERTIES = { regions: LS, externalId: OS, roles: STRMAP, vpcId: OS, peering: opt(PEERING) };
const DATA = {
  schemaVersion: STR, eventId: STR, accountId: STR, partition: STR, region: STR, stackId: STR, requestId: STR,
  logicalResourceId: STR, physicalResourceId: STR, externalId: OS, roles: STRMAP, vpcId: OS, peering: opt(PEERING),
  regions: LS, inventoryComplete: BOOL, inventory: list({ region: STR, vpcs: list(VPC) }),
  changes: opt({ changedProperties: LS, previous: opt(PROPERTIES) }),
  part: opt({ index: U64, count: U64, set: dflt(STR) }),
};
const TYPES = ['account.linked', 'account.updated', 'account.unlinked'];
const EVENT = { type: { oneOf: TYPES }, timestamp: STR, data: DATA };

const SCALARS = {
  [STR]: (v) => typeof v === 'string',
  [BOOL]: (v) => typeof v === 'boolean',
  [U64]: (v) => Number.isInteger(v) && v >= 0 && v < 2 ** 64,
  [I32]: (v) => Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31,
  [STRMAP]: (v) => isObject(v) && Object.values(v).every((x) => typeof x === 'string'),
};

/** The keys the objects of a JSON text repeat (the text is JSON: JSON.parse read it), as a tree that mirrors its
 * value where a key repeats: `{ repeated: Set of keys, members: Map of key or index to the node below }`, or null.
 * serde refuses a struct's field twice; JSON.parse keeps the last, and the tree describes that one. Iterative: a
 * body nested however deep costs no stack. */
export function repeatedKeys(text) {
  const stack = [];
  let root = null;
  let expectKey = false;
  let i = 0;
  const nodeOf = (frame) => {
    frame.node ??= { repeated: new Set(), members: new Map() };
    return frame.node;
  };
  const done = (child) => {
    const top = stack[stack.length - 1];
    if (top === undefined) {
      root = child;
    } else if (top.keys === null) {
      if (child !== null) nodeOf(top).members.set(top.index, child);
      top.index += 1;
    } else {
      if (top.keys.has(top.key)) nodeOf(top).repeated.add(top.key);
      top.keys.add(top.key);
      if (child !== null) nodeOf(top).members.set(top.key, child);
      else top.node?.members.delete(top.key);
    }
  };
  // The index after the string that starts at i.
  const stringEnd = () => {
    for (let from = i + 1; ;) {
      const quote = text.indexOf('"', from);
      let backslashes = 0;
      while (text.charCodeAt(quote - 1 - backslashes) === 0x5c) backslashes += 1;
      if (backslashes % 2 === 0) return quote + 1;
      from = quote + 1;
    }
  };
  const n = text.length;
  while (i < n) {
    switch (text.charCodeAt(i)) {
      case 0x7b: // {
      case 0x5b: // [
        expectKey = text.charCodeAt(i) === 0x7b;
        stack.push({ keys: expectKey ? new Set() : null, key: '', index: 0, node: null });
        i += 1;
        break;
      case 0x7d: // }
      case 0x5d: // ]
        expectKey = false;
        i += 1;
        done(stack.pop().node);
        break;
      case 0x2c: // ,
        expectKey = stack[stack.length - 1].keys !== null;
        i += 1;
        break;
      case 0x22: { // "
        const end = stringEnd();
        if (expectKey) {
          const raw = text.slice(i + 1, end - 1);
          stack[stack.length - 1].key = raw.includes('\\') ? JSON.parse(text.slice(i, end)) : raw;
        } else {
          done(null);
        }
        expectKey = false;
        i = end;
        break;
      }
      case 0x20: case 0x09: case 0x0a: case 0x0d: case 0x3a: // white space, :
        i += 1;
        break;
      default: { // a number, true, false or null: up to the next delimiter
        let c = text.charCodeAt(i);
        while (i < n && c !== 0x2c && c !== 0x5d && c !== 0x7d && c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) {
          i += 1;
          c = text.charCodeAt(i);
        }
        done(null);
      }
    }
  }
  return root;
}

/** `repeats`: the node of `repeatedKeys` for `value` (null where nothing repeats). */
function checkShape(value, spec, path, repeats) {
  if (typeof spec === 'string') {
    if (!SCALARS[spec](value)) throw fail('event', `${path} must be ${spec}`);
    const texts = spec === STR ? [value] : spec === STRMAP ? [...Object.keys(value), ...Object.values(value)] : [];
    // serde_json refuses these in every field it decodes; JSON.parse keeps them.
    if (!texts.every((t) => t.isWellFormed())) throw fail('event', `${path} holds a lone UTF-16 surrogate escape, which is not Unicode text`);
  } else if (spec.opt) {
    if (value !== null) checkShape(value, spec.opt, path, repeats);
  } else if (spec.dflt) {
    checkShape(value, spec.dflt, path, repeats);
  } else if (spec.list) {
    if (!Array.isArray(value)) throw fail('event', `${path} must be an array`);
    value.forEach((item, i) => checkShape(item, spec.list, `${path}[${i}]`, repeats?.members.get(i) ?? null));
  } else if (spec.oneOf) {
    if (!spec.oneOf.includes(value)) throw fail('event', `${path} must be one of ${spec.oneOf.join(', ')}`);
  } else {
    if (!isObject(value)) throw fail('event', `${path || 'the body'} must be an object`);
    for (const [key, sub] of Object.entries(spec)) {
      const where = path ? `${path}.${key}` : key;
      if (repeats?.repeated.has(key)) throw fail('event', `${where} appears more than once`);
      if (!has(value, key)) {
        if (sub.opt || sub.dflt) continue;
        throw fail('event', `${where} is missing`);
      }
      checkShape(value[key], sub, where, repeats?.members.get(key) ?? null);
    }
  }
}

/** Unix milliseconds of an RFC 3339 UTC time (a leap second counts as :59, the fraction is truncated, as
 * link-receiver reads it), or null. */
export function rfc3339Millis(s) {
  const m = /^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?(Z|\+00:00)$/.exec(s);
  if (!m) return null;
  const [y, mo, d, h, mi, se] = m.slice(1, 7).map(Number);
  const leap = y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
  if (!(y >= 1970 && mo >= 1 && mo <= 12 && d >= 1 && d <= days[mo - 1] && h <= 23 && mi <= 59 && se <= 60)) return null;
  const millis = Number(`${(m[7] ?? '.').slice(1)}000`.slice(0, 3));
  return (daysFromCivil(y, mo, d) * 86400 + h * 3600 + mi * 60 + Math.min(se, 59)) * 1000 + millis;
}

/** The body as a link event: JSON, schema version (first: another version may have another shape), every field
 * the contract defines with its type, an RFC 3339 UTC timestamp, a link id of 1 to 1024 bytes. */
export function parseEvent(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw fail('event', `the body is not JSON: ${e.message}`);
  }
  const version = isObject(value) && isObject(value.data) ? value.data.schemaVersion : undefined;
  if (typeof version !== 'string') throw fail('event', 'the body is not a link event: it has no data.schemaVersion');
  if (version !== SCHEMA) {
    throw fail('schema-version', `data.schemaVersion ${shown(version, 16)} is not supported (this verifier reads version ${SCHEMA})`);
  }
  checkShape(value, EVENT, '', repeatedKeys(text));
  if (rfc3339Millis(value.timestamp) === null) throw fail('event', 'timestamp is not an RFC 3339 UTC time');
  const idLen = Buffer.byteLength(value.data.physicalResourceId, 'utf8');
  if (idLen < 1 || idLen > 1024) throw fail('event', 'data.physicalResourceId must be 1 to 1024 characters');
  return value;
}

/** `data.eventId`, or for a part `<eventId>-<set>-<index>of<count>`: the delivery's webhook-id. */
export function deliveryId(event) {
  const { eventId, part } = event.data;
  return part == null ? eventId : `${eventId}-${part.set ?? ''}-${part.index}of${part.count}`;
}

/** link_contract::parts::check_part: 1 <= index <= count <= 64, a set of 16 lowercase hex digits. */
export function checkPart(part) {
  const { index, count } = part;
  const set = part.set ?? '';
  if (!Number.isInteger(index) || !Number.isInteger(count)) {
    throw fail('event', 'data.part.index and data.part.count must be integers');
  }
  if (count < 1 || count > LIMITS.maxParts) throw fail('part-count', `data.part.count must be 1 to ${LIMITS.maxParts}, got ${count}`);
  if (index < 1 || index > count) throw fail('part-index', `data.part.index must be 1 to data.part.count (${count}), got ${index}`);
  if (typeof set !== 'string' || !/^[0-9a-f]{16}$/.test(set)) throw fail('part-set', `data.part.set must be ${LIMITS.setLen} lowercase hex digits`);
}

/** A timestamp from the future would win the ordering against every real event of its link: at most `tolerance`
 * seconds ahead of `now` (link-receiver's check). */
export function checkNotAhead(event, now, tolerance) {
  const at = rfc3339Millis(event.timestamp);
  if (at === null) throw fail('event', 'timestamp is not an RFC 3339 UTC time');
  const ahead = at - Math.trunc(now) * 1000;
  if (ahead > tolerance * 1000) {
    throw fail('timestamp-ahead', `timestamp ${shown(event.timestamp, 40)} is ${Math.trunc(ahead / 1000)} s ahead of this verifier's clock (at most ${tolerance} s are accepted)`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// The event's claims about itself (link_contract::event::LinkData::check_claims, link_contract::arn).

const ALNUM = /^[A-Za-z0-9]+$/;

/** `{partition, service, region, account, resource}` of `arn:<partition>:<service>:<region>:<account>:<resource>`
 * with a known partition, a region of it (or none) and a 12-digit account (or none): link_contract::arn::Arn. */
export function parseArn(s) {
  if (Buffer.byteLength(s, 'utf8') > MAX_ARN_LEN) return null;
  const fields = s.split(':');
  if (fields.length < 6 || fields[0] !== 'arn') return null;
  const [, partition, service, region, account] = fields;
  const resource = fields.slice(5).join(':');
  if (!/^[a-z0-9-]+$/.test(service) || !resource) return null;
  const p = partitions.named(partition);
  if (p === null || (region && !partitions.hasRegion(p, region)) || (account && !isAccountId(account))) return null;
  return { partition: p, service, region, account, resource };
}

/** `[type, rest]` of an ARN's resource (`stack/name/id` gives `['stack', 'name/id']`), or null. */
function resourceType(arn) {
  const cut = arn.resource.search(/[/:]/);
  if (cut <= 0 || cut === arn.resource.length - 1) return null;
  return [arn.resource.slice(0, cut), arn.resource.slice(cut + 1)];
}

function isStack(arn) {
  const kind = resourceType(arn);
  if (arn.service !== 'cloudformation' || kind === null || kind[0] !== 'stack') return false;
  const slash = kind[1].indexOf('/');
  const [name, id] = [kind[1].slice(0, slash), kind[1].slice(slash + 1)];
  return slash > 0 && id !== '' && !id.includes('/') && name !== '';
}

function roleName(arn) {
  const kind = resourceType(arn);
  if (arn.service !== 'iam' || kind === null || kind[0] !== 'role' || arn.region || !arn.account) return null;
  const path = kind[1];
  const name = path.slice(path.lastIndexOf('/') + 1);
  return name && name.length <= 64 && /^[A-Za-z0-9+=,.@_/-]+$/.test(path) ? name : null;
}

/** The link id (PhysicalResourceId) the function derives: `link-` and 32 hex digits of SHA-256 over the stack id,
 * a newline and the logical id. */
export function linkId(stackId, logicalResourceId) {
  return `link-${createHash('sha256').update(`${stackId}\n${logicalResourceId}`, 'utf8').digest('hex').slice(0, 32)}`;
}

/** What IAM would refuse in an sts:ExternalId (2 to 1224 letters, digits and _+=,.@:/-), or null. */
export function externalIdProblem(value) {
  const chars = [...value];
  if (chars.length < 2 || chars.length > 1224) return `is ${chars.length} characters long; IAM accepts 2 to 1224`;
  const bad = chars.find((c) => !/^[A-Za-z0-9_+=,.@:/-]$/.test(c));
  return bad === undefined ? null : `contains ${JSON.stringify(bad)}; IAM accepts only letters, digits and _+=,.@:/-`;
}

const isVpcId = (v) => /^vpc-([0-9a-f]{8}|[0-9a-f]{17})$/.test(v);
const utf8Order = (a, b) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

/** The first of the event's claims that does not hold, in link-contract's order, as a VerificationError (not
 * thrown: a conflict, CONFLICTS, is refused only after the proof), or null. The stack ARN names data.partition,
 * region and accountId; physicalResourceId is the link id of that stack and logicalResourceId; every role is an
 * IAM role of that account and partition; externalId is what IAM accepts; vpcId is a VPC id; every region is one
 * of the partition. */
export function claimError(data) {
  const arn = parseArn(data.stackId);
  if (arn === null || !isStack(arn)) return fail('stack-id', 'data.stackId is not a CloudFormation stack ARN');
  for (const [field, claimed, inStack] of [['partition', data.partition, arn.partition.name], ['region', data.region, arn.region],
    ['accountId', data.accountId, arn.account]]) {
    if (claimed !== inStack) return fail('stack-mismatch', `data.${field} is '${shown(claimed)}' but data.stackId names '${shown(inStack)}'`);
  }
  const logical = data.logicalResourceId;
  if (logical.length > 255 || !ALNUM.test(logical)) {
    return fail('logical-resource-id', 'data.logicalResourceId must be 1 to 255 letters and digits');
  }
  const expected = linkId(data.stackId, logical);
  if (data.physicalResourceId !== expected) {
    return fail('link-id', `data.physicalResourceId is not the link id of data.stackId and data.logicalResourceId (expected ${expected})`);
  }
  const names = Object.keys(data.roles).sort(utf8Order);
  if (names.length > MAX_ROLES) return fail('role', `data.roles.*: at most ${MAX_ROLES} roles`);
  for (const name of names) {
    if (name.length > MAX_ROLE_KEY_LEN || !ALNUM.test(name)) {
      return fail('role', `data.roles.${shown(name)}: role names are 1 to ${MAX_ROLE_KEY_LEN} letters and digits`);
    }
    const role = parseArn(data.roles[name]);
    if (role === null || roleName(role) === null || role.account !== data.accountId || role.partition.name !== data.partition) {
      return fail('role', `data.roles.${name}: '${shown(data.roles[name])}' is not an IAM role of account ${data.accountId} in partition ${data.partition}`);
    }
  }
  const problem = data.externalId == null ? null : externalIdProblem(data.externalId);
  if (problem !== null) return fail('external-id', `data.externalId ${problem}`);
  if (data.vpcId != null && !isVpcId(data.vpcId)) return fail('vpc-id', 'data.vpcId is not a VPC id (vpc- and 8 or 17 hex digits)');
  if (data.regions.length > MAX_REGIONS) {
    return fail('region', `data.regions[${MAX_REGIONS}]: '(${data.regions.length} regions)' is not a region of partition ${arn.partition.name}`);
  }
  for (const [i, region] of data.regions.entries()) {
    if (!partitions.hasRegion(arn.partition, region)) {
      return fail('region', `data.regions[${i}]: '${shown(region)}' is not a region of partition ${arn.partition.name}`);
    }
  }
  return null;
}

// ---------------------------------------------------------------------------------------------------------
// The proof of the account (link_contract::proof::check).

/** Canonical, unpadded base64url, or null. */
function strictBase64url(s) {
  if (s.length % 4 === 1 || !/^[A-Za-z0-9_-]*$/.test(s)) return null;
  const raw = Buffer.from(s, 'base64url');
  return raw.toString('base64url') === s ? raw : null;
}

export function decodeProof(proof) {
  const length = Buffer.byteLength(proof, 'utf8');
  if (length > LIMITS.maxProofLen) {
    throw fail('proof-length', `the proof is ${length} bytes long; at most ${LIMITS.maxProofLen} are accepted`);
  }
  const text = proof.trim();
  if (!text.startsWith('v1.')) throw fail('proof-encoding', 'the proof is not encoded as expected: it does not start with v1.');
  const raw = strictBase64url(text.slice(3));
  if (raw === null) throw fail('proof-encoding', 'the proof is not encoded as expected: it is not unpadded base64url after v1.');
  let req;
  try {
    req = JSON.parse(utf8.decode(raw));
  } catch {
    req = null;
  }
  const valid = isObject(req) && Object.keys(req).sort().join() === 'body,headers,method,url'
    && ['method', 'url', 'body'].every((k) => typeof req[k] === 'string') && isObject(req.headers)
    && Object.values(req.headers).every((v) => typeof v === 'string');
  if (!valid) throw fail('proof-encoding', 'the proof is not encoded as expected: it is not the JSON object {method, url, headers, body}');
  return req;
}

const URL_SHAPE = "the proof's URL must be https://<STS host>/ with no port, user, path, query or fragment";

function urlHost(url) {
  const at = url.indexOf('://');
  if (at < 0) throw fail('proof-url', URL_SHAPE);
  const [scheme, rest] = [url.slice(0, at), url.slice(at + 3)];
  if (asciiLower(scheme) !== 'https') throw fail('proof-scheme', `the proof's URL must use https, not ${shown(scheme)}`);
  const host = rest.endsWith('/') ? rest.slice(0, -1) : '';
  // Ports, user info, paths, queries, fragments and uppercase all end up here.
  if (!host || host.length > 253 || !/^[a-z0-9.-]+$/.test(host)) throw fail('proof-url', URL_SHAPE);
  return host;
}

function parseAuthorization(value) {
  const bad = (why) => fail('proof-authorization',
    `the proof's Authorization header is not AWS4-HMAC-SHA256 with Credential, SignedHeaders and Signature: ${why}`);
  const prefix = 'AWS4-HMAC-SHA256 ';
  if (!value.startsWith(prefix)) throw bad('not AWS4-HMAC-SHA256');
  const parts = new Map();
  for (const part of value.slice(prefix.length).split(',')) {
    const trimmed = part.trim();
    const eq = trimmed.indexOf('=');
    if (eq < 0) throw bad('a part is not key=value');
    const key = trimmed.slice(0, eq);
    if (!['Credential', 'SignedHeaders', 'Signature'].includes(key)) throw bad('unknown part');
    if (parts.has(key)) throw bad('a part is repeated');
    parts.set(key, trimmed.slice(eq + 1));
  }
  if (parts.size !== 3) throw bad('a part is missing');
  if (!/^[0-9a-fA-F]{64}$/.test(parts.get('Signature'))) throw bad('Signature is not 64 hex digits');
  const scope = parts.get('Credential').split('/');
  if (scope.length !== 5) throw bad('Credential is not AKID/date/region/service/aws4_request');
  if (!/^[A-Za-z0-9]+$/.test(scope[0])) throw bad('the access key id is malformed');
  const signedHeaders = parts.get('SignedHeaders').split(';');
  if (signedHeaders.some((h) => !h || /[A-Z]/.test(h))) throw bad('SignedHeaders must be lowercase names separated by ;');
  const [accessKeyId, date, region, service, terminator] = scope;
  return { accessKeyId, date, region, service, terminator, signedHeaders };
}

function daysFromCivil(y, m, d) {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const mp = (m + 9) % 12;
  const doy = Math.floor((153 * mp + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

/** `20261123T120000Z` as Unix seconds (link-contract's rules: days up to 31 in any month). */
export function parseAmzDate(s) {
  const bad = () => fail('proof-date', "the proof's X-Amz-Date is not YYYYMMDDTHHMMSSZ");
  const m = /^([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})Z$/.exec(s);
  if (!m) throw bad();
  const [y, mo, d, h, mi, se] = m.slice(1).map(Number);
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) throw bad();
  return daysFromCivil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
}

const sha256Hex = (bytes) => createHash('sha256').update(bytes).digest('hex');

/** Refuses anything but a fresh POST https://<STS endpoint of the event's partition>/ with exactly the
 * GetCallerIdentity body, whose binding headers are present, signed and equal to what is expected. Returns the
 * request to send to STS, exactly as signed. */
export function checkProof(proof, expected, now) {
  if (!isAccountId(expected.accountId)) {
    throw fail('account-id', `the event's accountId '${shown(expected.accountId, 40)}' is not a 12-digit account id`);
  }
  const req = decodeProof(proof);
  if (req.method !== 'POST') throw fail('proof-method', `the proof's method is ${shown(req.method, 16)}; only POST is accepted`);
  const host = urlHost(req.url);
  const endpoint = partitions.stsEndpoint(host);
  if (endpoint === null) {
    throw fail('proof-host', `the proof names host ${shown(host)}, which is not an STS endpoint (global, regional or FIPS) of an AWS partition`);
  }
  if (endpoint.partition.name !== expected.partition) {
    throw fail('proof-partition', `the proof names ${host}, an STS endpoint of partition ${endpoint.partition.name}, but the event is from partition ${shown(expected.partition)}`);
  }
  if (req.body !== STS_BODY) throw fail('proof-body', `the proof's body must be exactly ${STS_BODY}`);
  const headers = new Map();
  for (const name of Object.keys(req.headers).sort()) {
    const value = req.headers[name];
    const lower = asciiLower(name);
    if (!ALLOWED.has(lower)) throw fail('proof-header', `the proof carries header ${shown(name)}, which a GetCallerIdentity proof may not carry`);
    if (!/^[\x20-\x7e]+$/.test(value) || headers.has(lower)) throw fail('proof-header-value', `the proof's header ${lower} has an invalid value`);
    headers.set(lower, value);
  }
  if (!headers.has('authorization')) throw fail('proof-header-missing', 'the proof has no authorization header');
  const auth = parseAuthorization(headers.get('authorization'));
  for (const name of REQUIRED_SIGNED) {
    if (!headers.has(name)) throw fail('proof-header-missing', `the proof has no ${name} header`);
  }
  for (const name of [...headers.keys()].sort()) {
    if (name !== 'authorization' && !auth.signedHeaders.includes(name)) {
      throw fail('proof-unsigned-header', `the proof's header ${name} is not signed (not listed in SignedHeaders)`);
    }
  }
  for (const name of auth.signedHeaders) {
    if (!headers.has(name)) throw fail('proof-signed-header-absent', `the proof's SignedHeaders lists ${shown(name)}, which the proof does not carry`);
  }
  if (headers.get('host') !== host) {
    throw fail('proof-host-header', `the proof's host header ${shown(headers.get('host'))} differs from its URL's host ${host}`);
  }
  if (!CONTENT_TYPES.includes(asciiLower(headers.get('content-type')))) {
    throw fail('proof-content-type', "the proof's content-type must be application/x-www-form-urlencoded");
  }
  const audience = headers.get(AUDIENCE_HEADER);
  if (audience !== expected.audience) {
    throw fail('proof-audience', `the proof is for audience '${shown(audience)}', not this receiver's '${shown(expected.audience)}'`);
  }
  const eventId = headers.get(EVENT_ID_HEADER);
  if (eventId !== expected.eventId) {
    throw fail('proof-event-id', `the proof is for event id '${shown(eventId)}', not this delivery's '${shown(expected.eventId)}'`);
  }
  const digest = sha256Hex(expected.body);
  if (asciiLower(headers.get(BODY_SHA256_HEADER)) !== digest) {
    throw fail('proof-body-sha256', `the proof is for a body whose SHA-256 is ${shown(headers.get(BODY_SHA256_HEADER))}, not this delivery's ${digest}`);
  }
  const amzDate = headers.get('x-amz-date');
  const skew = Math.abs(Math.trunc(now) - parseAmzDate(amzDate));
  if (skew > LIMITS.maxProofAgeSecs) {
    throw fail('proof-age', `the proof was signed ${skew} s away from now; at most ${LIMITS.maxProofAgeSecs} s are accepted`);
  }
  for (const [what, got, want] of [['date', auth.date, amzDate.slice(0, 8)], ['region', auth.region, endpoint.signingRegion],
    ['service', auth.service, 'sts'], ['terminator', auth.terminator, 'aws4_request']]) {
    if (got !== want) throw fail('proof-scope', `the proof's credential scope names ${what} ${shown(got)}, expected ${want}`);
  }
  return {
    url: `https://${host}/`,
    host,
    headers: [...headers.entries()].filter(([n]) => n !== 'host').sort(([a], [b]) => (a < b ? -1 : 1)),
    accessKeyId: auth.accessKeyId,
  };
}

// ---------------------------------------------------------------------------------------------------------
// STS's answer (link_contract::proof::{parse_caller_identity, parse_sts_error, check_caller}).

const ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function unescapeXml(s) {
  return s.replace(/&([^;]*);?/g, (whole, name) => {
    if (!whole.endsWith(';') || !has(ENTITIES, name)) throw new Error('an unknown entity');
    return ENTITIES[name];
  });
}

/** The text directly inside the elements at each path of local names from the root (concatenated), read by a
 * small tokenizer that accepts only well-formed, DTD-free XML nested at most 16 deep. */
function xmlFields(bytes, paths) {
  const bad = (why) => fail('sts-answer', `STS's answer could not be read: ${why}`);
  let text;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw bad('it is not UTF-8');
  }
  if (/<!DOCTYPE|<!ENTITY/i.test(text)) throw bad('it declares a DTD');
  const keys = paths.map((p) => p.join('/'));
  const out = paths.map(() => null);
  const stack = [];
  let rootDone = false;
  const addText = (t, raw) => {
    if (stack.length === 0) {
      if (t.trim()) throw bad('it is not well-formed XML');
      return;
    }
    const i = keys.indexOf(stack.join('/'));
    if (i >= 0) {
      let value;
      try {
        value = raw ? t : unescapeXml(t);
      } catch {
        throw bad('it has an unknown entity');
      }
      out[i] = (out[i] ?? '') + value;
    }
  };
  let at = 0;
  while (at < text.length) {
    const lt = text.indexOf('<', at);
    addText(lt < 0 ? text.slice(at) : text.slice(at, lt), false);
    if (lt < 0) break;
    const skip = (open, close, raw) => {
      if (!text.startsWith(open, lt)) return false;
      const end = text.indexOf(close, lt + open.length);
      if (end < 0) throw bad('it is not well-formed XML');
      if (raw) addText(text.slice(lt + open.length, end), true);
      at = end + close.length;
      return true;
    };
    if (skip('<?', '?>', false) || skip('<!--', '-->', false) || skip('<![CDATA[', ']]>', true)) continue;
    let gt = lt + 1;
    let quote = null;
    for (; gt < text.length; gt += 1) {
      const c = text[gt];
      if (quote) quote = c === quote ? null : quote;
      else if (c === '"' || c === "'") quote = c;
      else if (c === '>') break;
    }
    if (gt >= text.length) throw bad('it is not well-formed XML');
    const tag = text.slice(lt + 1, gt);
    at = gt + 1;
    const name = (s) => {
      const n = /^[A-Za-z_][\w.:-]*/.exec(s)?.[0];
      if (!n) throw bad('it is not well-formed XML');
      return n.slice(n.lastIndexOf(':') + 1);
    };
    if (tag.startsWith('/')) {
      if (stack.pop() !== name(tag.slice(1).trim())) throw bad('its elements do not nest');
      if (stack.length === 0) rootDone = true;
      continue;
    }
    if (rootDone && stack.length === 0) throw bad('it is not well-formed XML');
    if (stack.length >= 16) throw bad('it is nested too deeply');
    const local = name(tag);
    if (tag.endsWith('/')) {
      if (stack.length === 0) rootDone = true;
    } else {
      stack.push(local);
    }
  }
  if (stack.length || !rootDone) throw bad('it is not well-formed XML');
  return out;
}

export function parseStsError(bytes) {
  try {
    const [code, message] = xmlFields(bytes, [['ErrorResponse', 'Error', 'Code'], ['ErrorResponse', 'Error', 'Message']]);
    return code === null ? null : { code, message: message ?? '' };
  } catch {
    return null;
  }
}

export function parseCallerIdentity(bytes) {
  const r = ['GetCallerIdentityResponse', 'GetCallerIdentityResult'];
  const [account, arn] = xmlFields(bytes, [[...r, 'Account'], [...r, 'Arn']]);
  if (account === null || arn === null) {
    throw fail('sts-answer', "STS's answer could not be read: it has no GetCallerIdentityResult with Account and Arn");
  }
  return { account: account.trim(), arn: arn.trim() };
}

/** `{partition, account, role, session}` of `arn:<partition>:sts::<account>:assumed-role/<role>/<session>`
 * (link_contract::arn::Arn::parse and assumed_role), or null. */
function assumedRole(arn) {
  if (arn.length > 2048) return null;
  const fields = arn.split(':');
  if (fields.length < 6 || fields[0] !== 'arn') return null;
  const [, partition, service, region, account] = fields;
  const resource = fields.slice(5).join(':');
  if (!/^[a-z0-9-]+$/.test(service) || !resource) return null;
  const p = partitions.named(partition);
  if (p === null || (region && !partitions.hasRegion(p, region)) || (account && !isAccountId(account))) return null;
  const cut = resource.search(/[/:]/);
  if (cut < 0 || service !== 'sts' || resource.slice(0, cut) !== 'assumed-role' || !account) return null;
  const rest = resource.slice(cut + 1);
  const slash = rest.indexOf('/');
  if (slash <= 0 || slash === rest.length - 1) return null;
  return { partition, account, role: rest.slice(0, slash), session: rest.slice(slash + 1) };
}

export function checkCaller({ account, arn }, expected) {
  if (account !== expected.accountId) {
    throw fail('proof-account', `STS says the proof was signed by account ${shown(account)}, but the event claims account ${shown(expected.accountId)}`);
  }
  const role = assumedRole(arn);
  if (role === null || role.account !== expected.accountId || role.partition !== expected.partition) {
    throw fail('proof-caller', `STS says the proof was signed by ${shown(arn)}, which is not an assumed-role session of the event's account and partition`);
  }
  return Object.freeze({ accountId: account, arn, roleName: role.role, sessionName: role.session });
}
