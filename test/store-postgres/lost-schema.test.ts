// The schema dropped under running replicas (a careless cleanup): readiness says the reads fail,
// and a CA the replica served stays trusted when its record is made again from nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Subject, filter, firstValueFrom, timeout } from 'rxjs';
import { resourceKey, type ResourceSnapshot } from '../../src/api/types.js';
import { IdentityAuthorities } from '../../src/identity/authorities.js';
import { PostgresStore } from '../../src/store/postgres.js';
import { meshIdentity } from '../helpers/resources.js';
import { dropSchema, PG_URL, recordingLogger, sleep, testSchema, withStores } from './helpers.js';

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(25);
  }
}

test('the store check is not ok while every read of the resources fails (schema dropped), naming the error; ok again once reads work', async () => {
  const { logger } = recordingLogger();
  await withStores(1, async ([store], schema) => {
    assert.equal(store!.health().ok, true, store!.health().detail);
    await dropSchema(schema);
    // The heartbeat finds the feed's triggers gone, cannot recreate them, and reads every row: which fails.
    await waitFor(() => !store!.health().ok, 5000);
    assert.match(store!.health().detail, /read.*failed.*does not exist/);
    // Put back (a replica or `import` migrates it again): reads work, the check is ok again.
    const again = await PostgresStore.open(PG_URL, { schema });
    await again.close();
    await waitFor(() => store!.health().ok, 10_000);
  }, { logger, heartbeatMs: 150, feedRepairLockTimeoutMs: 100 });
});

test('a schema dropped and made again under a running replica: the new CA is trusted next to the one served before, which is written back to the new state with a warning naming the state key', async () => {
  const schema = testSchema();
  const warnings: { o: Record<string, unknown>; msg: string }[] = [];
  const log = { warn: (o: object, msg: string) => void warnings.push({ o: o as Record<string, unknown>, msg }), info: () => undefined };
  const store = await PostgresStore.open(PG_URL, { schema });
  const snaps = new Subject<ResourceSnapshot>();
  const a = new IdentityAuthorities({ zone: 'default', state: store.state, stateResyncMs: 100, log });
  a.start(snaps);
  try {
    const mi = meshIdentity('identity');
    const key = resourceKey(mi);
    const s: ResourceSnapshot = { revision: 1, resources: new Map([[key, mi]]), errors: [] };
    const first = firstValueFrom(a.views$.pipe(filter((v) => v.snapshot === s), timeout(5000)));
    snaps.next(s);
    const old = (await first).identities.get(key)!.ca!;
    await dropSchema(schema);
    await firstValueFrom(a.views$.pipe(filter((v) => v.identities.get(key)!.conditions.some((c) => /does not exist/.test(c.message))), timeout(5000)));
    await (await PostgresStore.open(PG_URL, { schema })).close(); // `import` again: an empty schema
    const v = await firstValueFrom(a.views$.pipe(filter((x) => x.identities.get(key)!.ca?.fingerprint !== old.fingerprint), timeout(10_000)));
    const pems = (v.trusts.find((t) => t.name === 'identity')!.spec.caBundles ?? []).map((b) => (b.type === 'Pem' ? b.pem.value : ''));
    assert.equal(pems.length, 2);
    assert.ok(pems.includes(old.trustPem), 'the CA served before, whose leaves are alive, is still trusted');
    const stateKey = `ca/${mi.mesh}/${mi.namespace || '_'}/${mi.name}/${v.identities.get(key)!.trustDomain}`;
    assert.ok(warnings.some((w) => w.msg.includes('disappeared') && w.o.stateKey === stateKey && w.o.identity === mi.name), JSON.stringify(warnings));
    const recorded = JSON.parse((await store.state.get(`ca-history/${mi.mesh}/${mi.namespace || '_'}/${mi.name}`))!) as { fingerprint: string; retireAfter?: string }[];
    const oldEntry = recorded.find((e) => e.fingerprint === old.fingerprint);
    assert.ok(oldEntry?.retireAfter, 'recorded for restarts and other replicas, retiring one leaf lifetime from now');
  } finally {
    a.stop();
    await store.close();
    await dropSchema(schema);
  }
});
