// A stalled state table is the database's trouble, not the CAs': it is logged once per
// computation as the state store failing (with what to look for), not as "CA refused" for every
// identity, and each identity keeps the CA it had.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { Subject, filter, firstValueFrom, timeout } from 'rxjs';
import { resourceKey, type ResourceSnapshot } from '../../src/api/types.js';
import { IdentityAuthorities } from '../../src/identity/authorities.js';
import { meshIdentity } from '../helpers/resources.js';
import { PG_URL, withStores } from './helpers.js';

test('with the state table locked, a computation over six identities logs the stalled state store once, naming the lock to look for, and every identity keeps its CA', { timeout: 60_000 }, async () => {
  await withStores(1, async ([store], schema) => {
    const lines: string[] = [];
    const log = { info: () => undefined, warn: (o: object, m: string) => lines.push(`${m} ${JSON.stringify(o)}`) };
    const authorities = new IdentityAuthorities({ zone: 'default', state: store!.state, log, stateResyncMs: 0 });
    const snaps = new Subject<ResourceSnapshot>();
    authorities.start(snaps);
    const ids = Array.from({ length: 6 }, (_, i) => meshIdentity(`id-${i}`, { matchLabels: { app: `a${i}` } }));
    const snap = (revision: number): ResourceSnapshot => ({ revision, resources: new Map(ids.map((r) => [resourceKey(r), r])), errors: [] });
    const locker = new pg.Client({ connectionString: PG_URL });
    await locker.connect();
    try {
      snaps.next(snap(1));
      const first = await firstValueFrom(authorities.views$.pipe(filter((v) => v.snapshot.revision === 1), timeout(10_000)));
      const cas = [...first.identities.values()].map((st) => st.ca?.fingerprint);
      assert.ok(cas.every((f) => f !== undefined));
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE "${schema}".state IN ACCESS EXCLUSIVE MODE`);
      lines.length = 0;
      // Another MeshIdentity list (a label changed): computed in full.
      ids[5] = meshIdentity('id-5', { matchLabels: { app: 'changed' } });
      snaps.next(snap(2));
      const stalled = await firstValueFrom(authorities.views$.pipe(filter((v) => v.snapshot.revision === 2), timeout(30_000)));
      assert.deepEqual([...stalled.identities.values()].map((st) => st.ca?.fingerprint), cas, 'every identity keeps its CA');
      assert.deepEqual(lines.filter((l) => /^CA refused/.test(l)), [], 'no CA is said to be refused');
      const said = lines.filter((l) => /state store/.test(l));
      assert.equal(said.length, 1, said.join('\n'));
      assert.match(said[0]!, /lock on the store's tables/);
      assert.match(said[0]!, /6 identities/);
    } finally {
      await locker.query('ROLLBACK').catch(() => undefined);
      await locker.end();
      authorities.stop();
    }
  }, { queryTimeoutMs: 1000 });
});
