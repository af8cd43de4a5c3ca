import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServingZones, SERVING_ZONES_STATE_KEY, ZONE_SEEN_RECENTLY_MS } from '../../src/identity/serving-zones.js';
import { FileStateStore } from '../../src/store/file-state.js';

function recording() {
  const warnings: { o: Record<string, unknown>; msg: string }[] = [];
  return { warnings, log: { warn: (o: object, msg: string) => void warnings.push({ o: o as Record<string, unknown>, msg }) } };
}

test('servers sharing one state directory with different zones each warn, naming both zones; same-zone replicas stay quiet', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-zones-'));
  try {
    const a = recording();
    const a2 = recording();
    const b = recording();
    const za = new ServingZones({ state: await FileStateStore.open(dir), zone: 'default', log: a.log });
    const za2 = new ServingZones({ state: await FileStateStore.open(dir), zone: 'default', log: a2.log });
    const zb = new ServingZones({ state: await FileStateStore.open(dir), zone: 'zone-b', log: b.log });
    assert.deepEqual(await za.record(), []);
    assert.deepEqual(await za2.record(), [], 'a replica of the same zone is no conflict');
    assert.equal(a.warnings.length + a2.warnings.length, 0);

    assert.deepEqual(await zb.record(), ['default']);
    assert.equal(b.warnings.length, 1);
    assert.equal(b.warnings[0]!.o.zone, 'zone-b');
    assert.equal(b.warnings[0]!.o.otherZone, 'default');
    assert.match(b.warnings[0]!.msg, /"default".*"zone-b".*different trust domains/);
    // The server already running learns of it at its next refresh.
    assert.deepEqual(await za.record(), ['zone-b']);
    assert.match(a.warnings[0]!.msg, /"zone-b".*"default"/);
    await zb.record();
    assert.equal(b.warnings.length, 1, 'warned once per other zone, not every refresh');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a deliberate zone change: a zone not seen for longer than the recent window gives no warning, and the old zone is dropped from the record', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-zones-'));
  try {
    const state = await FileStateStore.open(dir);
    let clock = Date.now();
    const before = new ServingZones({ state, zone: 'old-zone', now: () => new Date(clock) });
    await before.record();
    clock += ZONE_SEEN_RECENTLY_MS + 1000;
    const after = recording();
    const now = new ServingZones({ state, zone: 'new-zone', log: after.log, now: () => new Date(clock) });
    await now.start(); // never refuses
    now.stop();
    assert.equal(after.warnings.length, 0, JSON.stringify(after.warnings));
    assert.deepEqual(Object.keys(JSON.parse((await state.get(SERVING_ZONES_STATE_KEY))!) as object), ['new-zone']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
