// The schema dropped under running replicas (a careless cleanup): readiness says the reads fail,
// and a CA the replica served stays trusted when its record is made again from nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Subject, filter, firstValueFrom, timeout } from 'rxjs';
import { resourceKey, type ResourceSnapshot } from '../../src/api/types.js';
import { IdentityAuthorities } from '../../src/identity/authorities.js';
import { PostgresStore } from '../../src/store/postgres.js';
import { meshIdentity } from '../helpers/resources.js';
import { dropSchema, PG_URL, testSchema } from './helpers.js';

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
