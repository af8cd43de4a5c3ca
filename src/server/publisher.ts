import { meshIdentityKri, type MeshTrust } from '../api/types.js';
import type { AuthorityView } from '../identity/authorities.js';
import { isUndecided, type ProxyIdentity, type SvidManager } from '../identity/svids.js';
import { aggregateTrust, flatBundlePem, type MeshTrustBundle } from '../trust/aggregate.js';
import type { SecretCache } from '../xds/cache.js';
import {
  ALL_TRUST_SECRET,
  classifySecretName,
  DEFAULT_SECRET,
  ROOTCA_SECRET,
  SYSTEM_TRUST_BUNDLE,
  type SecretNameRef,
} from '../xds/names.js';
import type { EncodedResource, Resolution, Subscription } from '../xds/resource.js';
import { spiffeValidatorSecret, tlsCertificateSecret, trustedCaSecret } from '../xds/secrets.js';
import { flatKey } from '../api/flat-key.js';

/** The identity secret a proxy serves under `name`, if that name is one of its aliases. */
function identitySecret(name: string, identity: ProxyIdentity | undefined): EncodedResource | undefined {
  if (identity?.state !== 'issued') return undefined;
  if (name !== 'default' && name !== identity.spiffeId && name !== identity.identity.kri) return undefined;
  const { certChainPem, keyPem, serialHex } = identity.svid;
  return tlsCertificateSecret(name, certChainPem, keyPem, serialHex);
}

/** Per mesh, everything of its MeshTrusts that the bundles are made of (names, trust domains, CA PEMs). */
function trustSignatures(trusts: readonly MeshTrust[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const t of trusts) {
    let sig = `${out.get(t.mesh) ?? ''}${t.name}\u0000${t.spec.trustDomain}\u0000`;
    for (const b of t.spec.caBundles) sig += `${b.pem.value}\u0000`;
    out.set(t.mesh, `${sig}\n`);
  }
  return out;
}

// Name classification is pure and names repeat across streams (a storm asks for `default` and
// `system_trust_bundle` thousands of times): remember it. Clients choose the names (up to 1 MiB
// each), so the cache is bounded in bytes, not entries, and keeps only what can be served: an
// invalid name (one longer than MAX_SECRET_NAME_LENGTH among them) fails its stream, and
// classifying it again is cheap and rare.
const FIXED_NAMES = new Map<string, SecretNameRef>(
  [DEFAULT_SECRET, SYSTEM_TRUST_BUNDLE, ALL_TRUST_SECRET, ROOTCA_SECRET].map((n) => [n, classifySecretName(n)]),
);
/** Budget for the cached names; a cached ref holds its name and parts of it, hence twice its length. */
const CLASSIFIED_MAX_BYTES = 4 * 1024 * 1024;
/** What an eviction leaves (see classify). */
const CLASSIFIED_LOW_BYTES = (CLASSIFIED_MAX_BYTES * 3) / 4;
const ENTRY_OVERHEAD_BYTES = 128;
const entryBytes = (name: string) => 2 * name.length + ENTRY_OVERHEAD_BYTES;
const classified = new Map<string, SecretNameRef>();
let classifiedBytes = 0;
let evictionScans = 0;

function classify(name: string): SecretNameRef {
  const fixed = FIXED_NAMES.get(name);
  if (fixed) return fixed;
  let ref = classified.get(name);
  if (ref) return ref;
  ref = classifySecretName(name);
  if (ref.kind === 'invalid') return ref;
  const cost = entryBytes(name);
  if (classifiedBytes + cost > CLASSIFIED_MAX_BYTES) {
    // Oldest first (Map keeps insertion order): names of live proxies are asked for again and come
    // back. Down to three quarters at once: a Map's deleted entries stay in it (skipped by each new
    // iteration) until it is resized, and one eviction per new name walked past all the earlier
    // ones: 15 µs per name with 22,000 short names cached, 20 times the classification itself.
    evictionScans++;
    for (const old of classified.keys()) {
      if (classifiedBytes + cost <= CLASSIFIED_LOW_BYTES) break;
      classified.delete(old);
      classifiedBytes -= entryBytes(old);
    }
  }
  classified.set(name, ref);
  classifiedBytes += cost;
  return ref;
}

/** For tests: the cached classification and what the cache holds. */
export { classify as classifyCached };
export const nameCacheStats = () => ({ entries: classified.size, bytes: classifiedBytes, maxBytes: CLASSIFIED_MAX_BYTES, evictionScans });

export const TRUST_ALL_NAMES = ['system_trust_bundle', 'ALL'] as const;

// Cache keys. Mesh-wide secrets are shared by every proxy of the mesh; identity secrets are per
// proxy and per alias (Envoy requires the Secret's name to equal the name it asked for).
const meshKey = (mesh: string, name: string) => flatKey('mesh|', mesh, '|', name);
const rootCaKey = (mesh: string, td: string) => flatKey('mesh|', mesh, '|ROOTCA|', td);
const proxySecretKey = (pk: string, name: string) => flatKey('proxy|', pk, '|', name);
/** Changes whenever a proxy's identity state changes, so streams re-resolve names that depend on it. */
export const proxyMetaKey = (pk: string) => flatKey('proxy|', pk, '|#');
/** Changes whenever a mesh's set of trust domains changes (wildcard streams list them). */
export const meshMetaKey = (mesh: string) => flatKey('mesh|', mesh, '|#');

export interface PublisherOptions {
  zone: string;
  /** Serve `system_trust_bundle`/`ALL` as a flat `trusted_ca` + SAN matchers (Envoys without the SPIFFE validator). */
  flatTrust?: boolean;
  /** Told of CA bundles left out of a mesh's trust (aggregateTrust `rejected`), of CAs with keys peers refuse (`unusable`) and of domains no root anchors (`unanchored`), once per change of its trusts. */
  log?: { warn: (o: object, m: string) => void };
}

/**
 * Feeds the secret cache from the identity view (mesh trust bundles) and the SVID manager (one
 * identity per proxy), and tells each stream which cache entries its names resolve to.
 */
export class SecretPublisher {
  private readonly bundles = new Map<string, MeshTrustBundle>();
  /** Bumped when a mesh's set of trust domains changes (what a wildcard subscription lists). */
  private readonly meshEpochs = new Map<string, number>();
  /** What each mesh's bundles were computed from (see trustSignatures). */
  private readonly trustSignatures = new Map<string, string>();
  /** Identity aliases encoded per proxy (`default`, its SPIFFE ID, its KRI). */
  private readonly proxyNames = new Map<string, Set<string>>();
  private lastTrusts: AuthorityView['trusts'] | undefined;

  constructor(
    private readonly cache: SecretCache,
    private readonly svids: SvidManager,
    private readonly opts: PublisherOptions,
  ) {}

  /** Active cache watches, one per open stream or waiting fetch: 0 when none is open (leak checks). */
  get watchCount(): number {
    return this.cache.watchCount;
  }

  bundle(mesh: string): MeshTrustBundle | undefined {
    return this.bundles.get(mesh);
  }

  /**
   * Recomputes the trust secrets of every mesh whose MeshTrusts changed; unchanged content keeps
   * its version (no push). Most views change something else (a Dataplane): parsing every CA again
   * for each of them would cost more than the change itself.
   */
  setView(view: AuthorityView): void {
    // Views made for a Dataplane change share the previous view's trusts: nothing to look at.
    if (view.trusts === this.lastTrusts) return;
    this.lastTrusts = view.trusts;
    const meshes = new Set<string>([...this.bundles.keys(), ...view.trusts.map((t) => t.mesh)]);
    const signatures = trustSignatures(view.trusts);
    for (const mesh of meshes) {
      const signature = signatures.get(mesh) ?? '';
      if (this.bundles.has(mesh) && this.trustSignatures.get(mesh) === signature) continue;
      this.trustSignatures.set(mesh, signature);
      const bundle = aggregateTrust(view.trusts, mesh);
      for (const r of bundle.rejected ?? []) this.opts.log?.warn({ mesh, ...r }, 'a MeshTrust CA bundle is not all certificates; it is not trusted');
      for (const ca of bundle.unusable ?? []) {
        this.opts.log?.warn({ mesh, ...ca }, 'a MeshTrust CA has a key peers refuse to trust (federated mesh-sds, Go verifiers); it is still served: replace it');
      }
      for (const trustDomain of bundle.unanchored ?? []) {
        this.opts.log?.warn({ mesh, trustDomain }, "no CA of this trust domain is self-signed: Envoy's SPIFFE validator (system_trust_bundle, ALL) accepts no partial chain and refuses its SVIDs; add the domain's root to a MeshTrust");
      }
      const before = this.bundles.get(mesh);
      this.bundles.set(mesh, bundle);
      const domains = bundle.domains.map((d) => ({ trustDomain: d.trustDomain, pem: d.pem }));
      const tds = domains.map((d) => d.trustDomain);
      for (const name of TRUST_ALL_NAMES) {
        let secret: EncodedResource | undefined;
        // Envoy rejects a SPIFFE validator with no trust domains: hold the name until one exists.
        if (domains.length > 0) secret = this.opts.flatTrust ? trustedCaSecret(name, flatBundlePem(bundle), tds) : spiffeValidatorSecret(name, domains);
        this.cache.set(meshKey(mesh, name), secret);
      }
      const live = new Set(tds);
      for (const d of bundle.domains) {
        this.cache.set(meshKey(mesh, `spiffe://${d.trustDomain}`), trustedCaSecret(`spiffe://${d.trustDomain}`, d.pem));
        this.cache.set(rootCaKey(mesh, d.trustDomain), trustedCaSecret('ROOTCA', d.pem));
      }
      for (const d of before?.domains ?? []) {
        if (live.has(d.trustDomain)) continue;
        this.cache.set(meshKey(mesh, `spiffe://${d.trustDomain}`), undefined);
        this.cache.set(rootCaKey(mesh, d.trustDomain), undefined);
      }
      if (before === undefined || before.domains.map((d) => d.trustDomain).join() !== tds.join()) {
        this.meshEpochs.set(mesh, (this.meshEpochs.get(mesh) ?? 0) + 1);
        this.cache.touch(meshMetaKey(mesh));
      }
    }
  }

  /**
   * Republishes one proxy's identity secrets after the SVID manager announced a change. Only the
   * aliases some stream asked for are encoded (most proxies use one), and dropped when the new
   * identity no longer carries them (e.g. its old SPIFFE ID).
   */
  proxyChanged(pk: string): void {
    const identity = this.svids.get(pk);
    const names = this.proxyNames.get(pk);
    if (names) {
      for (const name of [...names]) {
        const secret = identitySecret(name, identity);
        this.cache.set(proxySecretKey(pk, name), secret);
        if (!secret) names.delete(name);
      }
      if (names.size === 0) this.proxyNames.delete(pk);
    }
    this.cache.touch(proxyMetaKey(pk));
  }

  /** Encodes an identity alias the first time a stream asks for it. */
  private materialize(pk: string, name: string, identity: ProxyIdentity | undefined): EncodedResource | undefined {
    const secret = identitySecret(name, identity);
    if (!secret) return undefined;
    let names = this.proxyNames.get(pk);
    if (!names) this.proxyNames.set(pk, (names = new Set()));
    names.add(name);
    this.cache.set(proxySecretKey(pk, name), secret);
    return secret;
  }

  /** Forgets a proxy that has gone (its last stream closed and the grace period passed). */
  proxyGone(pk: string): void {
    for (const name of this.proxyNames.get(pk) ?? []) this.cache.set(proxySecretKey(pk, name), undefined);
    this.proxyNames.delete(pk);
  }

  /** Every name a wildcard subscription of this proxy gets. */
  private wildcardNames(mesh: string, identity: ProxyIdentity | undefined): string[] {
    const names: string[] = [...TRUST_ALL_NAMES];
    if (identity?.state === 'issued') names.push('default', identity.spiffeId, identity.identity.kri, 'ROOTCA');
    for (const d of this.bundles.get(mesh)?.domains ?? []) names.push(`spiffe://${d.trustDomain}`);
    return names;
  }

  /** The cache key a name resolves to for this proxy, or an invalid-name reason. */
  private keyFor(pk: string, mesh: string, name: string, identity: ProxyIdentity | undefined): { key?: string; invalid?: true; alias?: true } {
    const ref = classify(name);
    switch (ref.kind) {
      case 'invalid':
        return { invalid: true };
      case 'identity':
        // A KRI of another mesh or zone can never be this proxy's identity.
        if (ref.kri.mesh !== mesh || ref.kri.zone !== this.opts.zone) return { invalid: true };
        if (identity?.state === 'issued' && meshIdentityKri(identity.identity.identity, this.opts.zone) === name) return { key: proxySecretKey(pk, name), alias: true };
        return {};
      case 'default':
        return { key: proxySecretKey(pk, name), alias: true };
      case 'svid':
        if (identity?.state === 'issued' && identity.spiffeId === name) return { key: proxySecretKey(pk, name), alias: true };
        return {};
      case 'trustAll':
        return { key: meshKey(mesh, name) };
      case 'rootCa':
        if (identity?.state === 'issued' || identity?.state === 'spire') return { key: rootCaKey(mesh, identity.trustDomain) };
        return {};
      case 'trustDomain':
        return { key: meshKey(mesh, name) };
    }
  }

  /** Which cache key each subscribed name reads: depends only on the subscription, the proxy's identity and (for a wildcard) the mesh's trust domains. */
  /**
   * `previous`: the stream's plan for another subscription with the same identity and trust
   * domains: a name it resolved keeps its entry (the same key string, whose hash V8 keeps), so a
   * delta request changing one name of a thousand costs map lookups, not a thousand new keys.
   */
  /** @internal */ plan(pk: string, mesh: string, sub: Subscription, identity: ProxyIdentity | undefined, previous?: ResolutionPlan): ResolutionPlan {
    const names = sub.wildcard ? [...new Set([...this.wildcardNames(mesh, identity), ...sub.names])] : sub.names;
    const entries: PlanEntry[] = [];
    const invalid: string[] = [];
    const unresolvable: string[] = [];
    const otherIdentity: string[] = [];
    // Names that read only the mesh's bundles (Envoy's second stream) neither change with the
    // proxy's identity nor wait for it: such a stream is not woken when an SVID is issued.
    const byIdentity = sub.wildcard || this.namesDependOnIdentity(sub.names);
    const watchKeys = byIdentity ? [proxyMetaKey(pk)] : [];
    if (sub.wildcard) watchKeys.push(meshMetaKey(mesh));
    const known = previous && previous.entries.length > 0 ? new Map(previous.entries.map((e) => [e.name, e])) : undefined;
    for (const name of names) {
      const kept = known?.get(name);
      if (kept) {
        watchKeys.push(kept.key);
        entries.push(kept);
        continue;
      }
      const { key, invalid: bad, alias } = this.keyFor(pk, mesh, name, identity);
      if (bad) invalid.push(name);
      else if (!key) {
        unresolvable.push(name);
        // A KRI or SPIFFE ID naming an identity the proxy does not have (any more): held for good
        // unless it moves back, while Envoy keeps the certificate it has until that expires.
        if (identity?.state === 'issued' && isIdentityName(name)) otherIdentity.push(name);
      } else {
        watchKeys.push(key);
        entries.push({ name, key, alias: alias === true });
      }
    }
    // A stream keeps its plan for days: arrays of exactly their length (push leaves room for 17).
    return {
      entries: exact(entries),
      invalid: exact(invalid),
      unresolvable: exact(unresolvable),
      notThisIdentity: otherIdentity.length > 0 && identity?.state === 'issued' ? { names: otherIdentity, kri: identity.identity.kri, spiffeId: identity.spiffeId } : undefined,
      watchKeys: exact(watchKeys),
      byIdentity,
      undecided: byIdentity && isUndecided(identity),
    };
  }

  /**
   * Whether a stream's first request for these names waits for the proxy's first SVID: its answer
   * depends on the identity, and no name can never exist (SPEC §3: such a stream fails at once).
   * One pass over the names, classifying each once.
   */
  firstAnswerWaitsForIdentity(names: readonly string[] | undefined): boolean {
    if (!names || names.length === 0) return true;
    let depends = false;
    for (const name of names) {
      if (name === '*') {
        depends = true;
        continue;
      }
      const kind = classify(name).kind;
      if (kind === 'invalid') return false;
      if (identityDependent(kind)) depends = true;
    }
    return depends;
  }

  /**
   * Whether the answer to these names can depend on the proxy's identity: a wildcard (no names,
   * `*`) or any identity alias or ROOTCA can; the mesh's trust bundles cannot, so a stream asking
   * only for those has no reason to wait for the proxy's first SVID.
   */
  namesDependOnIdentity(names: readonly string[] | undefined): boolean {
    if (!names || names.length === 0) return true;
    for (const name of names) {
      if (name === '*') return true;
      const kind = classify(name).kind;
      if (kind !== 'trustAll' && kind !== 'trustDomain' && kind !== 'invalid') return true;
    }
    return false;
  }

  /** A resolver for one stream; see StreamResolver. */
  resolverFor(pk: string, mesh: string, opts: { allowEmptyTypeUrl?: boolean; maxSubscribedNames?: number } = {}): StreamResolver {
    return new StreamResolver(this, pk, mesh, opts.allowEmptyTypeUrl ?? true, opts.maxSubscribedNames);
  }

  /** @internal */ identityOf(pk: string): ProxyIdentity | undefined {
    return this.svids.get(pk);
  }

  /** @internal */ meshEpoch(mesh: string): number {
    return this.meshEpochs.get(mesh) ?? 0;
  }

  /** @internal */ read(pk: string, entry: PlanEntry, identity: ProxyIdentity | undefined): EncodedResource | undefined {
    return this.cache.get(entry.key) ?? (entry.alias ? this.materialize(pk, entry.name, identity) : undefined);
  }
}

/**
 * Resolves one stream's subscription. It is also the state machine's step context (one object per
 * stream, no closures). Its plan (name → cache key) is kept while the subscription, the proxy's
 * identity and the mesh's trust domains stay the same, so a push only reads the cache.
 */
export class StreamResolver {
  private memo: { sub: Subscription; identity: ProxyIdentity | undefined; epoch: number; plan: ResolutionPlan } | undefined;

  constructor(
    private readonly publisher: SecretPublisher,
    private readonly pk: string,
    private readonly mesh: string,
    readonly allowEmptyTypeUrl: boolean,
    /** The stream's step context too: a delta stream's cap on its whole subscription. */
    readonly maxSubscribedNames?: number,
  ) {}

  resolve(sub: Subscription): Resolution {
    const identity = this.publisher.identityOf(this.pk);
    const epoch = this.publisher.meshEpoch(this.mesh);
    const memo = this.memo;
    if (!memo || memo.sub !== sub || (memo.plan.byIdentity && memo.identity !== identity) || (sub.wildcard && memo.epoch !== epoch)) {
      // Only a subscription changed: what the last plan resolved still resolves the same way.
      const previous = memo && memo.identity === identity && memo.epoch === epoch ? memo.plan : undefined;
      this.memo = { sub, identity, epoch, plan: this.publisher.plan(this.pk, this.mesh, sub, identity, previous) };
    }
    const { entries, invalid, unresolvable, undecided } = this.memo!.plan;
    const resources = new Map<string, EncodedResource>();
    // Only an undecided identity has pending names: otherwise no list is made per resolution.
    const pending = undecided ? [...unresolvable] : undefined;
    for (const entry of entries) {
      const r = this.publisher.read(this.pk, entry, identity);
      if (r) resources.set(entry.name, r);
      else pending?.push(entry.name);
    }
    // A wildcard lists identity names only once they are known: a reconnecting delta client's
    // claimed SVID (default, its KRI, its SPIFFE ID) was announced removed while it was being issued.
    if (undecided && sub.wildcard) return { resources, invalid, pending: pending ?? NONE, isPending: dependsOnIdentity };
    return { resources, invalid, pending: pending ?? NONE };
  }

  /** The cache keys the last resolution read: what the stream must watch. */
  get watchKeys(): readonly string[] {
    return this.memo?.plan.watchKeys ?? NONE;
  }

  /** Identity names (KRI, SPIFFE ID) the last resolution held because they are another identity's; the same object until the plan changes. */
  get notThisIdentity(): NotThisIdentity | undefined {
    return this.memo?.plan.notThisIdentity;
  }
}

/** Identity names a stream asked for that are not its proxy's identity, with the names that are. */
export interface NotThisIdentity {
  names: readonly string[];
  kri: string;
  spiffeId: string;
}

/** Whether a kind of name's secret comes from the proxy's identity (an alias or ROOTCA), not only the mesh's bundles. */
function identityDependent(kind: SecretNameRef['kind']): boolean {
  return kind === 'default' || kind === 'identity' || kind === 'svid' || kind === 'rootCa';
}

const dependsOnIdentity = (name: string): boolean => identityDependent(classify(name).kind);

function isIdentityName(name: string): boolean {
  const kind = classify(name).kind;
  return kind === 'identity' || kind === 'svid';
}

const NONE: readonly never[] = Object.freeze([]);
/** The same items in an array with no spare capacity (the shared empty one when there are none). */
function exact<T>(items: T[]): readonly T[] {
  return items.length === 0 ? NONE : items.slice();
}

interface PlanEntry {
  name: string;
  key: string;
  /** An identity alias, encoded on first use. */
  alias: boolean;
}

interface ResolutionPlan {
  entries: readonly PlanEntry[];
  invalid: readonly string[];
  /** Valid names with no cache key for this proxy now (e.g. a SPIFFE ID that is not its own). */
  unresolvable: readonly string[];
  /** Those of them that name an identity other than the one the proxy was issued. */
  notThisIdentity: NotThisIdentity | undefined;
  watchKeys: readonly string[];
  /** Whether the names depend on the proxy's identity (aliases, ROOTCA, a wildcard): the plan is then redone when it changes. */
  byIdentity: boolean;
  /** The proxy's identity is not decided yet and the names depend on it: what is missing is pending, not absent. */
  undecided: boolean;
}
