// bin/mesh-sds.js (npm start, npx mesh-sds) runs the CLI from JavaScript it transpiles once per
// state of the sources into .build/cli (scripts/cli-build.js, tested in cli-build.test.ts), or the
// TypeScript sources under tsx with MESH_SDS_RUN_TSX=1 or when no build can be had. Started from a
// transpiled mirror of this repository (scripts/build-js.js, what the suite runs from), it runs the
// mirror's JavaScript instead; a mirror built from another repository, or a folder that merely
// looks like one, is never run. The suite itself runs from such a mirror, so the README's quickstart
// is run here the ways `npm start` runs it, issuance workers included.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { sourceDigest } from '../../scripts/cli-build.js';
import { BIN } from './run.js';

const realBin = realpathSync(BIN);
const repo = dirname(dirname(realBin));
const version = (JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version: string }).version;

function run(bin: string, env: NodeJS.ProcessEnv = process.env): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [bin, '--version'], { encoding: 'utf8', timeout: 60_000, env });
}

/** The ways the repository bin runs the CLI: its transpiled build, and the sources under tsx. */
const MODES = [
  { mode: 'from its transpiled build', env: { ...process.env, MESH_SDS_RUN_TSX: undefined } },
  { mode: 'under tsx (MESH_SDS_RUN_TSX=1)', env: { ...process.env, MESH_SDS_RUN_TSX: '1' } },
];

/** A folder shaped like the mirror: bin links to the repository's, src/cli/main.js says it ran. */
function fakeMirror(mark: string | undefined): string {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-entry-'));
  symlinkSync(dirname(realBin), join(dir, 'bin'));
  mkdirSync(join(dir, 'src', 'cli'), { recursive: true });
  writeFileSync(join(dir, 'src', 'cli', 'main.js'), "console.log('transpiled main ran');\n");
  if (mark !== undefined) writeFileSync(join(dir, '.mesh-sds-transpiled-from'), mark);
  return dir;
}

for (const { mode, env } of MODES) {
  test(`the repository bin runs the CLI ${mode}`, () => {
    const r = run(realBin, env);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), version);
  });
}

test('the repository bin transpiles the sources as they are into .build/cli/<digest of the checkout and its sources>', () => {
  const r = run(realBin, MODES[0]!.env);
  assert.equal(r.status, 0, r.stderr);
  const build = join(repo, '.build', 'cli', sourceDigest(repo));
  assert.equal(readFileSync(join(build, '.mesh-sds-cli-build'), 'utf8'), repo);
  assert.ok(existsSync(join(build, 'src', 'cli', 'main.js')));
  // Not a mirror of the test suite's kind: its bin (none) would not be taken for one.
  assert.equal(existsSync(join(build, '.mesh-sds-transpiled-from')), false);
});

test('a mirror built from this repository runs its own JavaScript; one built from another, or unmarked, runs the sources', (t) => {
  const ours = fakeMirror(repo);
  const foreign = fakeMirror('/somewhere/else');
  const unmarked = fakeMirror(undefined);
  t.after(() => [ours, foreign, unmarked].forEach((d) => rmSync(d, { recursive: true, force: true })));
  const fromOurs = run(join(ours, 'bin', 'mesh-sds.js'));
  assert.equal(fromOurs.status, 0, fromOurs.stderr);
  assert.equal(fromOurs.stdout.trim(), 'transpiled main ran');
  for (const dir of [foreign, unmarked]) {
    const r = run(join(dir, 'bin', 'mesh-sds.js'));
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), version, dir);
  }
});

for (const { mode, env } of MODES) {
  test(`${mode}, as npm start runs it, serve answers the README quickstart fetch of default and system_trust_bundle`, { timeout: 120_000 }, async (t) => {
    const state = mkdtempSync(join(tmpdir(), 'mesh-sds-entry-state-'));
    const server = spawn(process.execPath, [
      realBin, 'serve', '--resources', join(repo, 'examples', 'quickstart'), '--state-dir', state, '--auth', 'none', '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0',
    ], { stdio: ['ignore', 'pipe', 'pipe'], env });
    t.after(async () => {
      if (server.exitCode === null) {
        server.kill('SIGKILL');
        await once(server, 'exit');
      }
      rmSync(state, { recursive: true, force: true });
    });
    let stderr = '';
    server.stderr.on('data', (d) => (stderr += d));
    let listen: string | undefined;
    for await (const line of createInterface({ input: server.stdout })) {
      if (line.includes('"msg":"mesh-sds serving"')) {
        listen = (JSON.parse(line) as { listen: string }).listen;
        break;
      }
    }
    assert.ok(listen, `serve never said it was serving: ${stderr}`);
    const r = spawnSync(process.execPath, [realBin, 'fetch', '--server', listen, '--node', 'default.backend-1.shop', '--name', 'default', '--name', 'system_trust_bundle'], { encoding: 'utf8', timeout: 60_000, env });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /secret "default" \(tls_certificate\)\n\s+spiffe id:\s+spiffe:\/\/default\.default\.mesh\.local\/ns\/shop\/sa\/backend\n/);
    assert.match(r.stdout, /secret "system_trust_bundle" \(spiffe_validator\)\n\s+trust domains: default\.default\.mesh\.local, /);
    server.kill('SIGTERM');
    const [code] = (await once(server, 'exit')) as [number | null];
    assert.equal(code, 0, stderr);
  });
}
