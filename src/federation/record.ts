// What is persisted per federated trust domain (state key `federation/<td>`): the last accepted
// bundle and the outcome of the last refresh, so a restart needs no remote and replicas share it.
import { createHash, X509Certificate } from 'node:crypto';
import type { FederationSpec } from '../api/types.js';
import type { StateStore } from '../store/types.js';
import type { AcceptedBundle } from './accept.js';
import { readBundleDocument } from './bundle.js';
import { FAILURE_REASONS, type FailureReason } from './fetch.js';
import { hasUnreadableValidity, splitPemCertificates } from '../api/pem.js';
import { caSetDigest } from './sequence.js';

export interface FederationRecord {
  trustDomain: string;
  /** The ClusterFederatedTrustDomain that fetched it. */
  resource: string;
  endpointURL: string;
  /**
   * caSetDigest of the bootstrap bundle the record descends from ('' without one). Absent in
   * records written before it existed: those are adopted, and stamped on the next write.
   */
  bootstrapDigest?: string;
  /** The last bundle accepted from the endpoint (absent until the first success). */
  bundle?: AcceptedBundle;
  /** ISO time of the last accepted fetch. */
  fetchedAt?: string;
  lastAttemptAt?: string;
  lastError?: { reason: FailureReason; message: string; at: string };
}

export const federationStateKey = (trustDomain: string): string => `federation/${trustDomain}`;

/** Called with the state key and what was wrong when a stored record had to be read around damage. */
export type OnDamagedRecord = (stateKey: string, problems: string[]) => void;

/**
 * The stored record of a trust domain, read tolerantly: a truncated write or a hand edit must not
 * turn federation off (one bad date used to throw from every reader, for every trust domain).
 * Every field used is checked; a damaged optional field is dropped, a damaged bundle (or one whose
 * lineage cannot be told) is dropped so the domain starts from its bootstrap bundle, and a record
 * that is not one at all reads as absent. `onDamaged` hears of each, naming the state key.
 */
export async function loadFederationRecord(state: StateStore, trustDomain: string, onDamaged?: OnDamagedRecord): Promise<FederationRecord | undefined> {
  const key = federationStateKey(trustDomain);
  const text = await state.get(key);
  if (text === undefined) return undefined;
  const problems: string[] = [];
  const r = parseFederationRecord(text, trustDomain, problems);
  if (problems.length > 0) onDamaged?.(key, problems);
  return r;
}

export function parseFederationRecord(text: string, trustDomain: string, problems: string[]): FederationRecord | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    problems.push(`not JSON (${(e as Error).message})`);
    return undefined;
  }
  if (!isObject(v)) {
    problems.push('not a JSON object');
    return undefined;
  }
  if (v.trustDomain !== trustDomain) {
    problems.push(`trustDomain is ${JSON.stringify(v.trustDomain)}, not ${JSON.stringify(trustDomain)}`);
    return undefined;
  }
  // Without its endpoint the record's lineage is unknown (descendsFrom): its bundle is not used.
  let endpointURL = '';
  if (typeof v.endpointURL === 'string') endpointURL = v.endpointURL;
  else problems.push('endpointURL is not a string (the stored bundle is not used)');
  const r: FederationRecord = { trustDomain, resource: typeof v.resource === 'string' ? v.resource : '', endpointURL };
  if (typeof v.resource !== 'string') problems.push('resource is not a string');
  let lineageKnown = endpointURL !== '';
  if (v.bootstrapDigest !== undefined) {
    // Absent means "adopt" (an old record): a damaged one must not be read as that.
    if (typeof v.bootstrapDigest === 'string') r.bootstrapDigest = v.bootstrapDigest;
    else {
      problems.push('bootstrapDigest is not a string (the stored bundle is not used)');
      lineageKnown = false;
    }
  }
  if (v.bundle !== undefined) {
    const bundle = readBundle(v.bundle, trustDomain, problems);
    if (bundle && lineageKnown) r.bundle = bundle;
  }
  for (const f of ['fetchedAt', 'lastAttemptAt'] as const) {
    if (v[f] === undefined) continue;
    if (isTime(v[f])) r[f] = v[f];
    else problems.push(`${f} ${JSON.stringify(v[f])} is not a time (dropped)`);
  }
  if (v.lastError !== undefined) {
    const e = v.lastError;
    if (isObject(e) && (FAILURE_REASONS as readonly unknown[]).includes(e.reason) && typeof e.message === 'string' && isTime(e.at)) {
      r.lastError = { reason: e.reason as FailureReason, message: e.message, at: e.at };
    } else problems.push('lastError is not a known reason, a message and a time (dropped)');
  }
  return r;
}

/** The stored bundle when every CA is one parseable CA certificate; a damaged sequence or hint is dropped. */
function readBundle(b: unknown, trustDomain: string, problems: string[]): AcceptedBundle | undefined {
  const damaged = (why: string) => {
    problems.push(`bundle: ${why} (starting from the bootstrap bundle)`);
    return undefined;
  };
  if (!isObject(b)) return damaged('not an object');
  if (!Array.isArray(b.caPems) || b.caPems.length === 0) return damaged('caPems is not a non-empty list');
  for (const [i, pem] of b.caPems.entries()) {
    const why = caPemProblem(pem);
    if (why) return damaged(`caPems[${i}] ${why}`);
  }
  const out: AcceptedBundle = { trustDomain, caPems: b.caPems as string[] };
  if (b.sequence !== undefined) {
    if (isCount(b.sequence)) out.sequence = b.sequence;
    else problems.push(`bundle.sequence ${JSON.stringify(b.sequence)} is not a non-negative integer (dropped)`);
  }
  if (b.refreshHintSeconds !== undefined) {
    if (isCount(b.refreshHintSeconds)) out.refreshHintSeconds = b.refreshHintSeconds;
    else problems.push(`bundle.refreshHintSeconds ${JSON.stringify(b.refreshHintSeconds)} is not a non-negative integer (dropped)`);
  }
  return out;
}

/**
 * Why a stored CA is not one PEM CA certificate. Such a bundle trusts nothing (its trust domain
 * vanished from every proxy while reported Trusted) and authenticates no endpoint (every refresh
 * failed as 'tls', blaming the peer, for good): the bootstrap bundle is the way back.
 */
function caPemProblem(pem: unknown): string | undefined {
  if (typeof pem !== 'string') return 'is not a string';
  const { ders, error } = splitPemCertificates(pem);
  if (error) return `is not a PEM certificate: ${error}`;
  if (ders.length !== 1) return `holds ${ders.length} certificates, not one`;
  const cert = new X509Certificate(ders[0]!);
  if (!cert.ca) return 'is not a CA certificate';
  // Fetched bundles with one are refused (accept.ts); one stored before that must not stay trusted.
  if (hasUnreadableValidity(cert)) return 'has a validity that cannot be read';
  return undefined;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isTime = (v: unknown): v is string => typeof v === 'string' && !Number.isNaN(Date.parse(v));
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

export async function saveFederationRecord(state: StateStore, r: FederationRecord): Promise<void> {
  await state.put(federationStateKey(r.trustDomain), JSON.stringify(r));
}

/** What a trust relationship descends from: the operator's endpoint URL and bootstrap bundle. */
export interface FederationLineage {
  endpointURL: string;
  bootstrapDigest: string;
}

export function federationLineage(spec: FederationSpec): FederationLineage {
  let bootstrapDigest = '';
  if (spec.trustDomainBundle) {
    // Validated when the resource was parsed; the CA set, so re-encoding the same CAs changes nothing.
    const cas = readBundleDocument(spec.trustDomainBundle).cas;
    bootstrapDigest = caSetDigest(cas.map((c) => createHash('sha256').update(c.raw).digest('hex')));
  }
  return { endpointURL: spec.bundleEndpointURL, bootstrapDigest };
}

/**
 * Whether a stored record belongs to this relationship. A new bootstrap bundle (the peer was
 * re-installed) or a new endpoint (whose sequence starts anew) is a fresh start: the record's
 * bundle must not outrank what the operator just gave.
 */
export function descendsFrom(r: FederationRecord, lineage: FederationLineage): boolean {
  return r.endpointURL === lineage.endpointURL && (r.bootstrapDigest === undefined || r.bootstrapDigest === lineage.bootstrapDigest);
}
