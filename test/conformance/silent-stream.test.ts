// A stream that never sends its first request is not on any list an operator sees (no node yet):
// it is ended after firstRequestTimeoutMs, while streams that spoke stay open.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import type { RunningServer } from '../../src/server/serve.js';
import { SotwClient } from './envoy-client.js';
import { makeWorld, sleep, startWorldServer, type World } from './world.js';

let world: World;
let s: RunningServer;

before(async () => {
  world = makeWorld();
  s = await startWorldServer(world, { firstRequestTimeoutMs: 400 });
});

after(async () => {
  await s.close();
  world.cleanup();
});

test('a stream that sends no request is ended with INVALID_ARGUMENT after the first-request timeout; one that asked stays open', async () => {
  const silent = new SotwClient(s.address, { node: 'default.web' });
  const talking = new SotwClient(s.address, { node: 'default.web' });
  try {
    talking.request(['default']);
    await talking.next(5000);
    const end = await Promise.race([silent.ended, sleep(5000).then(() => 'still open' as const)]);
    assert.notEqual(end, 'still open');
    if (end === 'still open') return;
    assert.equal(end.code, grpc.status.INVALID_ARGUMENT);
    assert.match(end.details, /no DiscoveryRequest within 0\.4 s of opening the stream/);
    const talkingEnd = await Promise.race([talking.ended, sleep(600).then(() => 'open' as const)]);
    assert.equal(talkingEnd, 'open');
  } finally {
    silent.close();
    talking.close();
  }
});
