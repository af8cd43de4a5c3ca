import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeWorld, startWorldServer, waitFor } from '../conformance/world.js';
import { resourceYaml } from '../helpers/yaml.js';

async function readyz(base: string): Promise<{ status: number; text: string }> {
  const r = await fetch(`${base}/readyz?verbose`);
  return { status: r.status, text: await r.text() };
}

test('/readyz?verbose of a real server lists store, identities, revocations and draining; an identity whose CA cannot be read makes it 503 naming that identity', async () => {
  const world = makeWorld();
  const server = await startWorldServer(world, { admin: '127.0.0.1:0', auth: 'token' });
  try {
    const base = server.admin!.url;
    const first = await readyz(base);
    assert.equal(first.status, 200, first.text);
    for (const name of ['store', 'identities', 'revocations', 'draining']) assert.match(first.text, new RegExp(`^\\[\\+\\]${name} ok`, 'm'));
    assert.match(first.text, /^ready$/m);
    assert.equal((await fetch(`${base}/readyz`)).status, 200);

    // A Bundled identity whose CA lives in a file that does not exist: it has no CA, so not ready.
    world.write(
      'broken.yaml',
      resourceYaml('MeshIdentity', 'broken', {
        labels: { 'kuma.io/origin': 'zone', 'k8s.kuma.io/namespace': 'kuma-system' },
        spec: {
          selector: { dataplane: { matchLabels: { app: 'nobody' } } },
          provider: {
            type: 'Bundled',
            bundled: { ca: { certificate: { type: 'File', file: { path: '/nonexistent/ca.crt' } }, privateKey: { type: 'File', file: { path: '/nonexistent/ca.key' } } } },
          },
        },
      }),
    );
    const broken = await waitFor('readiness to fail', () => {
      const v = server.readiness.evaluate();
      return !v.ready && v;
    }, 10_000);
    const failed = broken.checks.find((c) => !c.ok);
    assert.equal(failed?.name, 'identities');
    assert.match(failed?.detail ?? '', /broken/);
    const r = await readyz(base);
    assert.equal(r.status, 503);
    assert.match(r.text, /^\[-\]identities failed: no CA for kri_mid_default_default_kuma-system_broken_/m);
    assert.match(r.text, /^\[\+\]store ok/m);

    world.remove('broken.yaml');
    await waitFor('readiness to recover', () => server.readiness.evaluate().ready, 10_000);
    assert.equal((await fetch(`${base}/readyz`)).status, 200);
  } finally {
    await server.close();
    world.cleanup();
  }
});
