// The server's trust view: the identity layer's view with the federated MeshTrusts merged in.
import { combineLatestWith, concatMap, map, type Observable } from 'rxjs';
import { resourcesOfKind } from '../api/types.js';
import type { AuthorityView } from '../identity/authorities.js';
import type { FederationFollower } from './follower.js';
import { withFederatedTrusts, type FederatedView } from './mesh-trusts.js';

/**
 * Hands each snapshot's ClusterFederatedTrustDomains to the follower (the first view waits until
 * their persisted or bootstrap bundles are loaded), and re-emits whenever either side changes.
 */
export function federatedViews(views$: Observable<AuthorityView>, follower: FederationFollower): Observable<FederatedView> {
  return views$.pipe(
    concatMap(async (v) => {
      await follower.setResources(resourcesOfKind(v.snapshot, 'ClusterFederatedTrustDomain')).catch(() => undefined);
      return v;
    }),
    combineLatestWith(follower.state$),
    map(([v, f]) => withFederatedTrusts(v, f)),
  );
}
