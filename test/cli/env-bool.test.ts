// Boolean environment variables mean what they say: MESH_SDS_INSECURE=false never enables plaintext.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseEnvBoolean } from '../../src/cli/env-bool.js';
import { meshSds } from './run.js';

test('true|false|1|0|yes|no in any case; anything else names the variable', () => {
  for (const v of ['true', 'TRUE', '1', 'yes', ' Yes ']) assert.equal(parseEnvBoolean('X', v), true, v);
  for (const v of ['false', 'False', '0', 'no', 'NO']) assert.equal(parseEnvBoolean('X', v), false, v);
  for (const v of ['', 'on', 'off', 'y', 'enabled', '2']) {
    assert.throws(() => parseEnvBoolean('MESH_SDS_INSECURE', v), /^Error: MESH_SDS_INSECURE=".*": must be one of true, false, 1, 0, yes, no$/, v);
  }
});

test('MESH_SDS_INSECURE=false does not allow plaintext gRPC on 0.0.0.0; an unknown value is refused naming the variable', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-envbool-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const args = ['serve', '--resources', join(dir, 'r'), '--state-dir', join(dir, 's'), '--listen', '0.0.0.0:0'];
  const off = await meshSds(args, { env: { MESH_SDS_INSECURE: 'false' } });
  assert.equal(off.code, 1);
  assert.match(off.stderr, /refusing plaintext gRPC on non-loopback address 0\.0\.0\.0:0/);
  const bad = await meshSds(args, { env: { MESH_SDS_INSECURE: 'maybe' } });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /MESH_SDS_INSECURE="maybe": must be one of true, false, 1, 0, yes, no/);
});

test('a zone that is not a DNS-1123 name is refused before anything starts, from the flag or MESH_SDS_ZONE (it is the KRI zone segment and part of the default trust domain)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-zone-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const args = ['serve', '--resources', join(dir, 'r'), '--state-dir', join(dir, 's'), '--auth', 'none', '--listen', '127.0.0.1:0'];
  const flag = await meshSds([...args, '--zone', 'eu_West']);
  assert.equal(flag.code, 1);
  assert.match(flag.stderr, /--zone <name>' argument 'eu_West' is invalid\. "eu_West" must be a valid DNS-1123 name/);
  const env = await meshSds(['get', 'meshidentity', '--resources', join(dir, 'r')], { env: { MESH_SDS_ZONE: 'Zone1' } });
  assert.equal(env.code, 1);
  assert.match(env.stderr, /value 'Zone1' from env 'MESH_SDS_ZONE' is invalid/);
});
