// `mesh-sds fetch --out-dir` (spiffe-helper style) against a real in-process server: files, modes,
// OpenSSL acceptance, rotation under --watch, and the --on-update command.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { chmodSync, chownSync, existsSync, lchownSync, symlinkSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { runFetch, type FetchCliOptions } from '../../src/cli/fetch.js';
import { writtenLines } from '../helpers/hook-log.js';
import { openssl } from '../helpers/openssl.js';
import { NODE, OTHER_TD, SPIFFE_ID, startTestServer, type TestServer } from './helpers.js';

const leafOf = (dir: string) => new X509Certificate(readFileSync(join(dir, 'cert.pem')));
const mode = (p: string) => statSync(p).mode & 0o777;

async function waitFor(pred: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function keyMatchesCert(dir: string): boolean {
  const key = createPrivateKey(readFileSync(join(dir, 'key.pem')));
  const a = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const b = leafOf(dir).publicKey.export({ type: 'spki', format: 'der' });
  return a.equals(b);
}

describe('mesh-sds fetch --out-dir (agent)', () => {
  let srv: TestServer;
  let work: string;
  before(async () => {
    srv = await startTestServer('token');
    work = mkdtempSync(join(srv.root, 'out-')); // removed with the server's temp root
  });
  after(async () => {
    await srv?.close();
  });

  const base = async (outDir: string): Promise<FetchCliOptions> => ({
    server: srv.running.address,
    node: NODE,
    name: [],
    outDir,
    token: await srv.running.tokens!.generate({ mesh: 'default', name: 'web.shop', validForMs: 3600_000 }),
    timeoutMs: 10_000,
  });

  it('writes cert.pem, key.pem (0600) and bundle.pem that OpenSSL verifies, then exits', async () => {
    const dir = join(work, 'once');
    let stdout = '';
    let stderr = '';
    const code = await runFetch(await base(dir), { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
    assert.equal(code, 0, stderr);
    assert.match(stdout, /wrote bundle\.pem, key\.pem, cert\.pem, svid\.json/);
    assert.doesNotMatch(stdout + stderr, /PRIVATE KEY/);
    assert.doesNotMatch(stderr, /does not chain|not valid until/, 'the server\'s leaf verifies against the bundle it sends');
    assert.equal(mode(join(dir, 'key.pem')), 0o600);
    assert.equal(mode(join(dir, 'cert.pem')), 0o644);
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'no temp files left');
    assert.equal(leafOf(dir).subjectAltName, `URI:${SPIFFE_ID}`);
    assert.ok(keyMatchesCert(dir));
    // bundle.pem holds every trust domain's CAs: our own root and the other domain's.
    const bundle = readFileSync(join(dir, 'bundle.pem'), 'utf8');
    assert.equal(bundle.match(/BEGIN CERTIFICATE/g)?.length, 2);
    assert.ok(bundle.includes(srv.otherCa.certPem.trim()));
    // cert.pem is leaf + the chain the server sends; passing it as -untrusted lets openssl use any
    // intermediates from it while the trust anchor must come from bundle.pem. The bundle holds the
    // self-signed root, so -partial_chain is not needed, and -x509_strict checks the RFC 5280 rules.
    const out = openssl(['verify', '-x509_strict', '-CAfile', join(dir, 'bundle.pem'), '-untrusted', join(dir, 'cert.pem'), join(dir, 'cert.pem')]);
    assert.match(out, /: OK/);
    const meta = JSON.parse(readFileSync(join(dir, 'svid.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(meta['spiffeId'], SPIFFE_ID);
    assert.equal(meta['serial'], leafOf(dir).serialNumber.toUpperCase());
    assert.deepEqual(meta['trustDomains'], ['default.default.mesh.local', OTHER_TD]);
    assert.ok(!('keyPem' in meta));

    // Run again at once: the server still holds the same SVID, so nothing is rewritten and no command runs.
    const before = statSync(join(dir, 'cert.pem')).mtimeMs;
    let again = '';
    const hookLog = join(work, 'once-hook.log');
    const code2 = await runFetch({ ...(await base(dir)), onUpdate: `echo ran >> ${hookLog}` }, { stdout: (s) => (again += s), stderr: () => undefined });
    assert.equal(code2, 0);
    assert.match(again, /files already current/);
    assert.equal(statSync(join(dir, 'cert.pem')).mtimeMs, before);
    assert.equal(existsSync(hookLog), false, 'on-update must not run when nothing changed');
  });

  it('removes a temp file holding a key that an agent killed mid-write left, and says so', async () => {
    const dir = join(work, 'killed');
    mkdirSync(dir, { mode: 0o700 });
    // What a SIGKILL between stageFile and its rename leaves: a process that no longer runs wrote it.
    const dead = spawnSync(process.execPath, ['-e', 'process.pid']).pid!;
    const left = `.key.pem.${dead}.0badc0de.tmp`;
    writeFileSync(join(dir, left), '-----BEGIN PRIVATE KEY-----\nold\n', { mode: 0o600 });
    const foreign = `.notes.txt.${dead}.0badc0de.tmp`; // not a file the agent writes: left alone
    writeFileSync(join(dir, foreign), 'x');
    let stdout = '';
    let stderr = '';
    const code = await runFetch(await base(dir), { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
    assert.equal(code, 0, stderr);
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), [foreign]);
    assert.match(stdout + stderr, new RegExp(`removed a temp file that an earlier run staged in .*never renamed \\(${left.replace(/\./g, '\\.')}\\)`));
    assert.ok(keyMatchesCert(dir));
  });

  it('--watch rewrites cert.pem and key.pem on rotation and runs --on-update once per change, without the token in its environment', async () => {
    const dir = join(work, 'watch');
    const hookLog = join(work, 'watch-hook.log');
    const opts = await base(dir);
    const token = opts.token!;
    delete opts.token;
    const ac = new AbortController();
    let stderr = '';
    const prevEnv = process.env['MESH_SDS_TOKEN'];
    process.env['MESH_SDS_TOKEN'] = token; // also read from the environment; the hook must not inherit it
    const running = runFetch(
      { ...opts, watch: true, onUpdate: `echo "$MESH_SDS_OUT_DIR \${MESH_SDS_TOKEN:-no-token}" >> ${hookLog}` },
      { stdout: () => undefined, stderr: (s) => (stderr += s), signal: ac.signal },
    );
    try {
      const hookLines = () => writtenLines(hookLog);
      await waitFor(() => hookLines().length === 1, 'the first write and its on-update run');
      const first = leafOf(dir);
      assert.deepEqual(hookLines(), [`${dir} no-token`]);

      srv.running.svids.rotate(NODE);
      await waitFor(() => existsSync(join(dir, 'cert.pem')) && leafOf(dir).serialNumber !== first.serialNumber, 'a rotated cert.pem');
      await waitFor(() => hookLines().length === 2, 'the second on-update run');
      const second = leafOf(dir);
      assert.equal(second.subjectAltName, `URI:${SPIFFE_ID}`);
      assert.ok(keyMatchesCert(dir), 'key.pem was replaced together with cert.pem');
      assert.equal(mode(join(dir, 'key.pem')), 0o600);
      const out = openssl(['verify', '-CAfile', join(dir, 'bundle.pem'), '-untrusted', join(dir, 'cert.pem'), join(dir, 'cert.pem')]);
      assert.match(out, /: OK/);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(hookLines().length, 2, 'exactly one run per change set');
    } finally {
      ac.abort();
      assert.equal(await running, 0, stderr);
      if (prevEnv === undefined) delete process.env['MESH_SDS_TOKEN'];
      else process.env['MESH_SDS_TOKEN'] = prevEnv;
    }
    assert.ok(!stderr.includes(token));
    assert.doesNotMatch(stderr, /PRIVATE KEY/);
  });

  it('a failing --on-update command makes one-shot fetch exit 1 naming its exit status (a command not found too); the files stay written', async () => {
    for (const [name, hook, status] of [['failing-hook', 'echo boom >&2; exit 3', 'exit code 3'], ['missing-hook', 'no-such-command-mesh-sds', 'exit code 127']] as const) {
      const dir = join(work, name);
      let stderr = '';
      const code = await runFetch({ ...(await base(dir)), onUpdate: hook }, { stdout: () => undefined, stderr: (s) => (stderr += s) });
      assert.equal(code, 1, stderr);
      assert.match(stderr, new RegExp(`wrote bundle\\.pem, key\\.pem, cert\\.pem, svid\\.json, but the on-update command failed \\(${status}\\)`));
      assert.ok(existsSync(join(dir, 'cert.pem')));
    }
  });
  it('a hook that leaves a program running in the background does not wedge later runs; stopping the agent ends a hook that hangs (after the stop grace), with what it started', { timeout: 40_000 }, async () => {
    const dir = join(work, 'daemon-hook');
    const hookLog = join(work, 'daemon-hook.log');
    const pidFile = join(work, 'daemon-hook.pid');
    const ac = new AbortController();
    let stderr = '';
    // The first run starts a "daemon" that keeps the hook's output pipes; the second hangs in a grandchild.
    const hook = `if [ -f ${hookLog} ]; then echo run >> ${hookLog}; sleep 300 & echo $! > ${pidFile}; wait; else echo run >> ${hookLog}; sleep 300 & fi`;
    const running = runFetch({ ...(await base(dir)), watch: true, onUpdate: hook }, { stdout: () => undefined, stderr: (s) => (stderr += s), signal: ac.signal });
    const runs = () => writtenLines(hookLog).length;
    try {
      await waitFor(() => runs() === 1, 'the first on-update run');
      await waitFor(() => /on-update command succeeded/.test(stderr), 'the first run reported although its daemon holds the pipes');
      srv.running.svids.rotate(NODE);
      // The pid is read once written: the file exists (empty) a moment before `echo` writes it,
      // and an empty pid would be process group 0 — ours — which never ends.
      const pidWritten = () => existsSync(pidFile) && /^\d+\n$/.test(readFileSync(pidFile, 'utf8'));
      await waitFor(() => runs() === 2 && pidWritten(), 'a second run after the rotation');
    } finally {
      ac.abort();
      assert.equal(await running, 0, stderr);
    }
    assert.match(stderr, /waiting up to 10 s for the on-update command to finish/);
    const grandchild = Number(readFileSync(pidFile, 'utf8'));
    assert.ok(grandchild > 1, `pid file holds ${grandchild}`);
    await waitFor(() => {
      try {
        // A killed process not reaped yet (a zombie) is ended too.
        return readFileSync(`/proc/${grandchild}/stat`, 'utf8').replace(/^.*\) /s, '').startsWith('Z');
      } catch {
        return true;
      }
    }, 'the hanging hook\'s own child to be ended too', 6000);
  });

  it('a commit that fails at cert.pem puts key.pem and bundle.pem back as they were (key 0600) and leaves no staged file', { timeout: 40_000 }, async () => {
    const dir = join(work, 'partial-commit');
    mkdirSync(dir, { recursive: true });
    const oldKey = '-----BEGIN PRIVATE KEY-----\nold pair\n-----END PRIVATE KEY-----\n';
    writeFileSync(join(dir, 'key.pem'), oldKey, { mode: 0o600 });
    writeFileSync(join(dir, 'bundle.pem'), 'old bundle\n');
    // rename(2) cannot replace a directory with a file: cert.pem fails after bundle.pem and key.pem were replaced.
    mkdirSync(join(dir, 'cert.pem', 'in-the-way'), { recursive: true });
    let stderr = '';
    const code = await runFetch(await base(dir), { stdout: () => undefined, stderr: (s) => (stderr += s) });
    assert.equal(code, 1, stderr);
    assert.match(stderr, /cannot replace cert\.pem: .*; put back key\.pem, bundle\.pem as they were/);
    assert.equal(readFileSync(join(dir, 'key.pem'), 'utf8'), oldKey, 'key.pem of the new pair stayed beside the old cert.pem');
    assert.equal(mode(join(dir, 'key.pem')), 0o600);
    assert.equal(readFileSync(join(dir, 'bundle.pem'), 'utf8'), 'old bundle\n');
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'staged files left behind');
    assert.doesNotMatch(stderr, /PRIVATE KEY/);
  });

  /**
   * A watching agent whose first write is done, with its folder then replaced by a file, so the
   * write of the push this starts fails until the file is removed.
   */
  async function watchThenBlockFolder(name: string) {
    const dir = join(work, name);
    const ac = new AbortController();
    const seen = { stderr: '' };
    const running = runFetch({ ...(await base(dir)), watch: true }, { stdout: () => undefined, stderr: (s) => (seen.stderr += s), signal: ac.signal });
    // svid.json is the last file a write commits: removing the folder earlier would fail the first write instead
    await waitFor(() => existsSync(join(dir, 'svid.json')), 'the first write');
    const block = () => {
      rmSync(dir, { recursive: true, force: true });
      writeFileSync(dir, 'not a directory');
      srv.running.svids.rotate(NODE);
    };
    block();
    return { dir, seen, running, ac, block };
  }

  it('an out-dir removed while watching is made again and written by a retry, without waiting for the next push', { timeout: 40_000 }, async () => {
    const { dir, seen, running, ac } = await watchThenBlockFolder('removed');
    try {
      await waitFor(() => /cannot write \S+ \(version \S+, NACKed by this agent\): EEXIST.*; trying again in 5 s/.test(seen.stderr), 'the failed write to be reported');
      rmSync(dir, { force: true });
      // reported once every file is in place (cert.pem appears before the write is over)
      await waitFor(() => /wrote \S+ \(version \S+\) on retry/.test(seen.stderr), 'the retry to recreate the directory and write', 15_000);
      assert.ok(keyMatchesCert(dir));
    } finally {
      ac.abort();
      assert.equal(await running, 0, seen.stderr);
    }
  });

  it('a write that keeps failing is tried again less and less often (5 s, then 10 s, …), and a write that lands resets the wait', { timeout: 40_000 }, async () => {
    const { dir, seen, running, ac, block } = await watchThenBlockFolder('keeps-failing');
    try {
      await waitFor(() => /EEXIST.*; trying again in 5 s/.test(seen.stderr), 'the first failure');
      await waitFor(() => /EEXIST.*; trying again in 10 s/.test(seen.stderr), 'the second failure, with a longer wait', 15_000);
      rmSync(dir, { force: true });
      srv.running.svids.rotate(NODE); // a new push writes at once, and the wait starts again from 5 s
      await waitFor(() => existsSync(join(dir, 'svid.json')), 'the new push written');
      const before = seen.stderr.length;
      block();
      await waitFor(() => /EEXIST.*; trying again in 5 s/.test(seen.stderr.slice(before)), 'a failure after a write that landed waits 5 s again');
    } finally {
      ac.abort();
      rmSync(dir, { recursive: true, force: true });
      assert.equal(await running, 0, seen.stderr);
    }
  });

  it('names of the wrong kind (a trust bundle as --name, an identity as --trust-name) end a one-shot fetch with exit 1, saying which secret came as what for which flag', { timeout: 40_000 }, async () => {
    const cases: [Partial<FetchCliOptions>, RegExp][] = [
      [{ name: ['ROOTCA'] }, /secret "ROOTCA", asked for as the identity \(--name "ROOTCA"\), came as a trust bundle \(trusted_ca validation context\), not a tls_certificate/],
      [{ name: ['default'], trustName: 'default' }, /secret "default", asked for as the trust bundle \(--trust-name "default"\), came as an identity \(tls_certificate\), not a validation context/],
    ];
    for (const [flags, expected] of cases) {
      let stderr = '';
      const code = await runFetch({ ...(await base(join(work, 'wrong-kind'))), ...flags }, { stdout: () => undefined, stderr: (s) => (stderr += s) });
      assert.equal(code, 1, stderr);
      assert.match(stderr, expected);
      assert.doesNotMatch(stderr, /trying again/);
    }
  });

  it('an out-dir that another user owns is refused, naming its owner, and nothing is written into it', { timeout: 40_000, skip: process.getuid?.() === 0 ? false : 'giving a folder to another user needs root' }, async () => {
    const dir = join(work, 'theirs');
    mkdirSync(dir);
    chownSync(dir, 12345, 12345);
    let stderr = '';
    const code = await runFetch(await base(dir), { stdout: () => undefined, stderr: (s) => (stderr += s) });
    assert.notEqual(code, 0);
    assert.match(stderr, /refusing to write into .*theirs: it belongs to uid 12345/);
    assert.deepEqual(readdirSync(dir), []);
  });

  it('an out-dir given as a symlink another user owns, or inside a folder another user owns, is refused naming it', { timeout: 40_000, skip: process.getuid?.() === 0 ? false : 'giving a file to another user needs root' }, async () => {
    const target = join(work, 'link-target');
    mkdirSync(target);
    const link = join(work, 'their-link');
    symlinkSync(target, link);
    lchownSync(link, 12345, 12345);
    let stderr = '';
    assert.notEqual(await runFetch(await base(link), { stdout: () => undefined, stderr: (s) => (stderr += s) }), 0);
    assert.match(stderr, /refusing to write through .*their-link: it is a symlink that uid 12345 owns/);
    assert.deepEqual(readdirSync(target), []);

    const parent = join(work, 'their-parent');
    mkdirSync(parent);
    chownSync(parent, 12345, 12345);
    stderr = '';
    assert.notEqual(await runFetch(await base(join(parent, 'mine', 'out')), { stdout: () => undefined, stderr: (s) => (stderr += s) }), 0);
    assert.match(stderr, /the folder holding it, .*their-parent, belongs to uid 12345/);
    assert.deepEqual(readdirSync(parent), []);
  });

  it('an out-dir below a folder another user owns, further up than the folder holding it (or reached through a symlink), is refused naming that folder', { timeout: 40_000, skip: process.getuid?.() === 0 ? false : 'giving a folder to another user needs root' }, async () => {
    // Their home holds a folder of ours: they can rename it away and put a symlink to /etc in its place.
    const home = join(work, 'their-home');
    mkdirSync(join(home, 'certs'), { recursive: true });
    chownSync(home, 12345, 12345);
    let stderr = '';
    assert.notEqual(await runFetch(await base(join(home, 'certs', 'ssl')), { stdout: () => undefined, stderr: (s) => (stderr += s) }), 0);
    assert.match(stderr, /refusing to write into .*their-home\/certs\/ssl: .*their-home, a folder above it, belongs to uid 12345/);
    assert.deepEqual(readdirSync(join(home, 'certs')), []);

    // A symlink of ours into their home leads there just the same.
    const link = join(work, 'link-into-their-home');
    symlinkSync(join(home, 'certs'), link);
    stderr = '';
    assert.notEqual(await runFetch(await base(join(link, 'ssl')), { stdout: () => undefined, stderr: (s) => (stderr += s) }), 0);
    assert.match(stderr, /their-home, a folder above it, belongs to uid 12345/);
    assert.deepEqual(readdirSync(join(home, 'certs')), []);

    // And so does a symlink of ours given as the out-dir itself.
    const direct = join(work, 'link-to-their-certs');
    symlinkSync(join(home, 'certs'), direct);
    stderr = '';
    assert.notEqual(await runFetch(await base(direct), { stdout: () => undefined, stderr: (s) => (stderr += s) }), 0);
    assert.match(stderr, /their-home, a folder above it, belongs to uid 12345/);
    assert.deepEqual(readdirSync(join(home, 'certs')), []);
  });

  it('an out-dir others can write into (no sticky bit) is written with a warning naming its mode; a sticky or private one without', { timeout: 40_000 }, async () => {
    const write = async (dir: string, mode: number) => {
      mkdirSync(dir);
      chmodSync(dir, mode); // not mkdir's mode: the umask would narrow it
      let stderr = '';
      const code = await runFetch(await base(dir), { stdout: () => undefined, stderr: (s) => (stderr += s) });
      assert.equal(code, 0, stderr);
      assert.ok(existsSync(join(dir, 'key.pem')));
      return stderr;
    };
    assert.match(await write(join(work, 'open-world'), 0o777), /open-world is writable by every user \(mode 0777\)/);
    assert.match(await write(join(work, 'open-group'), 0o775), /open-group is writable by its group \(mode 0775\)/);
    assert.doesNotMatch(await write(join(work, 'sticky'), 0o1777), /is writable by/);
    assert.doesNotMatch(await write(join(work, 'private'), 0o755), /is writable by/);
  });

  it('an out-dir inside a folder others can write into (no sticky bit) is written with a warning naming that folder and its mode; a sticky one without', { timeout: 40_000 }, async () => {
    const write = async (parent: string, mode: number) => {
      mkdirSync(parent);
      chmodSync(parent, mode);
      let stderr = '';
      const code = await runFetch(await base(join(parent, 'out')), { stdout: () => undefined, stderr: (s) => (stderr += s) });
      assert.equal(code, 0, stderr);
      assert.ok(existsSync(join(parent, 'out', 'key.pem')));
      return stderr;
    };
    assert.match(await write(join(work, 'open-parent'), 0o777), /open-parent, a folder on the way to .*open-parent\/out, is writable by every user \(mode 0777\) without the sticky bit: they could rename the out-dir away/);
    assert.doesNotMatch(await write(join(work, 'sticky-parent'), 0o1777), /is writable by/);
  });

  it('an out-dir that cannot be made is an error, said once as this agent\'s NACK, not a crash', { timeout: 40_000 }, async () => {
    const parent = join(work, 'a-file');
    writeFileSync(parent, 'x');
    let stderr = '';
    const code = await runFetch({ ...(await base(join(parent, 'sub'))) }, { stdout: () => undefined, stderr: (s) => (stderr += s) });
    assert.notEqual(code, 0);
    assert.match(stderr, /cannot write .*ENOTDIR.*\(version \S+ NACKed by this agent\)/);
    // Said once, and not as if it were the server's status.
    assert.equal(stderr.match(/ENOTDIR/g)?.length, 1, stderr);
    assert.doesNotMatch(stderr, /INVALID_ARGUMENT|rejected version/);
  });
});
