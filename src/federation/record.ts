// What is persisted per federated trust domain (state key `federation/<td>`): the last accepted
// bundle and the outcome of the last refresh, so a restart needs no remote and replicas share it.
import { createHash } from 'node:crypto';
import type { FederationSpec } from '../api/types.js';
import type { StateStore } from '../store/types.js';
import type { AcceptedBundle } from './accept.js';
import { readBundleDocument } from './bundle.js';
import type { FailureReason } from './fetch.js';
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

export async function loadFederationRecord(state: StateStore, trustDomain: string): Promise<FederationRecord | undefined> {
  const text = await state.get(federationStateKey(trustDomain));
  if (text === undefined) return undefined;
  try {
    const r = JSON.parse(text) as FederationRecord;
    if (r.trustDomain !== trustDomain) return undefined;
    if (r.bundle && (!Array.isArray(r.bundle.caPems) || r.bundle.caPems.length === 0)) delete r.bundle;
    return r;
  } catch {
    return undefined;
  }
}

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
