// The AWS partitions and the regions that exist in each: which hosts are STS endpoints a proof may name.
// The same table as link-contract's (crates/link-contract/src/partition.rs and regions.rs, from botocore's
// endpoint data); the tests compare every STS host it accepts with verifiers/vectors.json's stsEndpoints.

/** `aws` (no region prefix) is last so that the prefixed ones match first. */
export const PARTITIONS = Object.freeze([
  { name: 'aws-cn', dnsSuffix: 'amazonaws.com.cn', globalRegion: 'cn-north-1', regionPrefix: 'cn-', globalStsHost: null, fips: false },
  { name: 'aws-us-gov', dnsSuffix: 'amazonaws.com', globalRegion: 'us-gov-west-1', regionPrefix: 'us-gov-', globalStsHost: null, fips: true },
  { name: 'aws-iso-b', dnsSuffix: 'sc2s.sgov.gov', globalRegion: 'us-isob-east-1', regionPrefix: 'us-isob-', globalStsHost: null, fips: false },
  { name: 'aws-iso-f', dnsSuffix: 'csp.hci.ic.gov', globalRegion: 'us-isof-south-1', regionPrefix: 'us-isof-', globalStsHost: null, fips: false },
  { name: 'aws-iso', dnsSuffix: 'c2s.ic.gov', globalRegion: 'us-iso-east-1', regionPrefix: 'us-iso-', globalStsHost: null, fips: false },
  { name: 'aws-iso-e', dnsSuffix: 'cloud.adc-e.uk', globalRegion: 'eu-isoe-west-1', regionPrefix: 'eu-isoe-', globalStsHost: null, fips: false },
  { name: 'aws-eusc', dnsSuffix: 'amazonaws.eu', globalRegion: 'eusc-de-east-1', regionPrefix: 'eusc-', globalStsHost: null, fips: false },
  { name: 'aws', dnsSuffix: 'amazonaws.com', globalRegion: 'us-east-1', regionPrefix: '', globalStsHost: 'sts.amazonaws.com', fips: true },
].map(Object.freeze));

export const REGIONS = Object.freeze({
  aws: new Set([
    'af-south-1', 'ap-east-1', 'ap-northeast-1', 'ap-northeast-2', 'ap-northeast-3', 'ap-south-1', 'ap-south-2',
    'ap-southeast-1', 'ap-southeast-2', 'ap-southeast-3', 'ap-southeast-4', 'ap-southeast-5', 'ap-southeast-7',
    'ca-central-1', 'ca-west-1', 'eu-central-1', 'eu-central-2', 'eu-north-1', 'eu-south-1', 'eu-south-2', 'eu-west-1',
    'eu-west-2', 'eu-west-3', 'il-central-1', 'me-central-1', 'me-south-1', 'mx-central-1', 'sa-east-1', 'us-east-1',
    'us-east-2', 'us-west-1', 'us-west-2',
  ]),
  'aws-cn': new Set(['cn-north-1', 'cn-northwest-1']),
  'aws-iso': new Set(['us-iso-east-1', 'us-iso-west-1']),
  'aws-iso-b': new Set(['us-isob-east-1']),
  'aws-iso-e': new Set(['eu-isoe-west-1']),
  'aws-iso-f': new Set(),
  'aws-us-gov': new Set(['us-gov-east-1', 'us-gov-west-1']),
});

export function named(name) {
  return PARTITIONS.find((p) => p.name === name) ?? null;
}

export function ofRegion(region) {
  return PARTITIONS.find((p) => region.startsWith(p.regionPrefix));
}

/** `eu-west-1`, `us-gov-west-1`: lowercase words and a number of one or two digits. */
export function isRegionName(s) {
  const parts = s.split('-');
  const number = parts[parts.length - 1];
  const words = parts.slice(0, -1);
  return parts.length >= 3 && parts.length <= 5 && s.length <= 30
    && words.every((w) => /^[a-z]+$/.test(w)) && /^[0-9]{1,2}$/.test(number);
}

export function hasRegion(partition, region) {
  return isRegionName(region) && ofRegion(region).name === partition.name;
}

/** `{ partition, signingRegion }` of an STS endpoint: the global one, or a regional or FIPS one of a region
 * that exists. Null for every other host. */
export function stsEndpoint(host) {
  const global = PARTITIONS.find((p) => p.globalStsHost === host);
  if (global) return { partition: global, signingRegion: global.globalRegion };
  let fips;
  let rest;
  if (host.startsWith('sts-fips.')) [fips, rest] = [true, host.slice('sts-fips.'.length)];
  else if (host.startsWith('sts.')) [fips, rest] = [false, host.slice('sts.'.length)];
  else return null;
  const dot = rest.indexOf('.');
  if (dot < 0) return null;
  const [region, suffix] = [rest.slice(0, dot), rest.slice(dot + 1)];
  const p = ofRegion(region);
  const ok = isRegionName(region) && (REGIONS[p.name]?.has(region) ?? false) && p.dnsSuffix === suffix && (!fips || p.fips);
  return ok ? { partition: p, signingRegion: region } : null;
}
