// What the protocol core knows about a secret: its name, a version, and its bytes already
// wrapped in a google.protobuf.Any. Encoding happens once, upstream; every stream shares the Buffer.

export const SECRET_TYPE_URL = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';

export interface EncodedResource {
  readonly name: string;
  readonly version: string;
  /** google.protobuf.Any of the Secret, encoded once and shared by every stream */
  readonly any: { type_url: string; value: Buffer };
}

/**
 * What a stream is subscribed to. `names` is sorted, deduplicated and never contains `*`. An empty
 * string is kept as the name it is: it can never exist, so resolving it fails the stream (SPEC §3).
 */
export interface Subscription {
  readonly wildcard: boolean;
  readonly names: readonly string[];
}

/**
 * The resolver's answer for a subscription, keyed by the name the client asked for.
 * A valid name that is not resolvable yet is simply absent (held); names that can never
 * exist for this proxy go in `invalid` and fail the stream.
 */
export interface Resolution {
  readonly resources: ReadonlyMap<string, EncodedResource>;
  readonly invalid: readonly string[];
  /**
   * Valid names whose fate is not decided yet (e.g. the proxy's SVID is still being issued after a
   * restart): a delta stream must not report them removed just because they are not there yet.
   */
  readonly pending?: readonly string[];
  /**
   * Names of a shape whose fate is not decided yet, for names no list can give: a wildcard's
   * identity names (KRI, SPIFFE ID, `default`, ROOTCA) are not known before the identity is, yet a
   * reconnecting client claims them in initial_resource_versions.
   */
  readonly isPending?: (name: string) => boolean;
}

/** Supplied by the transport; reads the current cache. Called only when a step needs it. */
export type Resolver = (subscription: Subscription) => Resolution;

export const EMPTY_SUBSCRIPTION: Subscription = Object.freeze({ wildcard: false, names: Object.freeze([]) as readonly string[] });

/**
 * Sorted, deduplicated names without `*` (reported separately). `''` stays a name: dropping it made
 * `[""]` an empty list, i.e. a wildcard, and hid it from the resolver that refuses it.
 */
export function normaliseNames(names: readonly string[] | undefined): { names: string[]; star: boolean } {
  const set = new Set<string>();
  let star = false;
  for (const n of names ?? []) {
    if (n === '*') star = true;
    else set.add(n);
  }
  return { names: [...set].sort(), star };
}

export function sameSubscription(a: Subscription, b: Subscription): boolean {
  return a === b || (a.wildcard === b.wildcard && sameStrings(a.names, b.names));
}

/** The same strings in the same order. */
export function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The resolved resources that belong to `sub` (the resolver may return extras; they are dropped).
 * A resolution that holds nothing else is returned as it is (the usual case: no copy per push).
 */
export function restrictTo(sub: Subscription, resources: ReadonlyMap<string, EncodedResource>): ReadonlyMap<string, EncodedResource> {
  if (sub.wildcard || onlyNamesOf(sub, resources)) return resources;
  const out = new Map<string, EncodedResource>();
  for (const name of sub.names) {
    const r = resources.get(name);
    if (r) out.set(name, r);
  }
  return out;
}

/** Whether every key of `resources` is one of the subscription's names (a few are looked up; many: no). */
function onlyNamesOf(sub: Subscription, resources: ReadonlyMap<string, EncodedResource>): boolean {
  if (resources.size > sub.names.length || sub.names.length > 8) return false;
  for (const name of resources.keys()) if (!sub.names.includes(name)) return false;
  return true;
}

/** Whether `resources` are exactly the names and versions of `sent` (no map is built to find out). */
export function sameVersionsAs(resources: ReadonlyMap<string, EncodedResource>, sent: ReadonlyMap<string, string>): boolean {
  if (resources.size !== sent.size) return false;
  for (const [name, r] of resources) if (sent.get(name) !== r.version) return false;
  return true;
}

/** name → version of a resource map. */
export function versionsOf(resources: ReadonlyMap<string, EncodedResource>): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, r] of resources) out.set(name, r.version);
  return out;
}
