// Two real replicas on one Postgres schema started with different --zone values (D2).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { startServer, type RunningServer } from '../../src/server/serve.js';
import { createLogger } from '../../src/server/logger.js';
import { generateStateKeyFile } from '../../src/store/state-key.js';
import { PG_URL, dropSchema, testSchema } from '../store-postgres/helpers.js';

function captured(): { log: ReturnType<typeof createLogger>; warnings: () => { zone?: string; otherZone?: string; msg: string }[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  return {
    log: createLogger('warn', { destination: stream }),
    warnings: () => lines.map((l) => JSON.parse(l) as { zone?: string; otherZone?: string; msg: string }).filter((l) => l.otherZone !== undefined),
  };
}

test('a replica started with another --zone than a running replica of the same Postgres schema starts and warns, naming both zones', async () => {
  const schema = testSchema();
  const url = `${PG_URL}?schema=${schema}`;
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-zones-'));
  const servers: RunningServer[] = [];
  try {
    await generateStateKeyFile(join(dir, 'state.key'));
    const start = async (zone: string) => {
      const c = captured();
      const s = await startServer({ store: url, stateDir: join(dir, zone), stateKeyFile: join(dir, 'state.key'), listen: '127.0.0.1:0', auth: 'none', zone, logger: c.log });
      servers.push(s);
      await s.ready;
      return c;
    };
    const a = await start('default');
    const b = await start('zone-b');
    assert.equal(a.warnings().length, 0, 'the first replica saw no other zone');
    const w = b.warnings();
    assert.equal(w.length, 1, JSON.stringify(w));
    assert.equal(w[0]!.zone, 'zone-b');
    assert.equal(w[0]!.otherZone, 'default');
    assert.match(w[0]!.msg, /different trust domains/);
  } finally {
    await Promise.all(servers.map((s) => s.close()));
    await dropSchema(schema);
    await rm(dir, { recursive: true, force: true });
  }
});
