// Proxy tokens for the realistic shape, made before the run with the product's own token code
// against the bench's state (directory or Postgres), exactly as `mesh-sds token generate` does:
// the first one through the CLI itself (which also creates the token MAC key: --create-key), the rest in-process.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withState } from '../src/cli/offline.js';
import { TokenAuthority } from '../src/server/tokens.js';

/** Writes one token per line (line i for `default.dp-i.bench`: Dataplane dp-i of namespace bench, named in full) to `file`; returns ms taken. */
export async function makeTokens(root: string, n: number, file: string, where: { stateDir: string; store?: string }): Promise<number> {
  const t0 = performance.now();
  const storeArgs = where.store ? ['--store', where.store, '--insecure-plaintext-state'] : ['--state-dir', where.stateDir];
  const first = execFileSync(process.execPath, [join(root, 'bin/mesh-sds.js'), 'token', 'generate', '--mesh', 'default', '--name', 'dp-0.bench', '--valid-for', '24h', '--create-key', ...storeArgs], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
    env: { ...process.env, NODE_OPTIONS: '' },
  })
    .trim()
    .split('\n')
    .pop()!;
  const tokens = [first];
  await withState({ stateDir: where.stateDir, store: where.store, insecurePlaintextState: !!where.store }, async (state) => {
    const authority = await TokenAuthority.open(state);
    for (let i = 1; i < n; i++) tokens.push(await authority.generate({ mesh: 'default', name: `dp-${i}.bench`, validForMs: 24 * 3600_000 }));
  });
  writeFileSync(file, tokens.join('\n') + '\n', { mode: 0o600 });
  return performance.now() - t0;
}
