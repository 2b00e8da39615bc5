// Types of account-link-verify (hand-written; test/types.ts checks them with tsc). The event's types follow
// schema/link-event.v1.json and docs/provider-events.md.

/** `ProviderAuthMode`: what a delivery must carry. */
export type Mode = 'hmac-and-proof' | 'proof-only' | 'hmac-only';

/** The check a delivery failed: link-contract's words (`link_contract::reason`), the same in Rust and Python. */
export type Reason =
  | 'webhook-id' | 'timestamp' | 'signature' | 'event' | 'schema-version' | 'timestamp-ahead'
  | 'stack-id' | 'stack-mismatch' | 'logical-resource-id' | 'link-id' | 'role' | 'external-id' | 'vpc-id' | 'region'
  | 'part-count' | 'part-index' | 'part-set' | 'part-set-size' | 'part-envelope' | 'reassembly-full'
  | 'proof-missing' | 'proof-length' | 'proof-encoding' | 'proof-method' | 'proof-scheme' | 'proof-url' | 'proof-host'
  | 'proof-partition' | 'proof-body' | 'proof-header' | 'proof-header-value' | 'proof-header-missing'
  | 'proof-unsigned-header' | 'proof-signed-header-absent' | 'proof-host-header' | 'proof-content-type'
  | 'proof-authorization' | 'proof-scope' | 'proof-audience' | 'proof-event-id' | 'proof-body-sha256' | 'proof-date'
  | 'proof-age' | 'account-id'
  | 'sts-redirect' | 'sts-refused' | 'sts-unavailable' | 'sts-answer' | 'proof-account' | 'proof-caller' | 'busy';

export const REASONS: readonly Reason[];
/** The reasons after which the same delivery may pass later: answer 503 so that the sender retries. */
export const RETRYABLE: readonly Reason[];
/** The claims that name another stack's link or contradict the event's own stack (`link-id`, `stack-mismatch`):
 * refused after the proof; link-receiver keeps such an event apart and answers 409. */
export const CONFLICTS: readonly Reason[];
export const MODES: readonly Mode[];
/** The envelope fields every part of one split carries unchanged. */
export const ENVELOPE_FIELDS: readonly string[];
export const LIMITS: Readonly<{
  toleranceSecs: number;
  maxIdLen: number;
  maxSignatureCandidates: number;
  maxSignatureEntries: number;
  maxProofLen: number;
  maxProofAgeSecs: number;
  maxParts: number;
  maxSetBytes: number;
  setLen: number;
}>;

/** A delivery that must not be accepted. */
export class VerificationError extends Error {
  readonly name: 'VerificationError';
  /** The failed check. */
  readonly reason: Reason;
  /** True when the same delivery may pass later (answer 503, not 401 or 400). */
  readonly retryable: boolean;
  constructor(reason: Reason, message: string);
}

/** Whom STS named for a verified proof: record `arn` with the link. */
export interface Caller {
  readonly accountId: string;
  /** `arn:<partition>:sts::<account>:assumed-role/<role>/<session>`. */
  readonly arn: string;
  readonly roleName: string;
  readonly sessionName: string;
}

export type EventType = 'account.linked' | 'account.updated' | 'account.unlinked';

export interface LinkEvent {
  type: EventType;
  /** RFC 3339 UTC. */
  timestamp: string;
  data: LinkData;
}

export interface LinkData {
  schemaVersion: string;
  eventId: string;
  accountId: string;
  partition: string;
  region: string;
  stackId: string;
  requestId: string;
  logicalResourceId: string;
  physicalResourceId: string;
  externalId: string | null;
  roles: Record<string, string>;
  vpcId: string | null;
  peering?: Peering | null;
  regions: string[];
  inventoryComplete: boolean;
  inventory: RegionInventory[];
  changes?: Changes | null;
  part?: Part | null;
}

export interface Part {
  index: number;
  count: number;
  set: string;
}

export interface Changes {
  changedProperties: string[];
  previous?: LinkProperties | null;
}

export interface LinkProperties {
  regions: string[];
  externalId?: string | null;
  roles: Record<string, string>;
  vpcId?: string | null;
  peering?: Peering | null;
}

export interface Peering {
  vpcPeeringConnectionId: string;
  status: string;
  providerCidr: string;
  routeTableIds: string[];
  requesterVpcId?: string | null;
  accepterVpcId?: string | null;
}

export interface RegionInventory {
  region: string;
  vpcs: Vpc[];
}

export interface Vpc {
  vpcId: string;
  name?: string | null;
  cidrBlock?: string | null;
  cidrBlocks: string[];
  ipv6CidrBlocks: string[];
  isDefault: boolean;
  state?: string | null;
  ownerId?: string | null;
  subnets: Subnet[];
  routeTables: RouteTable[];
}

export interface Subnet {
  subnetId: string;
  name?: string | null;
  cidrBlock?: string | null;
  ipv6CidrBlocks: string[];
  availabilityZone?: string | null;
  availabilityZoneId?: string | null;
  availableIpAddressCount?: number | null;
  mapPublicIpOnLaunch: boolean;
  defaultForAz: boolean;
  state?: string | null;
}

export interface RouteTable {
  routeTableId: string;
  name?: string | null;
  main: boolean;
  subnetIds: string[];
  routes: Route[];
}

export interface Route {
  destination?: string | null;
  target?: string | null;
  state?: string | null;
  origin?: string | null;
}

/** The verified event. `deliveryId` (its webhook-id) and `caller` are not enumerable: not part of its JSON. */
export type VerifiedEvent = LinkEvent & {
  readonly deliveryId: string;
  /** Null when the mode checks no proof (`hmac-only`). */
  readonly caller: Caller | null;
};

/** Anything with `entries()` of `[name, value]`: a fetch `Headers`, a `Map`. */
export interface HeadersLike {
  entries(): Iterable<[string, string]>;
}

/** node:http's `req.headers`, a fetch `Headers`, a `Map`, or `[name, value]` pairs; names in any case. */
export type HeadersInput =
  | Record<string, string | string[] | undefined>
  | HeadersLike
  | ReadonlyArray<readonly [string, string]>;

/** The raw body: bytes as received (a string is encoded as UTF-8, which re-serialized JSON does not match). */
export type BodyInput = Uint8Array | ArrayBuffer | string;

export interface VerifyOptions {
  headers: HeadersInput;
  body: BodyInput;
  /** `whsec_...` secret(s), space-separated or an array (several during a rotation); for the hmac modes. */
  secrets?: string | readonly string[];
  /** This receiver's audience, e.g. `https://hooks.example.com`; for the proof modes. */
  audience?: string;
  /** Default `hmac-and-proof`. */
  mode?: Mode;
  /** A loopback http(s) URL that stands in for STS (tests only; anything else is refused). */
  stsEndpoint?: string;
  /** Seconds webhook-timestamp may be from now, and the event's timestamp ahead of now (default 300). */
  tolerance?: number;
  /** Unix seconds to verify at (tests; default now). */
  now?: number;
  /** The whole exchange with STS, in milliseconds (default 5000). */
  timeoutMs?: number;
}

/** Verifies one callback delivery. Rejects with a VerificationError, or a TypeError for a configuration error. */
export function verify(options: VerifyOptions): Promise<VerifiedEvent>;

/** An SNS message attribute as SNS's HTTP notifications (`{Type, Value}`) or SQS (`{DataType, StringValue}`)
 * carry it, or its string. */
export type SnsAttribute = string | { Type?: string; Value?: string } | { DataType?: string; StringValue?: string };

export interface VerifySnsOptions {
  /** The SNS `Message`, exactly as delivered. */
  message: BodyInput;
  /** Its message attributes; `accountLinkProof` is required. */
  attributes: Record<string, SnsAttribute | undefined>;
  audience: string;
  stsEndpoint?: string;
  /** Seconds the event's timestamp may be ahead of now (default 300). */
  tolerance?: number;
  now?: number;
  timeoutMs?: number;
}

/** Verifies one SNS message (its proof; SNS's own signature is not checked here). */
export function verifySns(options: VerifySnsOptions): Promise<VerifiedEvent>;

/** `data.eventId`, or for a part `<eventId>-<set>-<index>of<count>`: a delivery's webhook-id. */
export function deliveryId(event: LinkEvent): string;

/** The link id (`data.physicalResourceId`) the function derives from a stack id and the resource's logical id:
 * `link-` and 32 hex digits of SHA-256(stackId + "\n" + logicalResourceId). */
export function linkId(stackId: string, logicalResourceId: string): string;

export interface ReassemblerOptions {
  /** Splits held incomplete at once (default 256); a part of another is refused with `reassembly-full`. */
  maxOpenSplits?: number;
  /** Bytes held (the sizes given to `add`; default 256 MiB). */
  maxBytes?: number;
  /** Seconds after its first part an incomplete split is dropped (default 3600). */
  ttl?: number;
  /** Seconds on a monotonic clock (tests). */
  clock?: () => number;
}

/** Puts split events back together, in memory, bounded like link-receiver. */
export class Reassembler {
  constructor(options?: ReassemblerOptions);
  /** Adds one verified delivery's event with its body's length in bytes: the whole event when this part completes
   * it, the event itself when it is not split, null otherwise. Throws VerificationError for a part outside the
   * bounds. */
  add(event: LinkEvent, size: number): LinkEvent | null;
  readonly openSplits: number;
  readonly bytesHeld: number;
  readonly maxOpenSplits: number;
  readonly maxBytes: number;
  readonly ttl: number;
}
