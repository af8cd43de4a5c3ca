// What is persisted per federated trust domain (state key `federation/<td>`): the last accepted
// bundle and the outcome of the last refresh, so a restart needs no remote and replicas share it.
import type { StateStore } from '../store/types.js';
import type { AcceptedBundle } from './accept.js';
import type { FailureReason } from './fetch.js';

export interface FederationRecord {
  trustDomain: string;
  /** The ClusterFederatedTrustDomain that fetched it. */
  resource: string;
  endpointURL: string;
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
