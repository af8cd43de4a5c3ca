// The per-file setup most conformance tests share: a world, a server on it, one client channel,
// and the streams a test opened, all torn down after the file.
import { after, before } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import type { RunningServer, ServeConfig } from '../../src/server/serve.js';
import { makeClient } from './envoy-client.js';
import { makeWorld, startWorldServer, type World } from './world.js';

export interface ServerFixture {
  world: World;
  server: RunningServer;
  channel: grpc.Client;
  /** Streams to close after the file. */
  readonly open: { close(): void }[];
  /** `mesh_sds_nacks_total` of the server. */
  nackCount(): Promise<number>;
  /** /metrics of the real admin endpoint (Prometheus text). */
  scrape(): Promise<string>;
  /** A value of one series from /metrics (`name{labels}`, exact), or undefined when absent. */
  metric(series: string): Promise<number | undefined>;
  /** GET /debug/<what> of the real admin endpoint, parsed. */
  debug<T = unknown>(what: 'proxies' | 'secrets' | 'identities'): Promise<T>;
}

/** Registers the file's before/after hooks; the fields are set once `before` has run. */
export function serverFixture(opts: { world?: Parameters<typeof makeWorld>[0]; server?: Partial<ServeConfig> } = {}): ServerFixture {
  const f = {
    open: [] as { close(): void }[],
    async nackCount() {
      return (await f.metric('mesh_sds_nacks_total')) ?? 0;
    },
    async scrape() {
      const r = await fetch(`${f.server.admin!.url}/metrics`);
      if (r.status !== 200) throw new Error(`/metrics: HTTP ${r.status}`);
      return r.text();
    },
    async metric(series: string) {
      const line = (await f.scrape()).split('\n').find((l) => l.startsWith(`${series} `));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    },
    async debug(what: string) {
      const r = await fetch(`${f.server.admin!.url}/debug/${what}`);
      if (r.status !== 200) throw new Error(`/debug/${what}: HTTP ${r.status}`);
      return r.json();
    },
  } as ServerFixture;
  before(async () => {
    f.world = makeWorld(opts.world);
    // Always with the admin endpoint: tests read metrics and debug views as an operator would.
    f.server = await startWorldServer(f.world, { admin: '127.0.0.1:0', ...opts.server });
    f.channel = makeClient(f.server.address);
  });
  after(async () => {
    for (const c of f.open) c.close();
    f.channel.close();
    await f.server.close();
    f.world.cleanup();
  });
  return f;
}
