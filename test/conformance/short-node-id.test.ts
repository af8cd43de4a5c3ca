// A namespaced Dataplane (`<name>.<namespace>`) also answers to the short node id `<mesh>.<name>`
// while it is the only one of that name in its mesh (the alias). A token is bound to the Dataplane
// it names, so under --auth token the alias is not followed (SPEC §5): a token for `db-0` must not
// be served team-a's identity, nor team-b's once team-a's db-0 is deleted and team-b's created.
// Over real gRPC (SotW, delta, ADS of both, FetchSecrets); --auth none keeps the alias.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { RunningServer } from '../../src/server/serve.js';
import { SECRET_TYPE_URL } from '../../src/xds/protos.js';
import { DeltaClient, SotwClient, deltaSecretsOf, fetchSecrets, nodeOf, secretsOf, tlsCertificate, type StreamEnd } from './envoy-client.js';
import { serverFixture } from './fixture.js';
import { DEFAULT_TD, leafInfo, makeWorld, sleep, startWorldServer, waitFor, type World } from './world.js';

const f = serverFixture({ server: { auth: 'token', admin: '127.0.0.1:0' } });
const HOUR = 3600_000;

type Variant = 'sotw' | 'delta' | 'ads' | 'ads-delta';
const VARIANTS: Variant[] = ['sotw', 'delta', 'ads', 'ads-delta'];

/** The identity a Dataplane `<name>` of namespace `team-<t>` gets (service account `<name>-<t>`). */
const spiffeOf = (name: string, t: 'a' | 'b') => `spiffe://${DEFAULT_TD}/ns/team-${t}/sa/${name}-${t}`;

/** A Dataplane in the Kubernetes form, as kubectl would store it: `name` in namespace `team-<t>`. */
function k8sDataplaneYaml(name: string, t: 'a' | 'b'): string {
  return stringify({
    apiVersion: 'kuma.io/v1alpha1',
    kind: 'Dataplane',
    metadata: { name, namespace: `team-${t}`, labels: { 'kuma.io/mesh': 'default', app: name, 'k8s.kuma.io/service-account': `${name}-${t}` } },
  });
}

const fileOf = (name: string, t: 'a' | 'b') => `k8s-${name}-team-${t}.yaml`;

function addDataplane(world: World, name: string, t: 'a' | 'b'): void {
  world.write(fileOf(name, t), k8sDataplaneYaml(name, t));
}

const stored = (world: World, name: string, t: 'a' | 'b') => existsSync(join(world.resourcesDir, fileOf(name, t)));

function removeDataplane(world: World, name: string, t: 'a' | 'b'): void {
  world.remove(fileOf(name, t));
}

/** A stream subscribed to `default` that ACKs everything and records the SPIFFE ID of every identity it is sent. */
class IdentityStream {
  readonly seen: string[] = [];
  private readonly sotw?: SotwClient;
  private readonly delta?: DeltaClient;

  constructor(address: string, v: Variant, node: string, token?: string) {
    const api = v.startsWith('ads') ? 'ads' : 'sds';
    if (v === 'sotw' || v === 'ads') {
      this.sotw = new SotwClient(address, { node, token, api });
      this.sotw.request(['default']);
    } else {
      this.delta = new DeltaClient(address, { node, token, api });
      this.delta.subscribe(['default']);
    }
  }

  get ended(): Promise<StreamEnd> {
    return (this.sotw ?? this.delta)!.ended;
  }

  get responses(): number {
    return (this.sotw ?? this.delta)!.received.length;
  }

  /** Reads (and ACKs) responses until one carries an identity with this SPIFFE ID. */
  async until(uri: string, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.seen.includes(uri)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no identity ${uri} within ${timeoutMs} ms (seen: ${this.seen.join(', ') || 'none'})`);
      await this.read(left);
    }
  }

  /** Reads (and ACKs) whatever comes within `ms`; returns early if the stream ends. */
  async drain(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    for (let left = ms; left > 0; left = deadline - Date.now()) {
      try {
        await this.read(left);
      } catch {
        return; // nothing more within the time, or the stream ended
      }
    }
  }

  private async read(timeoutMs: number): Promise<void> {
    let uri: string | undefined;
    if (this.sotw) {
      const res = await this.sotw.next(timeoutMs);
      this.sotw.ack(res);
      const s = secretsOf(res).get('default');
      uri = s && leafInfo(tlsCertificate(s).certChainPem).uri;
    } else {
      const res = await this.delta!.next(timeoutMs);
      this.delta!.ack(res);
      const s = deltaSecretsOf(res).get('default');
      uri = s && leafInfo(tlsCertificate(s).certChainPem).uri;
    }
    if (uri) this.seen.push(uri);
  }

  close(): void {
    (this.sotw ?? this.delta)!.close();
  }
}

function open(v: Variant, node: string, token: string): IdentityStream {
  const s = new IdentityStream(f.server.address, v, node, token);
  f.open.push(s);
  return s;
}

const token = (name: string) => f.server.tokens!.generate({ mesh: 'default', name, validForMs: HOUR });

/** The message naming the full name to use, for the Dataplane `name` of namespace `team-<t>`. */
const namesFull = (name: string, t: 'a' | 'b') => new RegExp(`--name ${name}\\.team-${t}\\b.*connect as default\\.${name}\\.team-${t}\\b`);

/** The stream ends UNAUTHENTICATED matching `why`; `fresh`: refused at once, with nothing sent. */
async function refused(s: IdentityStream, why: RegExp, fresh = true): Promise<void> {
  const end = await Promise.race([s.ended, sleep(10_000).then(() => 'open' as const)]);
  // What a fresh stream was sent instead, for the message (a stream the test reads already records it).
  if (end === 'open' && fresh) await s.drain(1000);
  assert.notEqual(end, 'open', `the stream must be refused (it was sent: ${s.seen.join(', ') || 'no identity'})`);
  if (end === 'open') return;
  assert.equal(end.code, grpc.status.UNAUTHENTICATED, `${grpc.status[end.code]}: ${end.details}`);
  assert.match(end.details, why);
  if (fresh) assert.equal(s.responses, 0, 'nothing is sent on a refused stream');
}

/** Until /debug/proxies lists the node id (its stream is open and attached). */
async function attached(node: string): Promise<void> {
  for (let i = 0; !(await f.debug<{ proxy: string }[]>('proxies')).some((p) => p.proxy === node); i++) {
    assert.ok(i < 100, `${node} is attached`);
    await sleep(50);
  }
}

const nodeMismatches = async () => (await f.metric('mesh_sds_stream_auth_failures_total{reason="node-mismatch"}')) ?? 0;

describe('--auth token: a short node id is not followed into a namespace', () => {
  for (const v of VARIANTS) {
    it(`${v}: team-a's db-0 replaced by team-b's: a token for the short name is refused at open naming the full name, each time; a full-name token gets its own Dataplane's identity and never team-b's`, async () => {
      const name = `db-${v}`;
      addDataplane(f.world, name, 'a');
      try {
        // A token that names team-a's Dataplane in full is served its identity.
        const full = open(v, `default.${name}.team-a`, await token(`${name}.team-a`));
        await full.until(spiffeOf(name, 'a'));

        const short = await token(name);
        const mismatches = await nodeMismatches();
        await refused(open(v, `default.${name}`, short), namesFull(name, 'a'));
        assert.equal(await nodeMismatches(), mismatches + 1, 'counted as node-mismatch');

        // team-a's db-0 is deleted and team-b's created under the same name.
        removeDataplane(f.world, name, 'a');
        addDataplane(f.world, name, 'b');
        // The same token is refused again, now naming team-b's full name: it never gets team-b's identity.
        await waitFor(`${name} of team-b is stored`, () => f.server.svids.dataplane('default', `${name}.team-b`), 10_000);
        await refused(open(v, `default.${name}`, short), namesFull(name, 'b'));
        // team-b's own token is served team-b's identity; team-a's full-name stream never is.
        const b = open(v, `default.${name}.team-b`, await token(`${name}.team-b`));
        await b.until(spiffeOf(name, 'b'));
        await full.drain(500);
        assert.ok(!full.seen.includes(spiffeOf(name, 'b')), `team-a's stream was sent: ${full.seen.join(', ')}`);
        full.close();
        b.close();
      } finally {
        for (const t of ['a', 'b'] as const) if (stored(f.world, name, t)) removeDataplane(f.world, name, t);
      }
    });

    it(`${v}: an open stream of a short-name token, waiting while two namespaces hold the name, ends UNAUTHENTICATED naming team-b's full name when team-a's is deleted (before, it was sent team-b's identity)`, async () => {
      const name = `live-${v}`;
      const node = `default.${name}`;
      addDataplane(f.world, name, 'a');
      addDataplane(f.world, name, 'b');
      try {
        // Two namespaces hold the name: the short node id names neither (it waits, as before).
        await waitFor(`${name} of both teams is stored`, () => f.server.svids.dataplane('default', `${name}.team-a`) && f.server.svids.dataplane('default', `${name}.team-b`), 10_000);
        const s = open(v, node, await token(name));
        await attached(node);
        // team-a's is deleted: the short name now reaches team-b's alone.
        removeDataplane(f.world, name, 'a');
        const drained = s.drain(10_000);
        await refused(s, namesFull(name, 'b'), false);
        await drained;
        assert.deepEqual(s.seen, [], 'never sent an identity');
      } finally {
        for (const t of ['a', 'b'] as const) if (stored(f.world, name, t)) removeDataplane(f.world, name, t);
      }
    });

    it(`${v}: an open gateway stream of a short-name token ends UNAUTHENTICATED naming the full name when a namespaced Dataplane of that name is created under it (before, it was sent that Dataplane's identity)`, async () => {
      const name = `gw-${v}`;
      const node = `default.${name}`;
      try {
        // No Dataplane of the name: a gateway (without claims, so no identity yet).
        const g = open(v, node, await token(name));
        await attached(node);
        addDataplane(f.world, name, 'a');
        const drained = g.drain(10_000);
        await refused(g, namesFull(name, 'a'), false);
        await drained;
        assert.deepEqual(g.seen, [], 'never sent an identity');
      } finally {
        if (stored(f.world, name, 'a')) removeDataplane(f.world, name, 'a');
      }
    });
  }

  it('FetchSecrets: a short-name token is UNAUTHENTICATED naming the full name; a full-name token gets the identity', async () => {
    const name = 'db-fetch';
    addDataplane(f.world, name, 'a');
    try {
      await waitFor(`${name} is stored`, () => f.server.svids.dataplane('default', `${name}.team-a`), 10_000);
      const get = async (node: string, tok: string) => {
        const res = await fetchSecrets(f.server.address, { node: nodeOf(node), resource_names: ['default'], type_url: SECRET_TYPE_URL }, tok);
        const s = secretsOf(res).get('default');
        return s && leafInfo(tlsCertificate(s).certChainPem).uri;
      };
      await assert.rejects(get(`default.${name}`, await token(name)), (e: grpc.ServiceError) => {
        assert.equal(e.code, grpc.status.UNAUTHENTICATED);
        assert.match(e.details, namesFull(name, 'a'));
        return true;
      });
      assert.equal(await get(`default.${name}.team-a`, await token(`${name}.team-a`)), spiffeOf(name, 'a'));
    } finally {
      removeDataplane(f.world, name, 'a');
    }
  });
});

describe('--auth none keeps the alias: the node id alone selects the Dataplane', () => {
  let world: World;
  let none: RunningServer;
  before(async () => {
    world = makeWorld();
    none = await startWorldServer(world, { auth: 'none' });
  });
  after(async () => {
    await none.close();
    world.cleanup();
  });

  for (const v of ['sotw', 'delta'] as const) {
    it(`${v}: the short node id gets team-a's identity, and team-b's once team-a's is replaced; the full node id works too`, async () => {
      const name = `db-${v}`;
      addDataplane(world, name, 'a');
      const s = new IdentityStream(none.address, v, `default.${name}`);
      const full = new IdentityStream(none.address, v, `default.${name}.team-a`);
      try {
        await s.until(spiffeOf(name, 'a'));
        await full.until(spiffeOf(name, 'a'));
        removeDataplane(world, name, 'a');
        addDataplane(world, name, 'b');
        await s.until(spiffeOf(name, 'b'));
        const still = await Promise.race([s.ended, sleep(200).then(() => 'open' as const)]);
        assert.equal(still, 'open');
      } finally {
        s.close();
        full.close();
        for (const t of ['a', 'b'] as const) if (stored(world, name, t)) removeDataplane(world, name, t);
      }
    });
  }
});
