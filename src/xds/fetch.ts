// FetchSecrets (unary): the SotW response builder without nonce or stream state (SPIRE semantics:
// version_info and nonce are empty; an empty name list means every secret the proxy may have).
import type { DiscoveryRequest, DiscoveryResponse } from './messages.js';
import { SECRET_TYPE_URL, normaliseNames, restrictTo, type EncodedResource, type Resolver, type Subscription } from './resource.js';
import { checkTypeUrl, invalidNamesFailure, type FailAction, type XdsOptions } from './common.js';

export type FetchResult =
  | {
      readonly type: 'response';
      readonly response: DiscoveryResponse;
      readonly resources: readonly EncodedResource[];
      /** Requested names that are valid but not resolvable yet; the transport decides (e.g. UNAVAILABLE). */
      readonly held: readonly string[];
    }
  | FailAction;

export function fetchResponse(request: DiscoveryRequest, resolve: Resolver, opts: XdsOptions = {}): FetchResult {
  const typeFailure = checkTypeUrl(request.type_url, opts);
  if (typeFailure) return typeFailure;
  const { names, star } = normaliseNames(request.resource_names);
  const sub: Subscription = { wildcard: star || names.length === 0, names };
  const resolution = resolve(sub);
  if (resolution.invalid.length > 0) return invalidNamesFailure(resolution.invalid);
  const resolved = restrictTo(sub, resolution.resources);
  const resources = [...resolved.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return {
    type: 'response',
    response: { version_info: '', resources: resources.map((r) => r.any), type_url: opts.typeUrl ?? SECRET_TYPE_URL, nonce: '' },
    resources,
    held: names.filter((n) => !resolved.has(n)),
  };
}
