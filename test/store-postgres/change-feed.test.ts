// The incremental change feed (SPEC §6): every write, also plain SQL, names its row; a replica reads
// only the changed rows, and reads everything once only after (re)connecting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { adminQuery, dataplaneYaml, sleep, waitForSnapshot, withStores } from './helpers.js';
import { CHANGES_CHANNEL } from '../../src/store/postgres-schema.js';
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
