// Helpers for the xDS protocol-core tests: fake encoded secrets and a map-backed resolver.
import type { EncodedResource, Resolution, Resolver, Subscription } from '../../src/xds/resource.js';
import { SECRET_TYPE_URL } from '../../src/xds/resource.js';
import type { StepContext } from '../../src/xds/common.js';

export const TYPE = SECRET_TYPE_URL;

export function res(name: string, version: string): EncodedResource {
  return { name, version, any: { type_url: TYPE, value: Buffer.from(`${name}@${version}`) } };
}

/**
 * A world the tests mutate between steps: `resources` are what the proxy may have (wildcard
 * returns them all); names matching `isInvalid` can never exist.
 */
export class World {
  readonly resources = new Map<string, EncodedResource>();
  readonly calls: Subscription[] = [];
  isInvalid: (name: string) => boolean = (n) => n.startsWith('bogus');

  put(name: string, version: string): EncodedResource {
    const r = res(name, version);
    this.resources.set(name, r);
    return r;
  }

  drop(name: string): void {
    this.resources.delete(name);
  }

  readonly resolve: Resolver = (sub): Resolution => {
    this.calls.push(sub);
    const out = new Map<string, EncodedResource>();
    if (sub.wildcard) for (const [n, r] of this.resources) out.set(n, r);
    for (const n of sub.names) {
      const r = this.resources.get(n);
      if (r) out.set(n, r);
    }
    return { resources: out, invalid: sub.names.filter((n) => this.isInvalid(n)) };
  };
}

export function ctxFor(world: World, extra: Partial<StepContext> = {}): StepContext {
  let n = 0;
  return { resolve: world.resolve, nonce: () => `n${++n}`, ...extra };
}
