// Every document the API tests reject (test/api assertRejected), with the exact `path: message`
// problems `validate` reports, collected by running those tests with a recorder switched on. Store
// tests write each one where another tool would, and expect the same problems.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RejectedFixture {
  obj: unknown;
  expected: string[];
}

const API_TESTS = ['meshidentity-validation.test.ts', 'meshtrust-validation.test.ts', 'parse.test.ts'];
// Run from the suite's transpiled mirror (scripts/build-js.js), the API tests beside us are JS too.
const TRANSPILED = import.meta.url.endsWith('.js');
const apiTests = API_TESTS.map((f) => join(import.meta.dirname, '..', 'api', TRANSPILED ? f.replace(/\.ts$/, '.js') : f));

export function rejectedFixtures(): RejectedFixture[] {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-rejected-'));
  const out = join(dir, 'rejected.jsonl');
  try {
    // Without NODE_TEST_CONTEXT: inside a test run it would make the child report to us instead of running.
    const env: NodeJS.ProcessEnv = { ...process.env, MESH_SDS_RECORD_REJECTED: out };
    delete env.NODE_TEST_CONTEXT;
    const r = spawnSync(process.execPath, [...(TRANSPILED ? [] : ['--import', 'tsx']), '--test', '--test-reporter=dot', ...apiTests], {
      env,
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`the API tests failed, so their fixtures cannot be trusted:\n${r.stdout}\n${r.stderr}`);
    const fixtures = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as RejectedFixture);
    if (fixtures.length < 50) throw new Error(`only ${fixtures.length} rejected fixtures recorded`);
    return fixtures;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
