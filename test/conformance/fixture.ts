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
}

/** Registers the file's before/after hooks; the fields are set once `before` has run. */
export function serverFixture(opts: { world?: Parameters<typeof makeWorld>[0]; server?: Partial<ServeConfig> } = {}): ServerFixture {
  const f = {
    open: [] as { close(): void }[],
    async nackCount() {
      return (await f.server.metrics.nacks.get()).values[0]?.value ?? 0;
    },
  } as ServerFixture;
  before(async () => {
    f.world = makeWorld(opts.world);
    f.server = await startWorldServer(f.world, opts.server);
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
