// The incremental change feed (SPEC §6): every write, also plain SQL, names its row; a replica reads
// only the changed rows, and reads everything once only after (re)connecting.
import { test } from 'node:test';
import pg from 'pg';
import assert from 'node:assert/strict';
import { adminQuery, dataplaneYaml, dropSchema, PG_URL, recordingLogger, sleep, testSchema, waitForSnapshot, withStores } from './helpers.js';
import { NOTIFIED_FULL_READ_MIN_INTERVAL_MS, PostgresStore } from '../../src/store/postgres.js';
import { CHANGES_CHANNEL, RESOURCES_CHANNEL, SCHEMA_VERSION } from '../../src/store/postgres-schema.js';
import { yamlDocs } from '../helpers/yaml.js';

const dpKey = (i: number) => `Dataplane/default//dp-${i}`;

test('one Dataplane changed among 500 is read alone by the other replica, the rest of its snapshot reused', async () => {
  await withStores(2, async ([writer, reader]) => {
    const docs = Array.from({ length: 500 }, (_, i) => dataplaneYaml(`dp-${i}`, 'web'));
    assert.deepEqual(await writer!.apply(yamlDocs(...docs), 'all.yaml'), []);
    const before = await waitForSnapshot(reader!, (s) => s.resources.size === 500, 5000);
    const stats = { ...reader!.feedStats };

    assert.deepEqual(await writer!.apply(dataplaneYaml('dp-7', 'api'), 'one.yaml'), []);
    const after = await waitForSnapshot(reader!, (s) => s.resources.get(dpKey(7))?.labels.app === 'api', 5000);
    assert.equal(reader!.feedStats.fullReloads, stats.fullReloads, 'no full reload for one change');
    assert.equal(reader!.feedStats.rowsRead - stats.rowsRead, 1, 'exactly the changed row was read');
    assert.equal(after.resources.get(dpKey(8)), before.resources.get(dpKey(8)), 'unchanged resources are the same objects');
    assert.notEqual(after.resources, before.resources, 'the published map is a new copy');
    assert.equal(before.resources.get(dpKey(7))?.labels.app, 'web', 'the earlier snapshot is not mutated');

    // A deletion is a named row that is gone.
    assert.equal(await writer!.delete('Dataplane', 'default', '', 'dp-9'), true);
    const gone = await waitForSnapshot(reader!, (s) => !s.resources.has(dpKey(9)), 5000);
    assert.equal(gone.resources.size, 499);
    assert.equal(reader!.feedStats.fullReloads, stats.fullReloads);
  });
});

test('a row inserted, updated or deleted with plain SQL reaches every replica without anyone sending NOTIFY', async () => {
  await withStores(2, async ([a, b], schema) => {
    await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, source) VALUES ('Dataplane', 'default', '', 'dp-1', $1)`, [
      dataplaneYaml('dp-1', 'web'),
    ]);
    for (const s of [a!, b!]) await waitForSnapshot(s, (x) => x.resources.has(dpKey(1)), 5000);
    await adminQuery(`UPDATE "${schema}".resources SET source = $1 WHERE name = 'dp-1'`, [dataplaneYaml('dp-1', 'api')]);
    for (const s of [a!, b!]) await waitForSnapshot(s, (x) => x.resources.get(dpKey(1))?.labels.app === 'api', 5000);
    await adminQuery(`DELETE FROM "${schema}".resources WHERE name = 'dp-1'`);
    for (const s of [a!, b!]) await waitForSnapshot(s, (x) => !x.resources.has(dpKey(1)), 5000);
  });
});

test('a row whose key a plain-SQL UPDATE changes (renamed; a misspelt kind spelt right) leaves every replica under its old key: neither served nor reported any more', async () => {
  await withStores(2, async ([a, b], schema) => {
    assert.deepEqual(await a!.apply(dataplaneYaml('web', 'web'), 'a.yaml'), []);
    await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, source) VALUES ('dataplane', 'default', '', 'db', $1)`, [
      dataplaneYaml('db', 'db'),
    ]);
    for (const s of [a!, b!]) await waitForSnapshot(s, (x) => x.resources.has('Dataplane/default//web') && x.errors.length === 1, 5000);
    const stats = { ...b!.feedStats };
    await adminQuery(`UPDATE "${schema}".resources SET kind = 'Dataplane' WHERE kind = 'dataplane'`);
    await adminQuery(`UPDATE "${schema}".resources SET name = 'web-2', doc = jsonb_set(doc, '{name}', '"web-2"') WHERE name = 'web'`);
    for (const s of [a!, b!]) {
      const snap = await waitForSnapshot(s, (x) => x.resources.has('Dataplane/default//web-2') && x.resources.has('Dataplane/default//db'), 5000);
      await sleep(200);
      const now = s.snapshot!;
      assert.deepEqual([...now.resources.keys()].sort(), ['Dataplane/default//db', 'Dataplane/default//web-2'], `revision ${snap.revision}`);
      assert.deepEqual(now.errors, [], 'the misspelt row is gone, so is its report');
    }
    assert.equal(b!.feedStats.fullReloads, stats.fullReloads, 'read by key, not by reading everything');
  });
});

test('a TRUNCATE of the resources table empties every replica (no row trigger fires for it), and rows written after it arrive', async () => {
  await withStores(2, async ([a, b], schema) => {
    assert.deepEqual(await a!.apply(yamlDocs(dataplaneYaml('dp-1', 'web'), dataplaneYaml('dp-2', 'web')), 'a.yaml'), []);
    for (const s of [a!, b!]) await waitForSnapshot(s, (x) => x.resources.size === 2, 5000);
    await adminQuery(`TRUNCATE "${schema}".resources`);
    for (const s of [a!, b!]) await waitForSnapshot(s, (x) => x.resources.size === 0, 5000);
    assert.deepEqual(await a!.apply(dataplaneYaml('dp-3', 'web'), 'b.yaml'), []);
    for (const s of [a!, b!]) await waitForSnapshot(s, (x) => x.resources.size === 1 && x.resources.has(dpKey(3)), 5000);
  });
});

test('a flood of notifications asking every replica to read the whole table (any role may NOTIFY) starts at most one full read a second; changes still arrive', async () => {
  await withStores(1, async ([store], schema) => {
    assert.deepEqual(await store!.apply(dataplaneYaml('dp-0', 'web'), 'a.yaml'), []);
    await waitForSnapshot(store!, (x) => x.resources.has(dpKey(0)), 5000);
    const flooder = new pg.Client({ connectionString: PG_URL });
    await flooder.connect();
    try {
      const before = store!.feedStats.fullReloads;
      const until = Date.now() + 2000;
      // Each in its own transaction (equal payloads in one are delivered once), both ways of asking.
      for (let i = 0; Date.now() < until; i++) {
        if (i % 2 === 0) await flooder.query('SELECT pg_notify($1, $2)', [RESOURCES_CHANNEL, schema]);
        else await flooder.query('SELECT pg_notify($1, $2)', [CHANGES_CHANNEL, JSON.stringify({ schema, full: true })]);
      }
      await sleep(100);
      const reads = store!.feedStats.fullReloads - before;
      assert.ok(reads >= 1 && reads <= 3, `${reads} full reads in 2 s of flood`);
    } finally {
      await flooder.end();
    }
    // A full read asked for just after the flood still comes (TRUNCATE asks for one).
    await adminQuery(`TRUNCATE "${schema}".resources`);
    await waitForSnapshot(store!, (x) => x.resources.size === 0, 5000);
    assert.deepEqual(await store!.apply(dataplaneYaml('dp-1', 'web'), 'b.yaml'), []);
    await waitForSnapshot(store!, (x) => x.resources.has(dpKey(1)), 5000);
  });
});

test('forged change notices naming more rows than are read by key (1,500 a transaction, again and again) start at most one full read a second; the rows they name are still read', async () => {
  await withStores(1, async ([store], schema) => {
    const flooder = new pg.Client({ connectionString: PG_URL });
    await flooder.connect();
    try {
      const before = store!.feedStats.fullReloads;
      const until = Date.now() + 2000;
      for (let batch = 0; Date.now() < until; batch++) {
        await flooder.query(
          `SELECT pg_notify($1, json_build_object('schema', $2::text, 'kind', 'Dataplane', 'mesh', 'default', 'namespace', '', 'name', 'forged-' || $3::int || '-' || g)::text)
           FROM generate_series(1, 1500) g`,
          [CHANGES_CHANNEL, schema, batch],
        );
        await sleep(20);
      }
      await sleep(100);
      const reads = store!.feedStats.fullReloads - before;
      assert.ok(reads <= 3, `${reads} full reads in 2 s of forged notices`);
    } finally {
      await flooder.end();
    }
    await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, source) VALUES ('Dataplane', 'default', '', 'dp-1', $1)`, [dataplaneYaml('dp-1', 'web')]);
    await waitForSnapshot(store!, (x) => x.resources.has(dpKey(1)), 5000);
  });
});

test('after the LISTEN connection is cut, the replica reloads everything once and then reads by row again', async () => {
  await withStores(2, async ([writer, reader]) => {
    const pid = reader!.listenerPid;
    assert.ok(pid);
    assert.equal(reader!.health().ok, true);
    const stats = { ...reader!.feedStats };
    await adminQuery('SELECT pg_terminate_backend($1)', [pid]);
    await sleep(100);
    assert.equal(reader!.health().ok, false, 'a dead change feed is not healthy');
    assert.match(reader!.health().detail, /change feed/);
    assert.deepEqual(await writer!.apply(dataplaneYaml('dp-1', 'web'), 'a.yaml'), []);
    await waitForSnapshot(reader!, (s) => s.resources.has(dpKey(1)), 5000);
    assert.equal(reader!.feedStats.fullReloads, stats.fullReloads + 1, 'one full reload after reconnecting');
    assert.equal(reader!.health().ok, true);
    const afterReconnect = { ...reader!.feedStats };
    assert.deepEqual(await writer!.apply(dataplaneYaml('dp-2', 'web'), 'b.yaml'), []);
    await waitForSnapshot(reader!, (s) => s.resources.has(dpKey(2)), 5000);
    assert.equal(reader!.feedStats.fullReloads, afterReconnect.fullReloads);
  }, { });
});

test('forged notifications on the change channel (null, numbers, strings, lists, wrong field types) are ignored: no replica fails, real changes still arrive', async () => {
  await withStores(2, async ([a, b], schema) => {
    const forged = ['null', '1', '"text"', '[]', '[1,2]', 'true', '{}', JSON.stringify({ schema, kind: 5 }), JSON.stringify({ schema: null }), '{"schema":'];
    for (const payload of forged) await adminQuery(`SELECT pg_notify($1, $2)`, [CHANGES_CHANNEL, payload]);
    await sleep(200);
    assert.deepEqual(await a!.apply(dataplaneYaml('dp-1', 'web'), 'a.yaml'), []);
    for (const s of [a!, b!]) await waitForSnapshot(s, (x) => x.resources.has(dpKey(1)), 5000);
    assert.equal(b!.health().ok, true);
  });
});

// The schema version says the triggers were installed, not that they are still there.
const damage: [string, (s: string) => string, RegExp][] = [
  ['the notify trigger dropped', (s) => `DROP TRIGGER resources_notify ON "${s}".resources`, /trigger resources_notify on \S+\.resources missing/],
  ['the notify function dropped (and its trigger with it)', (s) => `DROP FUNCTION "${s}".resources_notify() CASCADE`, /function \S+\.resources_notify\(\), trigger resources_notify on \S+\.resources missing/],
  ['the notify trigger disabled', (s) => `ALTER TABLE "${s}".resources DISABLE TRIGGER resources_notify`, /trigger resources_notify on \S+\.resources \(disabled\) missing/],
  ['the revision stamp trigger dropped', (s) => `DROP TRIGGER resources_stamp ON "${s}".resources`, /trigger resources_stamp on \S+\.resources missing/],
];
for (const [what, sql, warning] of damage) {
  test(`a schema with ${what} is repaired at start-up with a warning naming it; a plain-SQL change then arrives`, async () => {
    const schema = testSchema();
    const { logger, lines } = recordingLogger();
    let store: PostgresStore | undefined;
    try {
      await (await PostgresStore.open(PG_URL, { schema })).close();
      await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, source) VALUES ('Dataplane', 'default', '', 'dp-1', $1)`, [dataplaneYaml('dp-1', 'web')]);
      await adminQuery(sql(schema));
      store = await PostgresStore.open(PG_URL, { schema, logger });
      await store.start();
      assert.ok(store.snapshot!.resources.has(dpKey(1)));
      assert.match(lines.filter((l) => l.startsWith('warn')).join('\n'), warning);
      await adminQuery(`UPDATE "${schema}".resources SET source = $1 WHERE name = 'dp-1'`, [dataplaneYaml('dp-1', 'api')]);
      const snap = await waitForSnapshot(store, (x) => x.resources.get(dpKey(1))?.labels.app === 'api', 5000);
      const before = Number(snap.versions!.get(dpKey(1)));
      await adminQuery(`UPDATE "${schema}".resources SET source = $1 WHERE name = 'dp-1'`, [dataplaneYaml('dp-1', 'web')]);
      const again = await waitForSnapshot(store, (x) => x.resources.get(dpKey(1))?.labels.app === 'web', 5000);
      assert.ok(Number(again.versions!.get(dpKey(1))) > before, 'every write is stamped with a new revision');
      // Repaired once: the next start finds nothing missing.
      const quiet = recordingLogger();
      await (await PostgresStore.open(PG_URL, { schema, logger: quiet.logger })).close();
      assert.deepEqual(quiet.lines.filter((l) => l.startsWith('warn')), []);
    } finally {
      await store?.close();
      await dropSchema(schema);
    }
  });
}

test('a notify trigger dropped while two replicas run is recreated at the next heartbeat with a warning; the write made while it was missing and the next one reach both', async () => {
  const { logger, lines } = recordingLogger();
  await withStores(2, async ([a, b], schema) => {
    await adminQuery(`DROP TRIGGER resources_notify ON "${schema}".resources`);
    // Announced by nothing: only the check can find it.
    await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, source) VALUES ('Dataplane', 'default', '', 'dp-1', $1)`, [dataplaneYaml('dp-1', 'web')]);
    for (const s of [a!, b!]) await waitForSnapshot(s, (x) => x.resources.has(dpKey(1)), 5000);
    assert.match(lines.filter((l) => l.startsWith('warn')).join('\n'), /trigger resources_notify on \S+\.resources missing while running .*recreated/);
    const [{ n }] = (await adminQuery<{ n: string }>(`SELECT count(*) AS n FROM pg_trigger WHERE tgrelid = '"${schema}".resources'::regclass AND tgname = 'resources_notify'`)).rows as [{ n: string }];
    assert.equal(n, '1', 'one trigger, however many replicas repaired');
    const reloads = await settledFullReloads(b!);
    await adminQuery(`UPDATE "${schema}".resources SET source = $1 WHERE name = 'dp-1'`, [dataplaneYaml('dp-1', 'api')]);
    await waitForSnapshot(b!, (x) => x.resources.get(dpKey(1))?.labels.app === 'api', 5000);
    assert.equal(b!.feedStats.fullReloads, reloads, 'the repaired feed names the row again: no full reload');
  }, { logger, heartbeatMs: 150 });
});

test('a notify trigger disabled while a writer holds the table is polled for: writes arrive by reading every row each heartbeat, an error names it, and it is recreated once the table is free', async () => {
  const { logger, lines } = recordingLogger();
  await withStores(1, async ([store], schema) => {
    await adminQuery(`ALTER TABLE "${schema}".resources DISABLE TRIGGER resources_notify`);
    // A long transaction that writes to the table: recreating a trigger must wait for it.
    const holder = new pg.Client({ connectionString: PG_URL });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`LOCK TABLE "${schema}".resources IN ROW EXCLUSIVE MODE`);
      await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, source) VALUES ('Dataplane', 'default', '', 'dp-2', $1)`, [dataplaneYaml('dp-2', 'web')]);
      await waitForSnapshot(store!, (x) => x.resources.has(dpKey(2)), 5000);
      assert.match(lines.filter((l) => l.startsWith('error')).join('\n'), /resources_notify on \S+\.resources \(disabled\) missing and could not be recreated: reading every row each/);
      assert.match(store!.health().detail, /change feed triggers missing/);
      assert.equal(store!.health().ok, true, 'still serving every change, late');
      await holder.query('COMMIT');
    } finally {
      await holder.end();
    }
    await waitFor(() => /change feed live/.test(store!.health().detail), 5000);
    const reloads = await settledFullReloads(store!);
    await adminQuery(`UPDATE "${schema}".resources SET source = $1 WHERE name = 'dp-2'`, [dataplaneYaml('dp-2', 'api')]);
    await waitForSnapshot(store!, (x) => x.resources.get(dpKey(2))?.labels.app === 'api', 5000);
    assert.equal(store!.feedStats.fullReloads, reloads, 'announced again once recreated');
  }, { logger, heartbeatMs: 150, feedRepairLockTimeoutMs: 100 });
});

test('a replica starting on a schema whose notify trigger was dropped repairs it and tells the running replicas, which read the writes they were not told of', async () => {
  // A long heartbeat: the running replica's own check cannot be what finds it.
  await withStores(1, async ([running], schema) => {
    await adminQuery(`DROP TRIGGER resources_notify ON "${schema}".resources`);
    await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, source) VALUES ('Dataplane', 'default', '', 'dp-3', $1)`, [dataplaneYaml('dp-3', 'web')]);
    await sleep(300);
    assert.equal(running!.snapshot!.resources.has(dpKey(3)), false, 'unannounced so far');
    const starting = await PostgresStore.open(PG_URL, { schema });
    try {
      await starting.start();
      await waitForSnapshot(running!, (x) => x.resources.has(dpKey(3)), 5000);
    } finally {
      await starting.close();
    }
  }, { heartbeatMs: 600_000 });
});

test('a running replica does not put back triggers that a newer mesh-sds changed: the schema version is checked under the lock, the error names both versions, rows are polled', async () => {
  const { logger, lines } = recordingLogger();
  await withStores(1, async ([store], schema) => {
    // What a newer binary's migration might do: a version row, a trigger it no longer uses.
    await adminQuery(`INSERT INTO "${schema}".schema_version (version, description) VALUES ($1, 'from a newer mesh-sds')`, [SCHEMA_VERSION + 1]);
    await adminQuery(`DROP TRIGGER resources_stamp ON "${schema}".resources`);
    await adminQuery(`DROP TRIGGER resources_notify ON "${schema}".resources`);
    await adminQuery(`DROP TRIGGER resources_truncate ON "${schema}".resources`);
    await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, source) VALUES ('Dataplane', 'default', '', 'dp-4', $1)`, [dataplaneYaml('dp-4', 'web')]);
    await waitForSnapshot(store!, (x) => x.resources.has(dpKey(4)), 5000);
    assert.match(lines.filter((l) => l.startsWith('error')).join('\n'), new RegExp(`schema is at version ${SCHEMA_VERSION + 1}, this mesh-sds knows version ${SCHEMA_VERSION}: not recreated`));
    const { rows } = await adminQuery<{ n: string }>(`SELECT count(*) AS n FROM pg_trigger WHERE tgrelid = '"${schema}".resources'::regclass AND NOT tgisinternal`);
    assert.equal(rows[0]!.n, '0', 'nothing recreated');
  }, { logger, heartbeatMs: 150 });
});

/** The full reloads once none has followed for 300 ms (the repair's own and the one it announces). */
/**
 * The full-read count once no full read is still to come. A repair's notice that arrives within
 * NOTIFIED_FULL_READ_MIN_INTERVAL_MS of the replica's own full read is deferred, not dropped: a
 * quieter window than that ended too soon on a loaded machine (the deferred read then counted
 * against the write that followed).
 */
async function settledFullReloads(store: PostgresStore): Promise<number> {
  for (;;) {
    const n = store.feedStats.fullReloads;
    await sleep(NOTIFIED_FULL_READ_MIN_INTERVAL_MS + 300);
    if (store.feedStats.fullReloads === n) return n;
  }
}

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(25);
  }
}

test('a forged change notice naming a row with a NUL in its key (no text column can hold one) is dropped: it does not wedge the feed, and real changes arrive while it is sent again and again', async () => {
  await withStores(2, async ([a, b], schema) => {
    const forge = (i: number) => adminQuery(`SELECT pg_notify($1, $2)`, [CHANGES_CHANNEL, JSON.stringify({ schema, kind: 'Dataplane', mesh: 'default', namespace: '', name: `x\u0000${i}` })]);
    await forge(0);
    await sleep(100);
    assert.deepEqual(await a!.apply(dataplaneYaml('dp-1', 'web'), 'a.yaml'), []);
    for (const s of [a!, b!]) await waitForSnapshot(s, (x) => x.resources.has(dpKey(1)), 5000);
    // Sent in the same batch as a real change.
    await Promise.all([forge(1), adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, name, source) VALUES ('Dataplane', 'default', 'dp-2', $1)`, [dataplaneYaml('dp-2', 'web')])]);
    for (const s of [a!, b!]) await waitForSnapshot(s, (x) => x.resources.has(dpKey(2)), 5000);
    for (const s of [a!, b!]) assert.equal(s.health().ok, true, s.health().detail);
  });
});
