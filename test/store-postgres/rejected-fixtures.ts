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

const API_TESTS = ['test/api/meshidentity-validation.test.ts', 'test/api/meshtrust-validation.test.ts', 'test/api/parse.test.ts'];

export function rejectedFixtures(): RejectedFixture[] {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-rejected-'));
  const out = join(dir, 'rejected.jsonl');
  try {
    // Without NODE_TEST_CONTEXT: inside a test run it would make the child report to us instead of running.
    const env: NodeJS.ProcessEnv = { ...process.env, MESH_SDS_RECORD_REJECTED: out };
    delete env.NODE_TEST_CONTEXT;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=dot', ...API_TESTS], {
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
