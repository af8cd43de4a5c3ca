import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadCertificateAuthority } from '../../src/pki/ca.js';
import { CaError } from '../../src/pki/errors.js';
import { generateCertificateAuthority } from '../../src/pki/generate-ca.js';
import { SvidIssuer } from '../../src/pki/issuer.js';
import type { CertificateAuthority } from '../../src/pki/types.js';
import { x509 } from '../../src/pki/x509.js';
import { makeIntermediateCa, makeRootCa, opensslVerify, pemBlocks, tempDir, type TempDir } from './helpers.js';

const TD = 'fast.default.mesh.local';
const DAY = 86_400_000;
const id = (i: number): string => `spiffe://${TD}/ns/n${i % 7}/sa/sa-${i}`;
const repoRoot = join(fileURLToPath(import.meta.url), '../../..');

describe('SvidIssuer', () => {
  let dir: TempDir;
  let ca: CertificateAuthority;
  let issuer: SvidIssuer;
  before(() => {
    dir = tempDir();
    const g = generateCertificateAuthority(TD);
    ca = loadCertificateAuthority(g.certPem, g.keyPem, { allowSelfSigned: true });
    issuer = new SvidIssuer({ workers: 2, inlinePerWindow: 0 });
  });
  after(async () => {
    await issuer.close();
    dir.cleanup();
  });

  it('issues 2000 leaves on workers, each a valid, correctly signed SVID for the id it was asked for', async () => {
    const n = 2000;
    const svids = await Promise.all(Array.from({ length: n }, (_, i) => issuer.issue(ca, id(i), DAY)));
    const caPublicKey = new X509Certificate(ca.certDer).publicKey;
    const serials = new Set<string>();
    svids.forEach((svid, i) => {
      const [leafPem, ...rest] = pemBlocks(svid.certChainPem);
      assert.deepEqual(rest, pemBlocks(ca.chainPem));
      const node = new X509Certificate(leafPem!);
      const leaf = new x509.X509Certificate(new Uint8Array(node.raw));
      const sans = leaf.getExtension(x509.SubjectAlternativeNameExtension)!;
      assert.deepEqual(sans.names.items.map((g) => g.value), [id(i)], 'answer matches its request');
      assert.equal(svid.spiffeId, id(i));
      assert.equal(leaf.subject, '');
      assert.ok(node.verify(caPublicKey), `leaf ${i} signature`);
      if (i % 20 === 0) assert.ok(node.checkPrivateKey(createPrivateKey(svid.keyPem)), `leaf ${i} key pair`);
      assert.ok(svid.notBefore instanceof Date && svid.notAfter instanceof Date);
      serials.add(svid.serialHex);
    });
    assert.equal(serials.size, n);
    for (const i of [0, 1, 999, 1500, 1999]) {
      for (const purpose of ['sslserver', 'sslclient'] as const) {
        const v = opensslVerify(dir, { root: ca.trustPem, leafChain: svids[i]!.certChainPem, purpose });
        assert.ok(v.ok, v.output);
      }
    }
  });

  it('keeps CAs apart: leaves of two CAs issued in one batch are signed by their own CA', async () => {
    const root = makeRootCa(dir, 'root');
    const inter = makeIntermediateCa(dir, 'inter', root, 'ec-p384');
    const ca2 = loadCertificateAuthority(inter.certPem + root.certPem, inter.keyPem, { allowSelfSigned: false });
    const jobs = Array.from({ length: 40 }, (_, i) => (i % 2 ? ca2 : ca));
    const svids = await Promise.all(jobs.map((c, i) => issuer.issue(c, id(i), DAY)));
    svids.forEach((s, i) => {
      const c = jobs[i]!;
      assert.equal(s.caFingerprint, c.fingerprint);
      assert.ok(new X509Certificate(pemBlocks(s.certChainPem)[0]!).verify(new X509Certificate(c.certDer).publicKey));
    });
    const v = opensslVerify(dir, { root: root.certPem, untrusted: inter.certPem, leafChain: svids[1]!.certChainPem, purpose: 'sslserver' });
    assert.ok(v.ok, v.output);
  });

  it('resends a CA the worker evicted after many CA rolls', async () => {
    const pool = new SvidIssuer({ workers: 1, inlinePerWindow: 0 });
    try {
      const cas = Array.from({ length: 70 }, (_, i) => {
        const g = generateCertificateAuthority(`roll${i}.local`);
        return loadCertificateAuthority(g.certPem, g.keyPem, { allowSelfSigned: true });
      });
      for (const c of [...cas, cas[0]!, cas[5]!]) {
        const s = await pool.issue(c, id(1), DAY);
        assert.equal(s.caFingerprint, c.fingerprint);
      }
    } finally {
      await pool.close();
    }
  });

  it('issues every leaf of a burst that spans more CAs than a worker keeps, and of the bursts after it', async () => {
    const pool = new SvidIssuer({ workers: 2, inlinePerWindow: 0 });
    try {
      const cas = Array.from({ length: 100 }, (_, i) => {
        const g = generateCertificateAuthority(`tenant${i}.local`);
        return loadCertificateAuthority(g.certPem, g.keyPem, { allowSelfSigned: true });
      });
      // Ten leaves per CA, interleaved as a restart storm of 100 meshes arrives: batches of up to
      // 128 leaves each need every CA.
      for (let round = 0; round < 2; round++) {
        const jobs = Array.from({ length: 1000 }, (_, i) => cas[i % cas.length]!);
        const results = await Promise.allSettled(jobs.map((c, i) => pool.issue(c, id(i), DAY)));
        const failed = results.flatMap((r) => (r.status === 'rejected' ? [String((r.reason as Error).message)] : []));
        assert.deepEqual(failed.slice(0, 3), [], `round ${round}: ${failed.length} of 1000 leaves failed`);
        // Each leaf was signed by its own CA's key (the worker picked the right CA for every request).
        results.forEach((r, i) => {
          const leaf = new X509Certificate(pemBlocks((r as PromiseFulfilledResult<{ certChainPem: string }>).value.certChainPem)[0]!);
          assert.ok(leaf.verify(new X509Certificate(jobs[i]!.certDer).publicKey), `leaf ${i} is signed by its CA`);
        });
      }
    } finally {
      await pool.close();
    }
  });

  it('rejects with the same error types as the synchronous path', async () => {
    await assert.rejects(issuer.issue(ca, id(1), DAY, new Date(ca.notAfter.getTime() + 1000)), (e: unknown) => e instanceof CaError && /^CA certificate expired at /.test(e.message));
    await assert.rejects(issuer.issue(ca, 'not-a-spiffe-id', DAY), TypeError);
    // And keeps working afterwards.
    assert.equal((await issuer.issue(ca, id(2), DAY)).spiffeId, id(2));
  });

  it('issues a lone leaf inline without starting a worker, and a burst beyond the window\'s share on workers', async () => {
    const pool = new SvidIssuer({ workers: 2 });
    try {
      const lone = await pool.issue(ca, id(10), DAY);
      assert.equal(lone.spiffeId, id(10));
      assert.ok(new X509Certificate(pemBlocks(lone.certChainPem)[0]!).verify(new X509Certificate(ca.certDer).publicKey));
      assert.equal(pool.startedWorkers, 0, 'one leaf did not wake a worker');
      // Errors of the inline path are rejections too, never synchronous throws.
      const bad = pool.issue(ca, 'not-a-spiffe-id', DAY);
      await assert.rejects(bad, TypeError);
      const burst = await Promise.all(Array.from({ length: 40 }, (_, i) => pool.issue(ca, id(100 + i), DAY)));
      burst.forEach((s, i) => assert.equal(s.spiffeId, id(100 + i), 'each answer matches its request'));
      assert.ok(pool.startedWorkers > 0, 'a burst is spread over the workers');
    } finally {
      await pool.close();
    }
  });

  it('never issues an RSA leaf inline: its key generation would block the event loop', async () => {
    const root = makeRootCa(dir, 'rsa-root', 'rsa-2048');
    const rsaCa = loadCertificateAuthority(root.certPem, root.keyPem, { allowSelfSigned: true });
    const pool = new SvidIssuer({ workers: 1 });
    try {
      const s = await pool.issue(rsaCa, id(11), DAY);
      assert.equal(createPrivateKey(s.keyPem).asymmetricKeyType, 'rsa');
      assert.equal(pool.startedWorkers, 1, 'issued on a worker');
    } finally {
      await pool.close();
    }
  });

  it('workers: 0 issues on the calling thread; issueSync matches', async () => {
    const local = new SvidIssuer({ workers: 0 });
    const s = await local.issue(ca, id(3), DAY);
    assert.ok(new X509Certificate(pemBlocks(s.certChainPem)[0]!).verify(new X509Certificate(ca.certDer).publicKey));
    assert.equal(local.issueSync(ca, id(4), DAY).spiffeId, id(4));
    await assert.rejects(local.issue(ca, 'x', DAY), TypeError);
    await local.close();
    await assert.rejects(local.issue(ca, id(5), DAY), /closed/);
  });

  it('close() rejects later requests and lets the process exit', async () => {
    const pool = new SvidIssuer({ workers: 1, inlinePerWindow: 0 });
    await pool.issue(ca, id(6), DAY);
    await pool.close();
    await assert.rejects(pool.issue(ca, id(7), DAY), /closed/);
  });

  it('worker threads start under `tsx` too, and an idle pool does not keep the process alive', () => {
    const script = dir.file(
      'child.mts',
      `import { generateCertificateAuthority } from ${JSON.stringify(join(repoRoot, 'src/pki/generate-ca.ts'))};
import { loadCertificateAuthority } from ${JSON.stringify(join(repoRoot, 'src/pki/ca.ts'))};
import { SvidIssuer } from ${JSON.stringify(join(repoRoot, 'src/pki/issuer.ts'))};
const g = generateCertificateAuthority('child.local');
const ca = loadCertificateAuthority(g.certPem, g.keyPem, { allowSelfSigned: true });
const s = await new SvidIssuer({ workers: 2, inlinePerWindow: 0 }).issue(ca, 'spiffe://child.local/x', 60000);
console.log(s.spiffeId); // no close(): the process must still exit
`,
    );
    for (const cmd of [[join(repoRoot, 'node_modules/.bin/tsx'), script], [process.execPath, '--import', 'tsx', script]]) {
      // The bound only tells a process kept alive by its pool (forever) from a slow one: ~1.5 s on an
      // idle machine, but a full parallel suite has slowed tsx's start-up here past 20 s.
      const r = spawnSync(cmd[0]!, cmd.slice(1), { cwd: repoRoot, encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.status, 0, `${cmd.join(' ')}: ${r.stderr}`);
      assert.equal(r.stdout.trim(), 'spiffe://child.local/x');
    }
  });
});
