// Status conditions of a ClusterFederatedTrustDomain: `Fetched` (the last refresh) and `Ready`
// (a bundle is trusted), with the reason and what is kept on failure.
import type { FederatedDomain } from './follower.js';

export interface FederationCondition {
  type: 'Fetched' | 'Ready' | 'MeshTrustCreated';
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

const REASONS: Record<string, string> = {
  unreachable: 'EndpointUnreachable',
  timeout: 'EndpointTimeout',
  tls: 'TlsAuthenticationFailed',
  wrong_spiffe_id: 'WrongEndpointSpiffeId',
  http_status: 'HttpError',
  malformed: 'MalformedBundle',
  no_ca: 'NoCa',
  no_valid_ca: 'NoValidCa',
  too_many_cas: 'TooManyCas',
  unacceptable_ca_key: 'UnacceptableCaKey',
  wrong_trust_domain: 'WrongTrustDomain',
  sequence_regressed: 'SequenceRegressed',
};

/** The bundle in force, e.g. `fetched 2025-…Z (sequence 3, 2 CAs)` or `the bootstrap bundle (1 CA)`. */
export function describeBundle(d: Pick<FederatedDomain, 'bundle' | 'source' | 'fetchedAt'>): string {
  if (!d.bundle) return 'no bundle';
  const seq = d.bundle.sequence !== undefined ? `sequence ${d.bundle.sequence}, ` : '';
  const from = d.source === 'endpoint' ? `fetched ${d.fetchedAt?.toISOString() ?? ''}`.trim() : 'the bootstrap bundle';
  return `${from} (${seq}${d.bundle.caPems.length} CA${d.bundle.caPems.length === 1 ? '' : 's'})`;
}

export function federationConditions(d: Pick<FederatedDomain, 'bundle' | 'source' | 'fetchedAt' | 'lastError' | 'lastAttemptAt' | 'endpointURL' | 'trustDomain'>): FederationCondition[] {
  let fetched: FederationCondition;
  if (d.lastError) {
    const keeping = d.bundle ? `; keeping the last good bundle: ${describeBundle(d)}` : '; no bundle to keep yet';
    fetched = { type: 'Fetched', status: 'False', reason: REASONS[d.lastError.reason] ?? 'Failed', message: `${d.lastError.message} (at ${d.lastError.at.toISOString()})${keeping}` };
  } else if (d.source === 'endpoint' && d.fetchedAt) {
    fetched = { type: 'Fetched', status: 'True', reason: 'Fetched', message: `bundle ${describeBundle(d)} from ${d.endpointURL}` };
  } else {
    fetched = { type: 'Fetched', status: 'Unknown', reason: 'Pending', message: `first fetch from ${d.endpointURL} not done yet` };
  }
  const ready: FederationCondition = d.bundle
    ? { type: 'Ready', status: 'True', reason: d.source === 'endpoint' ? 'Trusted' : 'BootstrapBundle', message: `a bundle of trust domain ${d.trustDomain} is in force: ${describeBundle(d)}` }
    : { type: 'Ready', status: 'False', reason: 'NoBundle', message: `no bundle of ${d.trustDomain} yet (https_web: waiting for the first fetch)` };
  return [fetched, ready];
}
