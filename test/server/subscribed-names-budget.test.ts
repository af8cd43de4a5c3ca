// One proxy's streams share a bound on the characters of the names they hold: a token's 64 delta
// streams of 999 names of 2,000 characters held 258 MiB (names and the cache keys made of them).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../../src/server/serve.js';
import { createLogger } from '../../src/server/logger.js';
import { MAX_SUBSCRIBED_NAME_CHARS_PER_PROXY } from '../../src/server/xds-streams.js';
import { PATHS, SECRET_TYPE, field, grpcFrame, rawCall, rawConnect } from '../helpers/raw-grpc.js';

const root = await mkdtemp(join(tmpdir(), 'mesh-sds-name-budget-'));
after(() => rm(root, { recursive: true, force: true }));

/** Valid SVID names of another identity (held, never served): ~2,000 characters each. */
const svid = (tag: string, i: number) => `spiffe://default.default.mesh.local/ns/shop/sa/${tag}-${i}-${'a'.repeat(1950)}`;
const delta = (sub: string[], node?: string) => grpcFrame(Buffer.concat([node ? field(1, field(1, node)) : Buffer.alloc(0), field(2, SECRET_TYPE), ...sub.map((n) => field(3, n))]));

test("a proxy's streams together hold at most 1 Mi characters of subscribed names: the stream that would pass it ends RESOURCE_EXHAUSTED, the others keep theirs, and a stream's share is given back when it ends", async () => {
  const resourcesDir = join(root, 'resources');
  await cp('examples/quickstart', resourcesDir, { recursive: true });
  const s = await startServer({ resourcesDir, stateDir: join(root, 'state'), listen: '127.0.0.1:0', auth: 'none', zone: 'default', logger: createLogger('silent') });
  const session = rawConnect(s.address);
  try {
    await s.ready;
    const node = 'default.backend-1.shop';
    const perStream = Math.floor((MAX_SUBSCRIBED_NAME_CHARS_PER_PROXY * 0.6) / 2000);
    const open = async (tag: string) => {
      const call = rawCall(session, PATHS.DeltaSecrets, { body: [delta(['default'], node)] });
      await call.waitForMessages(1, 10_000);
      const names = Array.from({ length: perStream }, (_, i) => svid(tag, i));
      for (let i = 0; i < names.length; i += 100) call.stream.write(delta(names.slice(i, i + 100)));
      return call;
    };
    const first = await open('a');
    // A change the stream must answer: it has read all of its requests by then.
    first.stream.write(delta(['system_trust_bundle']));
    await first.waitForMessages(2, 10_000);
    const second = await open('b');
    const end = await Promise.race([second.ended, new Promise<undefined>((r) => setTimeout(r, 15_000, undefined))]);
    assert.ok(end, 'the stream past the limit was not ended');
    assert.equal(end.code, 8, `RESOURCE_EXHAUSTED, got ${end.code} ${end.message}`);
    assert.match(end.message, /the proxy's streams would subscribe to \d+ characters of resource names, over the limit of 1048576 per proxy/);
    // The first keeps its names and is still served.
    first.stream.write(delta(['ALL']));
    await first.waitForMessages(3, 10_000);
    // Once it ends, its share is free: a new stream may hold as much.
    first.stream.close();
    await first.ended;
    const third = await open('c');
    third.stream.write(delta(['system_trust_bundle']));
    await third.waitForMessages(2, 10_000);
    third.stream.close();
  } finally {
    session.close();
    await s.close();
  }
});
