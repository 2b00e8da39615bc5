// Type-checked by `tsc -p .` (never run): the declarations in index.d.ts describe the API as a receiver uses it.

import {
  CONFLICTS, ENVELOPE_FIELDS, LIMITS, MODES, REASONS, RETRYABLE, Reassembler, VerificationError, deliveryId, linkId,
  verify, verifySns,
  type Caller, type LinkEvent, type Reason, type VerifiedEvent,
} from '../index.js';

export async function receive(headers: Record<string, string | string[] | undefined>, body: Uint8Array): Promise<number> {
  try {
    const event: VerifiedEvent = await verify({
      headers, body, secrets: 'whsec_...', audience: 'https://hooks.example.com', mode: 'hmac-and-proof',
    });
    const caller: Caller | null = event.caller;
    const id: string = event.deliveryId;
    const parts = new Reassembler({ maxOpenSplits: 16 });
    const whole: LinkEvent | null = parts.add(event, body.byteLength);
    return (caller?.arn.length ?? 0) + id.length + (whole?.data.inventory.length ?? 0);
  } catch (e) {
    if (e instanceof VerificationError) {
      const reason: Reason = e.reason;
      if (CONFLICTS.includes(reason)) return 409;
      return e.retryable ? 503 : reason === 'event' || reason === 'timestamp-ahead' ? 400 : 401;
    }
    throw e;
  }
}

export async function sns(message: string): Promise<string> {
  const event = await verifySns({
    message, attributes: { accountLinkProof: { Type: 'String', Value: 'v1.x' } }, audience: 'https://hooks.example.com',
    timeoutMs: 2000, now: 1795435200, tolerance: 60,
  });
  const sizes: number = LIMITS.maxSetBytes + ENVELOPE_FIELDS.length + MODES.length + REASONS.length + RETRYABLE.length;
  return `${deliveryId(event)} ${event.data.part?.index ?? 0} ${sizes} ${linkId(event.data.stackId, 'AccountLink')}`;
}

export function headersOfAMap(h: Map<string, string>, body: ArrayBuffer): Promise<VerifiedEvent> {
  return verify({ headers: h, body, secrets: ['whsec_a', 'whsec_b'], mode: 'hmac-only', tolerance: 300 });
}

// @ts-expect-error: the mode is one of three words
verify({ headers: {}, body: '', mode: 'hmac' });
