// Putting split events back together (link_contract::parts), bounded like link-receiver: at most 64 parts of
// 16 hex-digit sets, 16 MiB per split, the same envelope in every part, a bounded number of open splits and of
// bytes held, and splits that never complete are dropped after a while.

import { LIMITS, checkPart, fail } from './core.js';

/** The envelope every part of one split carries unchanged (link_contract::parts::envelope_fields). */
export const ENVELOPE_FIELDS = Object.freeze(['type', 'timestamp', 'eventId', 'accountId', 'partition', 'region',
  'stackId', 'logicalResourceId', 'physicalResourceId', 'externalId', 'roles', 'part.count']);

function envelope(event) {
  const { data } = event;
  return ENVELOPE_FIELDS.map((field) => {
    if (field === 'type' || field === 'timestamp') return [field, event[field]];
    if (field === 'part.count') return [field, data.part?.count ?? 0];
    return [field, data[field]];
  });
}

/** Equal JSON values (object keys in any order). */
function same(a, b) {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null || Array.isArray(a) !== Array.isArray(b)) {
    return false;
  }
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && same(a[k], b[k]));
}

/** The whole event from all of a split's parts in order of index: regions merged by name (in the order of
 * data.regions), VPCs by id, subnets and route tables concatenated; without data.part. */
export function merge(parts) {
  const whole = structuredClone(parts[0]);
  const regions = whole.data.inventory;
  for (const part of parts.slice(1)) {
    for (const region of structuredClone(part.data.inventory)) {
      let into = regions.find((r) => r.region === region.region);
      if (!into) {
        into = { region: region.region, vpcs: [] };
        regions.push(into);
      }
      for (const vpc of region.vpcs) {
        const known = into.vpcs.find((v) => v.vpcId === vpc.vpcId);
        if (known) {
          known.subnets.push(...vpc.subnets);
          known.routeTables.push(...vpc.routeTables);
        } else {
          into.vpcs.push(vpc);
        }
      }
    }
  }
  const order = whole.data.regions;
  const rank = (r) => (order.includes(r.region) ? order.indexOf(r.region) : order.length);
  regions.sort((a, b) => rank(a) - rank(b)); // stable
  delete whole.data.part;
  return whole;
}

/** Collects the parts of split events and returns each event whole once all its parts have arrived. In memory,
 * for one process: parts arrive in any order and more than once. */
export class Reassembler {
  #open = new Map();
  #done = new Map();
  #bytes = 0;

  constructor({ maxOpenSplits = 256, maxBytes = 256 * 1024 * 1024, ttl = 3600, clock = () => performance.now() / 1000 } = {}) {
    Object.assign(this, { maxOpenSplits, maxBytes, ttl });
    this.clock = clock;
  }

  get openSplits() {
    return this.#open.size;
  }

  get bytesHeld() {
    return this.#bytes;
  }

  /** Adds one delivery's event (`size`: its body's length in bytes): the whole event when this part completes
   * it, the event itself when it is not split, null otherwise. Throws VerificationError for a part outside the
   * bounds. */
  add(event, size) {
    const data = event?.data;
    if (data === null || typeof data !== 'object') throw fail('event', 'not a link event: it has no data');
    const { part } = data;
    if (part == null) return event;
    checkPart(part);
    const key = JSON.stringify([data.eventId, part.set]);
    this.#expire();
    if (this.#done.has(key)) return null;
    const split = this.#open.get(key);
    if (split) {
      const mine = envelope(split.first);
      const theirs = envelope(event);
      const differs = mine.find(([, value], i) => !same(value, theirs[i][1]));
      if (differs) {
        throw fail('part-envelope', `data.${differs[0]} differs from the other parts of split ${part.set}: every part carries the same envelope`);
      }
      if (split.parts.has(part.index)) return null;
    } else if (this.#open.size >= this.maxOpenSplits) {
      throw fail('reassembly-full', `${this.#open.size} split events are incomplete, as many as this receiver holds; retry later`);
    }
    const held = split?.bytes ?? 0;
    if (held + size > LIMITS.maxSetBytes) {
      if (split) this.#drop(key);
      throw fail('part-set-size', `data.part.set ${part.set}: its parts would total ${held + size} bytes, more than the ${LIMITS.maxSetBytes} a split may carry`);
    }
    if (this.#bytes + size > this.maxBytes) {
      throw fail('reassembly-full', `the incomplete split events hold ${this.#bytes} bytes, as many as this receiver holds; retry later`);
    }
    const target = split ?? { first: event, parts: new Map(), bytes: 0, started: this.clock() };
    if (!split) this.#open.set(key, target);
    target.parts.set(part.index, event);
    target.bytes += size;
    this.#bytes += size;
    if (target.parts.size < part.count) return null;
    this.#drop(key);
    this.#done.set(key, true);
    while (this.#done.size > 4 * this.maxOpenSplits) this.#done.delete(this.#done.keys().next().value);
    return merge([...target.parts.keys()].sort((a, b) => a - b).map((i) => target.parts.get(i)));
  }

  #drop(key) {
    this.#bytes -= this.#open.get(key).bytes;
    this.#open.delete(key);
  }

  #expire() {
    const now = this.clock();
    for (const [key, split] of this.#open) {
      if (now - split.started <= this.ttl) break;
      this.#drop(key);
    }
  }
}
