// Private keys at rest (SPEC §6): sealing, key ids, re-sealing, refusal rules, for every state store.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateStateKeyFile, loadStateKey, parseStateKey, stateKeyId } from '../../src/store/state-key.js';
import { openSealedState } from '../../src/store/state-setup.js';
import { ForeignStateKeyError, SealedStateStore } from '../../src/store/sealed-state.js';
import { MemoryStateStore } from '../../src/store/memory-state.js';
import { FileStateStore } from '../../src/store/file-state.js';
import { generateCertificateAuthority } from '../../src/pki/generate-ca.js';
import { openFreshStore } from '../store-postgres/helpers.js';

const tmp = () => mkdtemp(join(tmpdir(), 'mesh-sds-seal-'));
const caRecord = () => JSON.stringify(generateCertificateAuthority('seal.example'));
const CA_KEY = 'ca/default/_/identity/seal.example';

async function keyFile(dir: string, name = 'state.key'): Promise<string> {
  const f = join(dir, name);
  await generateStateKeyFile(f);
  return f;
}

test('a key file is accepted raw, as hex or as base64, and anything else is refused naming the file', async (t) => {
  const dir = await tmp();
  t.after(() => rm(dir, { recursive: true, force: true }));
  const bytes = randomBytes(32);
  const id = stateKeyId(bytes);
  assert.equal(parseStateKey(bytes, 'raw').id, id);
  assert.equal(parseStateKey(Buffer.from(`${bytes.toString('hex')}\n`), 'hex').id, id);
  assert.equal(parseStateKey(Buffer.from(` ${bytes.toString('base64')}\n`), 'b64').id, id);
  assert.equal(parseStateKey(Buffer.from(bytes.toString('base64url')), 'b64url').id, id);
  assert.match(id, /^[0-9a-f]{16}$/);
  assert.throws(() => parseStateKey(Buffer.from('too short'), 'k.txt'), /state key file k\.txt: expected 32 bytes/);
  assert.throws(() => parseStateKey(randomBytes(16).toString('base64') as unknown as Buffer, 'x'), /expected 32 bytes/);
  await assert.rejects(loadStateKey(join(dir, 'missing')), /cannot read --state-key-file .*missing: no such file or directory \(ENOENT\)/);
});

test('a state key file that is a FIFO, a device or over 1 MiB is refused at once, naming the flag and why; a link to a key file is read', { timeout: 10_000 }, async (t) => {
  const dir = await tmp();
  t.after(() => rm(dir, { recursive: true, force: true }));
  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const big = join(dir, 'big');
  await writeFile(big, Buffer.alloc(2 * 1024 * 1024, 'a'));
  // Without a writer a FIFO would be waited on for ever; /dev/zero read until memory runs out.
  await assert.rejects(loadStateKey(fifo), { message: `cannot read --state-key-file ${fifo}: is a FIFO, not a regular file` });
  await assert.rejects(loadStateKey('/dev/zero', '--state-old-key-file'), { message: 'cannot read --state-old-key-file /dev/zero: is a character device, not a regular file' });
  await assert.rejects(loadStateKey(big), { message: `cannot read --state-key-file ${big}: is larger than 1 MiB: not read` });
  const made = await generateStateKeyFile(join(dir, 'k'));
  await symlink(join(dir, 'k'), join(dir, 'link'));
  assert.equal((await loadStateKey(join(dir, 'link'))).id, made.id);
});

test('state-key generate writes 32 random bytes as base64, mode 0600, and never overwrites', async (t) => {
  const dir = await tmp();
  t.after(() => rm(dir, { recursive: true, force: true }));
  const f = join(dir, 'k');
  const made = await generateStateKeyFile(f);
  assert.equal((await stat(f)).mode & 0o777, 0o600);
  assert.equal(Buffer.from((await readFile(f, 'utf8')).trim(), 'base64').length, 32);
  assert.equal((await loadStateKey(f)).id, made.id);
  await assert.rejects(generateStateKeyFile(f), /already exists: refusing to overwrite/);
  assert.equal((await loadStateKey(f)).id, made.id);
});

test('with a key, private keys are stored sealed (tagged with the key id) and read back as they were', async (t) => {
  const dir = await tmp();
  t.after(() => rm(dir, { recursive: true, force: true }));
  const kf = await keyFile(dir);
  const inner = new MemoryStateStore();
  const state = await openSealedState(inner, { stateKeyFile: kf, postgres: true });
  const record = caRecord();
  assert.equal(await state.getOrCreate(CA_KEY, () => record), record);
  const raw = (await inner.get(CA_KEY))!;
  assert.doesNotMatch(raw, /PRIVATE KEY/);
  assert.equal(JSON.parse(raw).kid, (await loadStateKey(kf)).id);
  assert.equal(await state.get(CA_KEY), record);
  // Values without secrets stay readable as they are (CA history, revocations).
  await state.put('auth/revoked', '[]');
  assert.equal(await inner.get('auth/revoked'), '[]');
  // update() seals what it writes too.
  await state.update('auth/signing-key', () => 'x -----BEGIN PRIVATE KEY----- y');
  assert.doesNotMatch((await inner.get('auth/signing-key'))!, /PRIVATE KEY/);
  assert.equal(await state.get('auth/signing-key'), 'x -----BEGIN PRIVATE KEY----- y');
});

test('a sealed value moved under another state key name fails to open (the name is authenticated)', async (t) => {
  const dir = await tmp();
  t.after(() => rm(dir, { recursive: true, force: true }));
  const kf = await keyFile(dir);
  const inner = new MemoryStateStore();
  const state = await openSealedState(inner, { stateKeyFile: kf, postgres: false });
  await state.put(CA_KEY, caRecord());
  await inner.put('ca/default/_/other/seal.example', (await inner.get(CA_KEY))!);
  await assert.rejects(state.get('ca/default/_/other/seal.example'), /fails authentication: altered, or moved from another state key/);
  // A CA record concerns one identity: start-up goes on, and that identity's CA still does not open.
  const warned: object[] = [];
  const reopened = await openSealedState(inner, { stateKeyFile: kf, postgres: false }, { warn: (o) => warned.push(o), info: () => undefined });
  assert.deepEqual(warned.map((w) => (w as { stateKey: string }).stateKey), ['ca/default/_/other/seal.example']);
  await assert.rejects(reopened.get('ca/default/_/other/seal.example'), /fails authentication/);
});

test('sealed state with a missing or a wrong key refuses to start, naming the key id, and changes nothing', async (t) => {
  const dir = await tmp();
  t.after(() => rm(dir, { recursive: true, force: true }));
  const kf = await keyFile(dir, 'a.key');
  const other = await keyFile(dir, 'b.key');
  const id = (await loadStateKey(kf)).id;
  const inner = new MemoryStateStore();
  await (await openSealedState(inner, { stateKeyFile: kf, postgres: false })).put(CA_KEY, caRecord());
  await inner.put('ca/default/_/plain/seal.example', caRecord()); // plaintext beside it: must stay untouched
  const before = new Map(await Promise.all((await inner.keys()).map(async (k) => [k, await inner.get(k)] as const)));
  await assert.rejects(openSealedState(inner, { postgres: false }), new RegExp(`sealed with state key id ${id}.*no --state-key-file`));
  const otherId = (await loadStateKey(other)).id;
  await assert.rejects(
    openSealedState(inner, { stateKeyFile: other, postgres: false }),
    new RegExp(`sealed with state key id ${id}.*--state-key-file has key id ${otherId}`),
  );
  const after = new Map(await Promise.all((await inner.keys()).map(async (k) => [k, await inner.get(k)] as const)));
  assert.deepEqual(after, before, 'a refused start writes nothing');
});

test('a damaged sealed CA record fails only its own identity: start-up goes on with a warning naming it, the record is neither re-created nor rewritten; a damaged token key still refuses start-up', async (t) => {
  const dir = await tmp();
  t.after(() => rm(dir, { recursive: true, force: true }));
  const kf = await keyFile(dir);
  const inner = new MemoryStateStore();
  const sealedOnce = await openSealedState(inner, { stateKeyFile: kf, postgres: false });
  const truncatedKey = 'ca/default/_/truncated/seal.example';
  const alteredKey = 'ca/default/_/altered/seal.example';
  for (const k of [CA_KEY, truncatedKey, alteredKey]) await sealedOnce.put(k, caRecord());
  const whole = (await inner.get(truncatedKey))!;
  await inner.put(truncatedKey, whole.slice(0, Math.floor(whole.length / 2))); // a write cut short
  const env = JSON.parse((await inner.get(alteredKey))!) as { ct: string };
  const ct = Buffer.from(env.ct, 'base64');
  ct[0]! ^= 1;
  await inner.put(alteredKey, JSON.stringify({ ...env, ct: ct.toString('base64') }));
  const damaged = new Map([truncatedKey, alteredKey].map((k) => [k, inner.get(k)]));

  const warned: { stateKey?: string; reason?: string }[] = [];
  const log = { warn: (o: object) => warned.push(o as { stateKey?: string; reason?: string }), info: () => undefined };
  const state = await openSealedState(inner, { stateKeyFile: kf, postgres: false }, log);
  assert.deepEqual(warned.map((w) => w.stateKey).sort(), [alteredKey, truncatedKey]);
  assert.match(warned.find((w) => w.stateKey === alteredKey)!.reason!, /fails authentication/);
  assert.match(warned.find((w) => w.stateKey === truncatedKey)!.reason!, /not valid JSON/);
  assert.ok(JSON.parse((await state.get(CA_KEY))!).keyPem, 'the intact record still opens');
  let created = 0;
  const create = () => (created++, caRecord());
  await assert.rejects(state.getOrCreate(truncatedKey, create), /state ca\/default\/_\/truncated\/seal\.example: sealed value is not valid JSON/);
  await assert.rejects(state.getOrCreate(alteredKey, create), /altered/);
  assert.equal(created, 0, 'a damaged CA is never replaced by a new one behind the operator\'s back');
  for (const [k, v] of damaged) assert.equal(await inner.get(k), await v, `${k} is left as it was, for the operator to restore`);

  const macKey = 'auth/mac-key';
  await sealedOnce.put(macKey, randomBytes(32).toString('base64'));
  const mac = (await inner.get(macKey))!;
  await inner.put(macKey, mac.slice(0, mac.length - 10));
  await assert.rejects(openSealedState(inner, { stateKeyFile: kf, postgres: false }, log), /refusing to start: 1 sealed state value\(s\) cannot be opened.*auth\/mac-key/);
  // A read-only command (get, inspect) starts nothing: it says it cannot read the state.
  await assert.rejects(openSealedState(inner, { stateKeyFile: kf, postgres: false, readOnly: true }, log), /cannot read the state: 1 sealed state value\(s\) cannot be opened.*auth\/mac-key/);
});

test('--state-old-key-file re-seals everything under the new key at start-up', async (t) => {
  const dir = await tmp();
  t.after(() => rm(dir, { recursive: true, force: true }));
  const oldKf = await keyFile(dir, 'old.key');
  const newKf = await keyFile(dir, 'new.key');
  const inner = new MemoryStateStore();
  const record = caRecord();
  await (await openSealedState(inner, { stateKeyFile: oldKf, postgres: false })).put(CA_KEY, record);
  const state = await openSealedState(inner, { stateKeyFile: newKf, stateOldKeyFile: oldKf, postgres: false });
  assert.equal(JSON.parse((await inner.get(CA_KEY))!).kid, (await loadStateKey(newKf)).id);
  assert.equal(await state.get(CA_KEY), record);
  // The old key is no longer needed.
  assert.equal(await (await openSealedState(inner, { stateKeyFile: newKf, postgres: false })).get(CA_KEY), record);
  await assert.rejects(openSealedState(inner, { stateOldKeyFile: oldKf, postgres: false }), /--state-old-key-file needs --state-key-file/);
});

test('state dir without a key: private keys stay plaintext with one warning, files 0600', async (t) => {
  const dir = await tmp();
  t.after(() => rm(dir, { recursive: true, force: true }));
  const warnings: string[] = [];
  const log = { warn: (_: object, m?: string) => warnings.push(m ?? ''), info: () => undefined };
  const state = await openSealedState(await FileStateStore.open(join(dir, 's')), { postgres: false }, log);
  await state.getOrCreate(CA_KEY, caRecord);
  await state.getOrCreate('ca/default/_/two/seal.example', caRecord);
  await state.put('auth/signing-key', '-----BEGIN PRIVATE KEY-----');
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /UNSEALED/);
  const file = join(dir, 's', ...CA_KEY.split('/'));
  assert.match(await readFile(file, 'utf8'), /PRIVATE KEY/);
  assert.equal((await stat(file)).mode & 0o777, 0o600);
});

test('Postgres refuses to store an unsealed private key unless --insecure-plaintext-state', async (t) => {
  const { store } = await openFreshStore(t);
  const strict = await openSealedState(store.state, { postgres: true });
  await assert.rejects(strict.getOrCreate(CA_KEY, caRecord), /refusing to store private key "ca\/default\/_\/identity\/seal\.example" unsealed: the Postgres store needs --state-key-file/);
  await assert.rejects(strict.put('auth/signing-key', '-----BEGIN PRIVATE KEY-----'), /refusing to store private key/);
  assert.deepEqual(await store.state.keys!(), [], 'nothing was written');
  await strict.put('auth/revoked', '[]'); // no secret in it: fine
  const insecure = await openSealedState(store.state, { postgres: true, insecurePlaintextState: true });
  await insecure.getOrCreate(CA_KEY, caRecord);
  assert.match((await store.state.get(CA_KEY))!, /PRIVATE KEY/);
  // And a plaintext private key already in Postgres refuses start-up without a key or the flag.
  await assert.rejects(openSealedState(store.state, { postgres: true }), /refusing to start: the state holds unsealed private keys \(e\.g\. "ca\//);
});

test('read-only state: nothing is created or written, a missing CA is "not created yet"', async (t) => {
  const dir = await tmp();
  t.after(() => rm(dir, { recursive: true, force: true }));
  const inner = new MemoryStateStore();
  await inner.put('auth/revoked', '[]');
  const ro = await openSealedState(inner, { postgres: false, readOnly: true });
  await assert.rejects(ro.getOrCreate(CA_KEY, caRecord), /not created yet/);
  assert.equal(await ro.update('auth/revoked', () => '["x"]'), '["x"]');
  await ro.put('x', 'y');
  await ro.delete('auth/revoked');
  assert.deepEqual(await inner.keys(), ['auth/revoked']);
  assert.equal(await inner.get('auth/revoked'), '[]');
  // A read-only open of plaintext keys seals nothing.
  await inner.put(CA_KEY, caRecord());
  await openSealedState(inner, { stateKeyFile: await keyFile(dir), postgres: false, readOnly: true });
  assert.match((await inner.get(CA_KEY))!, /PRIVATE KEY/);
});

test('replicas on one Postgres roll a new state key one at a time: keys swapped first, then promoted, then the old one dropped', async (t) => {
  const dir = await tmp();
  const { store } = await openFreshStore(t, [dir]);
  const oldKf = await keyFile(dir, 'old.key');
  const newKf = await keyFile(dir, 'new.key');
  const newId = (await loadStateKey(newKf)).id;
  const replica = (stateKeyFile: string, stateOldKeyFile?: string) => openSealedState(store.state, { stateKeyFile, stateOldKeyFile, postgres: true });
  const sealedIds = async () => Promise.all((await store.state.keys!()).filter((k) => k.startsWith('ca/')).map(async (k) => JSON.parse((await store.state.get(k))!).kid as string));
  const records = [caRecord(), caRecord(), caRecord()];
  const key = (i: number) => `ca/default/_/identity-${i}/seal.example`;

  const a = await replica(oldKf);
  const b = await replica(oldKf);
  await a.put(key(0), records[0]!);

  // Promoting the new key at once on one replica locks the others out of what its start-up re-seals;
  // starting it with the keys swapped re-seals under the old key again.
  await replica(newKf, oldKf);
  await assert.rejects(b.get(key(0)), new RegExp(`state ${key(0)} is sealed with state key id ${newId}, but --state-key-file has key id`));
  await replica(oldKf, newKf);
  assert.equal(await b.get(key(0)), records[0]);

  // Step 1, one replica at a time: the new key is accepted, the old one still seals.
  const a1 = await replica(oldKf, newKf);
  await a1.put(key(1), records[1]!);
  assert.equal(await b.get(key(1)), records[1], 'a replica not rolled yet reads what a rolled one wrote');
  const b1 = await replica(oldKf, newKf);

  // Step 2, one replica at a time: the new key seals (start-up re-seals), the old one still opens.
  const a2 = await replica(newKf, oldKf);
  assert.equal(await b1.get(key(0)), records[0], 'a replica still on step 1 opens what step 2 re-sealed');
  await b1.put(key(2), records[2]!); // sealed under the old key while the roll goes on
  assert.equal(await a2.get(key(2)), records[2]);
  await replica(newKf, oldKf); // b's step 2: its start-up re-seals what step 1 wrote meanwhile
  assert.deepEqual(new Set(await sealedIds()), new Set([newId]), 'nothing is left under the old key');

  // Step 3: the old key is dropped.
  const a3 = await replica(newKf);
  for (let i = 0; i < records.length; i++) assert.equal(await a3.get(key(i)), records[i]);
});

test('replicas started together with different keys: a value sealed under a key this one lacks, met while running, names both key ids, fails its health until gone', async (t) => {
  const dir = await tmp();
  t.after(() => rm(dir, { recursive: true, force: true }));
  const [ka, kb, kOld] = await Promise.all(['a.key', 'b.key', 'old.key'].map(async (n) => loadStateKey(await keyFile(dir, n))));
  const inner = new MemoryStateStore();
  // Both opened the state while it was empty: the start-up check had nothing to refuse.
  const a = await openSealedState(inner, { stateKeyFile: join(dir, 'a.key'), postgres: true }) as SealedStateStore;
  const b = await openSealedState(inner, { stateKeyFile: join(dir, 'b.key'), stateOldKeyFile: join(dir, 'old.key'), postgres: true }) as SealedStateStore;
  const record = caRecord();
  assert.equal(await a.getOrCreate(CA_KEY, () => record), record);
  assert.equal(b.health().ok, true);

  const err = await b.getOrCreate(CA_KEY, caRecord).then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof ForeignStateKeyError, String(err));
  assert.equal(err.stateKey, CA_KEY);
  assert.equal(err.keyId, ka!.id);
  assert.match(err.message, new RegExp(`state ${CA_KEY} is sealed with state key id ${ka!.id}, but --state-key-file has key id ${kb!.id} \\(--state-old-key-file: key id ${kOld!.id}\\)`));
  assert.match(err.message, /every replica sharing this state must use the same --state-key-file/);
  const health = b.health();
  assert.equal(health.ok, false);
  assert.equal(health.detail, err.message);
  assert.equal(a.health().ok, true, 'the replica holding the key is fine');
  await assert.rejects(b.get(CA_KEY), ForeignStateKeyError);
  assert.equal(b.health().ok, false, 'still not ready while the value is there');

  // Removed (the operator's fix): this replica creates its own and is fit again.
  await b.delete(CA_KEY);
  assert.equal(b.health().ok, true);
  await a.put(CA_KEY, record);
  await assert.rejects(b.get(CA_KEY), ForeignStateKeyError);
  await inner.delete(CA_KEY);
  await b.getOrCreate(CA_KEY, caRecord);
  assert.equal(b.health().ok, true, 'a later read that opens clears it');
});
