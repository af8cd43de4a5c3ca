// Optimistic concurrency of apply/delete on Postgres (SPEC §6): a write that would overwrite a
// change it did not see is a conflict naming the resource, and nothing is written; --force overwrites.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { StoreWriteError } from '../../src/store/types.js';
import { adminQuery, dataplaneYaml, PG_URL, sleep, waitForSnapshot, withStores } from './helpers.js';

const KEY = 'Dataplane/default//dp-1';

/** Waits until a store's statement on `schema` waits on a lock held by another session. */
async function waitUntilBlocked(schema: string): Promise<void> {
  for (let i = 0; ; i++) {
    const waiting = await adminQuery(
      `SELECT 1 FROM pg_stat_activity WHERE application_name = 'mesh-sds' AND wait_event_type = 'Lock' AND query LIKE $1`,
      [`%${schema}%`],
    );
    if (waiting.rowCount) return;
    if (i > 250) throw new Error('the write never waited on the row lock');
    await sleep(20);
  }
}

/**
 * Runs `write` while another session holds an uncommitted change to dp-1, commits that change once
 * `write` waits on the row lock (after it has read the row), and returns what `write` produced.
 */
async function racingAnotherWriter<T>(schema: string, write: () => Promise<T>): Promise<T> {
  const other = new pg.Client({ connectionString: PG_URL });
  await other.connect();
  try {
    await other.query('BEGIN');
    await other.query(`UPDATE "${schema}".resources SET source = $1, doc = NULL WHERE name = 'dp-1'`, [dataplaneYaml('dp-1', 'theirs')]);
    const result = write();
    await waitUntilBlocked(schema);
    await other.query('COMMIT');
    return await result;
  } finally {
    await other.end();
  }
}

test('an apply racing another writer of the same resource is a conflict naming it, and writes nothing', async () => {
  await withStores(1, async ([store], schema) => {
    assert.deepEqual(await store!.apply(dataplaneYaml('dp-1', 'web'), 'a.yaml'), []);
    const errors = await racingAnotherWriter(schema, () => store!.apply(dataplaneYaml('dp-1', 'mine') + '---\n' + dataplaneYaml('dp-2', 'mine'), 'mine.yaml'));
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.equal(errors[0]!.file, 'mine.yaml');
    assert.match(errors[0]!.message, /^conflict: Dataplane "dp-1" of mesh "default" was changed by another writer/);
    assert.match(errors[0]!.message, /version \d+ when read, then changed or deleted concurrently/, 'it lost the race at the write, not at the read');
    assert.match(errors[0]!.message, /--force/);
    const rows = await adminQuery<{ name: string; source: string }>(`SELECT name, source FROM "${schema}".resources ORDER BY name`);
    assert.deepEqual(rows.rows.map((r) => r.name), ['dp-1'], 'dp-2 was not written either: one apply is one transaction');
    assert.match(rows.rows[0]!.source, /theirs/, 'the other writer\'s change is kept');
  });
});

test('apply --force overwrites a concurrent change', async () => {
  await withStores(1, async ([store], schema) => {
    assert.deepEqual(await store!.apply(dataplaneYaml('dp-1', 'web'), 'a.yaml'), []);
    const errors = await racingAnotherWriter(schema, () => store!.apply(dataplaneYaml('dp-1', 'mine'), 'mine.yaml', { force: true }));
    assert.deepEqual(errors, []);
    await waitForSnapshot(store!, (s) => s.resources.get(KEY)?.labels.app === 'mine', 5000);
  });
});

test('an apply or delete based on a resourceVersion that has moved on is a conflict; based on the current one it is written', async () => {
  await withStores(2, async ([a, b]) => {
    assert.deepEqual(await a!.apply(dataplaneYaml('dp-1', 'web'), 'a.yaml'), []);
    await waitForSnapshot(a!, (s) => s.resources.has(KEY), 5000);
    const seen = a!.snapshot!.versions?.get(KEY);
    assert.ok(seen);
    await waitForSnapshot(b!, (s) => s.resources.has(KEY), 5000);
    assert.deepEqual(await b!.apply(dataplaneYaml('dp-1', 'b'), 'b.yaml'), []);
    // The document says which version it was based on (as `get` prints it).
    const based = (v: string) => `resourceVersion: "${v}"\n${dataplaneYaml('dp-1', 'a')}`;
    const stale = await a!.apply(based(seen), 'a2.yaml');
    assert.equal(stale[0]?.conflict, true);
    assert.match(stale[0]?.message ?? '', new RegExp(`^conflict: Dataplane "dp-1" of mesh "default".*version ${seen} when read, now version \\d+`));
    await assert.rejects(
      a!.delete('Dataplane', 'default', '', 'dp-1', { resourceVersion: seen }),
      (e: Error) => e instanceof StoreWriteError && e.conflict && /Dataplane "dp-1"/.test(e.message),
    );
    const now = (await waitForSnapshot(a!, (s) => s.resources.get(KEY)?.labels.app === 'b', 5000)).versions!.get(KEY)!;
    assert.deepEqual(await a!.apply(based(now), 'a3.yaml'), [], 'based on the current version, it is written');
    const last = (await waitForSnapshot(a!, (s) => s.resources.get(KEY)?.labels.app === 'a', 5000)).versions!.get(KEY)!;
    assert.equal(await a!.delete('Dataplane', 'default', '', 'dp-1', { resourceVersion: last }), true);
  });
});

test('a conflict quotes the resourceVersion as the document wrote it (an unquoted 1e3, not the number it reads as)', async () => {
  await withStores(1, async ([a]) => {
    assert.deepEqual(await a!.apply(dataplaneYaml('dp-1', 'web'), 'a.yaml'), []);
    for (const [written, json] of [['1e3', false], ['0x10', false], ['1E+3', true]] as const) {
      const text = json
        ? JSON.stringify({ type: 'Dataplane', name: 'dp-1', mesh: 'default', labels: { app: 'b' } }).replace('{', `{"resourceVersion": ${written}, `)
        : `resourceVersion: ${written}\n${dataplaneYaml('dp-1', 'b')}`;
      const [err] = await a!.apply(text, 'stale.yaml');
      assert.equal(err?.conflict, true, written);
      assert.match(err?.message ?? '', new RegExp(`\\(version ${written.replace('+', '\\+')} when read, now version \\d+\\)`), written);
    }
  });
});

test('two applies creating the same new resource at once: one succeeds, the other is a conflict', async () => {
  await withStores(2, async ([a, b], schema) => {
    const other = new pg.Client({ connectionString: PG_URL });
    await other.connect();
    try {
      // Another writer's uncommitted insert: a's insert waits on it, then finds it taken.
      await other.query('BEGIN');
      await other.query(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, source) VALUES ('Dataplane', 'default', '', 'dp-1', $1)`, [dataplaneYaml('dp-1', 'theirs')]);
      const result = a!.apply(dataplaneYaml('dp-1', 'mine'), 'mine.yaml');
      await waitUntilBlocked(schema);
      await other.query('COMMIT');
      const errors = await result;
      assert.match(errors[0]?.message ?? '', /^conflict: Dataplane "dp-1" of mesh "default" was changed by another writer \(absent when read, then created concurrently\)/);
      await waitForSnapshot(b!, (s) => s.resources.get(KEY)?.labels.app === 'theirs', 5000);
    } finally {
      await other.end();
    }
  });
});

test('a store\'s own writes, applied back to back, never conflict with each other', async () => {
  await withStores(1, async ([store]) => {
    for (let i = 0; i < 5; i++) assert.deepEqual(await store!.apply(dataplaneYaml('dp-1', `v${i}`), `v${i}.yaml`), [], `apply ${i}`);
    assert.equal(await store!.delete('Dataplane', 'default', '', 'dp-1'), true);
    assert.deepEqual(await store!.apply(dataplaneYaml('dp-1', 'again'), 'again.yaml'), []);
    await waitForSnapshot(store!, (s) => s.resources.get(KEY)?.labels.app === 'again', 5000);
  });
});

test('revisions past 2^53 (the revision sequence set high: a restored dump, setval) are shown and compared exactly: a replica that read a row applies and deletes it without a conflict', async () => {
  await withStores(2, async ([a, b], schema) => {
    // The next revision, 2^53 + 1, is no double: read as a number it became 2^53.
    await adminQuery(`SELECT setval('"${schema}".resource_revision', 9007199254740992)`);
    assert.deepEqual(await a!.apply(dataplaneYaml('dp-1', 'web'), 'a.yaml'), []);
    const stored = (await adminQuery<{ revision: string }>(`SELECT revision::text FROM "${schema}".resources`)).rows[0]!.revision;
    assert.equal(stored, '9007199254740993');
    const seen = await waitForSnapshot(b!, (s) => s.resources.has(KEY), 5000);
    assert.equal(seen.versions!.get(KEY), stored, 'the version shown is the one stored');
    assert.deepEqual(await b!.apply(dataplaneYaml('dp-1', 'db'), 'b.yaml'), [], 'no conflict with a version it read');
    await waitForSnapshot(b!, (s) => s.resources.get(KEY)?.labels.app === 'db', 5000);
    assert.equal(await b!.delete('Dataplane', 'default', '', 'dp-1'), true);
  });
});

test('delete based on a resourceVersion past any bigint (a typo with extra digits) is a conflict naming the resource, not the database\'s "out of range for type bigint"', async () => {
  await withStores(1, async ([a]) => {
    assert.deepEqual(await a!.apply(dataplaneYaml('dp-1', 'web'), 'a.yaml'), []);
    await assert.rejects(
      a!.delete('Dataplane', 'default', '', 'dp-1', { resourceVersion: '99999999999999999999' }),
      (e: Error) => e instanceof StoreWriteError && e.conflict && /Dataplane "dp-1".*resourceVersion "99999999999999999999" was never stored here/.test(e.message),
    );
  });
});
