// Seeded fuzzing of the directory store (FUZZ_SEED to replay; FUZZ_CASES / 8 files, at least
// 60): random YAML, binary data, huge and deep documents, many documents, bad UTF-8 and symlink
// tricks are written in rounds next to the real resources. Each bad file is reported naming it,
// the server stays up, and a valid change made after each round still reaches an open stream.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ALPHA_TD, makeWorld, meshTrustYaml, startWorldServer } from '../conformance/world.js';
import { SotwClient, secretsOf, spiffeTrustDomains } from '../conformance/envoy-client.js';
import { fuzzSettings, rng, type Rng } from './prng.js';

const ROUND_LIMIT_MS = 15_000;

function randomValue(r: Rng, depth: number): unknown {
  const k = r.int(depth > 3 ? 4 : 7);
  switch (k) {
    case 0:
      return r.int(1e6) - 5e5;
    case 1:
      return r.bytes(r.int(20)).toString('base64');
    case 2:
      return r.chance(0.5);
    case 3:
      return null;
    case 4:
      return Array.from({ length: r.int(4) }, () => randomValue(r, depth + 1));
    default: {
      const keys = ['type', 'name', 'mesh', 'spec', 'labels', 'selector', 'provider', 'trustDomain', 'caBundles', 'spiffeID', 'x'];
      return Object.fromEntries(Array.from({ length: 1 + r.int(5) }, () => [r.pick(keys), randomValue(r, depth + 1)]));
    }
  }
}

/** Writes one fuzz file (or link) into `dir`; returns whether the store must report it by name. */
function writeCase(r: Rng, dir: string, name: string): { kind: string; mustReport: boolean } {
  const p = join(dir, name);
  const kind = r.pick(['random-yaml', 'random-resource', 'binary', 'huge', 'deep', 'many-docs', 'bad-utf8', 'symlink-loop', 'symlink-dangling', 'symlink-dir', 'symlink-outside'] as const);
  switch (kind) {
    case 'random-yaml':
      writeFileSync(p, stringify(randomValue(r, 0)));
      return { kind, mustReport: false };
    case 'random-resource':
      writeFileSync(p, stringify({ type: r.pick(['MeshTrust', 'MeshIdentity', 'Dataplane', 'Secret', 'Nope']), name: `fz-${name.replace(/\W/g, '')}`, mesh: 'default', spec: randomValue(r, 1) }));
      return { kind, mustReport: false };
    case 'binary':
      writeFileSync(p, r.bytes(1 + r.int(4096)));
      return { kind, mustReport: true };
    case 'huge':
      // Over the default --max-file-size of 4 MiB.
      writeFileSync(p, '# ' + 'x'.repeat(5 * 1024 * 1024) + '\n');
      return { kind, mustReport: true };
    case 'deep':
      writeFileSync(p, '['.repeat(20_000) + ']'.repeat(20_000));
      return { kind, mustReport: true };
    case 'many-docs':
      writeFileSync(p, 'type: Nope\nname: x\n---\n'.repeat(5000));
      return { kind, mustReport: true };
    case 'bad-utf8':
      writeFileSync(p, Buffer.concat([Buffer.from('type: MeshTrust\nname: latin\n# caf'), Buffer.from([0xe9, 0xff]), Buffer.from('\n')]));
      return { kind, mustReport: true };
    case 'symlink-loop':
      symlinkSync(`${name}.b.yaml`, p);
      symlinkSync(name, join(dir, `${name}.b.yaml`));
      return { kind, mustReport: false };
    case 'symlink-dangling':
      symlinkSync('/nonexistent/mesh-sds-fuzz.yaml', p);
      return { kind, mustReport: false };
    case 'symlink-dir':
      mkdirSync(`${p}.d`);
      symlinkSync(`${p}.d`, p);
      return { kind, mustReport: false };
    case 'symlink-outside':
      symlinkSync('/etc/hostname', p);
      return { kind, mustReport: false };
  }
}

test('fuzzing the directory store: bad files are reported naming them, the server stays up, later valid changes still reach an open stream', { timeout: 180_000 }, async (t) => {
  const { seed, cases } = fuzzSettings(2000);
  const files = Math.max(60, Math.floor(cases / 8));
  t.diagnostic(`FUZZ_SEED=${seed} files=${files}`);
  console.log(`directory fuzz: FUZZ_SEED=${seed} files=${files}`);
  const r = rng(seed);
  const world = makeWorld();
  const server = await startWorldServer(world);
  const stream = new SotwClient(server.address, { node: 'default.web' });
  const alphaYaml = meshTrustYaml('zz-alpha', ALPHA_TD, [world.cas.alpha.certPem]);
  try {
    stream.request(['system_trust_bundle']);
    const hasAlpha = async (want: boolean) => {
      const until = Date.now() + ROUND_LIMIT_MS;
      for (;;) {
        const res = await stream.next(Math.max(1, until - Date.now()));
        stream.ack(res);
        const b = secretsOf(res).get('system_trust_bundle');
        if (b && spiffeTrustDomains(b).some((d) => d.name === ALPHA_TD) === want) return;
      }
    };
    await hasAlpha(true);
    const perRound = 12;
    const kinds = new Map<string, number>();
    let written = 0;
    for (let round = 0; written < files; round++) {
      const t0 = Date.now();
      const reported: string[] = [];
      const roundKinds: string[] = [];
      for (let i = 0; i < perRound && written < files; i++, written++) {
        const name = `fz-${round}-${i}.yaml`;
        const c = writeCase(r, world.resourcesDir, name);
        kinds.set(c.kind, (kinds.get(c.kind) ?? 0) + 1);
        roundKinds.push(c.kind);
        if (c.mustReport) reported.push(name);
      }
      // A valid change after the bad files: alpha leaves (even rounds) or comes back (odd rounds).
      if (round % 2 === 0) world.remove('zz-alpha.yaml');
      else world.write('zz-alpha.yaml', alphaYaml);
      await hasAlpha(round % 2 === 1).catch((e: Error) => {
        throw new Error(`round ${round} (seed ${seed}, files ${roundKinds.join(' ')}): the valid change did not reach the stream: ${e.message}`);
      });
      // Reports may come a moment after the valid change (a big file is read when it is complete).
      const named = (name: string) => (server.authorities.current?.snapshot.errors ?? []).some((e) => e.file.endsWith(name));
      while (!reported.every(named) && Date.now() - t0 < ROUND_LIMIT_MS) await new Promise((res) => setTimeout(res, 50));
      const errors = server.authorities.current?.snapshot.errors ?? [];
      for (const name of reported) {
        assert.ok(errors.some((e) => e.file.endsWith(name)), `round ${round} (seed ${seed}): ${name} not reported within ${ROUND_LIMIT_MS} ms (${errors.length} errors)`);
      }
      const took = Date.now() - t0;
      assert.ok(took < ROUND_LIMIT_MS, `round ${round} took ${took} ms`);
    }
    t.diagnostic(`kinds: ${[...kinds].map(([k, n]) => `${k} ×${n}`).join(', ')}`);
  } finally {
    stream.close();
    await server.close();
    world.cleanup();
  }
});
