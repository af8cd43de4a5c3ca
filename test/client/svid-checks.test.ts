// What the agent refuses to write (expired, a CA as identity) and what it writes with a warning
// (not valid yet, a chain the bundle does not verify, another SPIFFE ID), and the --watch warnings
// for a certificate on disk that nears its end or expires with no new one.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, webcrypto } from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgent } from '../../src/client/agent.js';
import { spiffeValidatorSecret, tlsCertificateSecret } from '../../src/xds/secrets.js';
import { summarizeCertificate } from '../../src/client/summary.js';
import { makeCa, makeCaUntil, type TestCa } from '../helpers/openssl.js';
import { ScriptedSds, waitFor } from './fake-sds.js';
import { makeSvid, makeSvidBetween } from './svids.js';

describe('checks on the identity before it is written', () => {
  let root: string;
  let a: TestCa;
  let b: TestCa;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'mesh-sds-svid-checks-'));
    a = makeSvid('A');
    b = makeSvid('B');
  });
  after(() => rmSync(root, { recursive: true, force: true }));
  const identity = (s: TestCa) => tlsCertificateSecret('default', s.certPem, s.keyPem, `serial-${s.certPem.length}`);
  const trust = (...cas: TestCa[]) => spiffeValidatorSecret('ALL', [{ trustDomain: 'x.example', pem: cas.map((c) => c.certPem).join('') }]);

  const watching = async (name: string) => {
    const sds = await new ScriptedSds().start();
    const dir = join(root, name);
    const logs: string[] = [];
    const agent = startAgent({ server: sds.address, node: 'default.web', outDir: dir, watch: true, log: (l, m) => logs.push(`${l}: ${m}`) });
    await waitFor(() => sds.streams.length === 1, 'a stream');
    const push = async (v: string, resources: Parameters<ScriptedSds['push']>[1]) => {
      sds.push(v, resources);
      await waitFor(() => sds.answerTo(v) !== undefined, `the answer to version ${v}`);
      return sds.answerTo(v)!.error_detail?.message;
    };
    const stop = async () => {
      agent.close();
      await agent.done.catch(() => undefined);
      sds.close();
    };
    return { dir, logs, push, stop };
  };

  it('an expired leaf and a CA certificate as identity are NACKed; the files written before stay', { timeout: 30_000 }, async () => {
    const w = await watching('refused');
    try {
      assert.equal(await w.push('1', [identity(a), trust(a, b)]), undefined);
      const expired = await makeSvidBetween('Old', new Date('2020-01-01T00:00:00Z'), new Date('2021-01-01T00:00:00Z'));
      assert.match((await w.push('2', [identity(expired)])) ?? '', /expired at 2021-01-01T00:00:00\.000Z/);
      assert.ok(w.logs.some((m) => /^error: version 2 not written \(NACKed by this agent; the files written before stay\): the certificate .* expired/.test(m)), w.logs.join('\n'));
      const ca = makeCa('Some CA', { trustDomain: 'a.example' });
      assert.match((await w.push('3', [identity(ca)])) ?? '', /is a CA certificate \(basicConstraints CA:TRUE\)/);
      // A key of another pair is refused when decoded, and said once as this agent's NACK.
      assert.match((await w.push('3b', [tlsCertificateSecret('default', b.certPem, a.keyPem, 'mixed')])) ?? '', /private_key does not match/);
      assert.equal(w.logs.filter((m) => /^error: version 3b not written \(NACKed by this agent\): default: private_key does not match/.test(m)).length, 1, w.logs.join('\n'));
      assert.equal(readFileSync(join(w.dir, 'cert.pem'), 'utf8'), a.certPem);
      assert.equal(readFileSync(join(w.dir, 'key.pem'), 'utf8'), a.keyPem);
      // Later pushes merge with the last good trust bundle, not a refused identity.
      assert.equal(await w.push('4', [identity(b)]), undefined);
      assert.equal(readFileSync(join(w.dir, 'cert.pem'), 'utf8'), b.certPem);
    } finally {
      await w.stop();
    }
  });

  it('a leaf sent with an expired intermediate CA it chains through to the bundle is NACKed naming that CA; the files written before stay', { timeout: 30_000 }, async () => {
    const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
    const [rootKeys, interKeys, leafKeys] = await Promise.all([0, 1, 2].map(() => webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])));
    const now = Date.now();
    const rootCa = await x509.X509CertificateGenerator.createSelfSigned({
      name: 'CN=Chain Root', notBefore: new Date(now - 86_400_000), notAfter: new Date(now + 86_400_000 * 30), keys: rootKeys!, signingAlgorithm: alg,
      extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
    });
    const inter = await x509.X509CertificateGenerator.create({
      subject: 'CN=Expired Intermediate', issuer: rootCa.subject, notBefore: new Date('2020-01-01T00:00:00Z'), notAfter: new Date('2021-01-01T00:00:00Z'),
      publicKey: interKeys!.publicKey, signingKey: rootKeys!.privateKey, signingAlgorithm: alg, serialNumber: '0a0b',
      extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
    });
    const leaf = await x509.X509CertificateGenerator.create({
      subject: 'CN=Leaf', issuer: inter.subject, notBefore: new Date(now - 60_000), notAfter: new Date(now + 86_400_000),
      publicKey: leafKeys!.publicKey, signingKey: interKeys!.privateKey, signingAlgorithm: alg, serialNumber: '0c0d',
      extensions: [new x509.BasicConstraintsExtension(false, undefined, true), new x509.SubjectAlternativeNameExtension([{ type: 'url', value: 'spiffe://a.example/workload' }])],
    });
    const keyPem = x509.PemConverter.encode(Buffer.from(await webcrypto.subtle.exportKey('pkcs8', leafKeys!.privateKey)), 'PRIVATE KEY') + '\n';
    const chainPem = `${leaf.toString('pem')}\n${inter.toString('pem')}\n`;
    const rootPem = `${rootCa.toString('pem')}\n`;
    const w = await watching('expired-intermediate');
    try {
      assert.equal(await w.push('1', [identity(a), trust(a)]), undefined);
      const bundle = spiffeValidatorSecret('ALL', [{ trustDomain: 'x.example', pem: rootPem }]);
      assert.match((await w.push('2', [tlsCertificateSecret('default', chainPem, keyPem, 'v2'), bundle])) ?? '', /chains to the trust bundle through CN=Expired Intermediate \(serial 0A0B\) in the certificate chain, which expired at 2021-01-01T00:00:00\.000Z/);
      assert.equal(readFileSync(join(w.dir, 'cert.pem'), 'utf8'), a.certPem);
      assert.equal(readFileSync(join(w.dir, 'key.pem'), 'utf8'), a.keyPem);
    } finally {
      await w.stop();
    }
  });

  it('a leaf whose validity OpenSSL cannot read is NACKed; a trust bundle CA with one is written and summarised as such, not thrown on', { timeout: 30_000 }, async () => {
    const w = await watching('unreadable-times');
    try {
      assert.equal(await w.push('1', [identity(a), trust(a, b)]), undefined);
      // notBefore in the year 1000: OpenSSL reads the certificate but gives "Bad time value" for that time.
      const odd = await makeSvidBetween('Odd', new Date('1000-01-01T00:00:00Z'), new Date('2100-01-01T00:00:00Z'));
      assert.match((await w.push('2', [identity(odd)])) ?? '', /has a validity that cannot be read \(not before "Bad time value"/);
      assert.equal(readFileSync(join(w.dir, 'cert.pem'), 'utf8'), a.certPem);
      const oddCa = await makeCaUntil('Odd CA', new Date('2100-01-01T00:00:00Z'), { notBefore: new Date('1000-01-01T00:00:00Z') });
      assert.equal(await w.push('3', [identity(a), trust(a, oddCa)]), undefined);
      assert.match(readFileSync(join(w.dir, 'bundle.pem'), 'utf8'), new RegExp(oddCa.certPem.split('\n')[1]!.replace(/[+/]/g, '\\$&')));
    } finally {
      await w.stop();
    }
    const summary = summarizeCertificate(new X509Certificate((await makeCaUntil('Odd CA', new Date('2100-01-01T00:00:00Z'), { notBefore: new Date('1000-01-01T00:00:00Z') })).certPem));
    assert.equal(summary.notBefore, 'an unreadable time ("Bad time value")');
    assert.equal(summary.notAfter, '2100-01-01T00:00:00.000Z');
  });

  it('a leaf not valid yet, one the bundle does not verify, and a new SPIFFE ID are written with a warning', { timeout: 30_000 }, async () => {
    const w = await watching('warned');
    try {
      assert.equal(await w.push('1', [identity(a), trust(a, b)]), undefined);
      assert.deepEqual(w.logs.filter((m) => m.startsWith('warn')), []);
      const future = await makeSvidBetween('A', new Date(Date.now() + 3600_000), new Date(Date.now() + 7200_000));
      assert.equal(await w.push('2', [identity(future)]), undefined);
      assert.ok(w.logs.some((m) => /^warn: the certificate .* is not valid until .*, 3[56]\d\d s from now by this host's clock/.test(m)), w.logs.join('\n'));
      assert.ok(w.logs.some((m) => /^warn: the certificate .* does not chain to any CA in the trust bundle sent with it/.test(m)), w.logs.join('\n'));
      assert.equal(readFileSync(join(w.dir, 'cert.pem'), 'utf8'), future.certPem);
      assert.equal(await w.push('3', [identity(b)]), undefined);
      assert.ok(w.logs.some((m) => m === 'warn: the SPIFFE ID changed from spiffe://a.example/workload to spiffe://b.example/workload: the workload now presents another identity'), w.logs.join('\n'));
    } finally {
      await w.stop();
    }
  });

  it('a SPIFFE ID other than the one an earlier run wrote (svid.json) is warned about by a restarted agent', { timeout: 30_000 }, async () => {
    const first = await watching('restarted');
    try {
      assert.equal(await first.push('1', [identity(a), trust(a, b)]), undefined);
    } finally {
      await first.stop();
    }
    const second = await watching('restarted');
    try {
      assert.equal(await second.push('1', [identity(b), trust(a, b)]), undefined);
      assert.equal(readFileSync(join(second.dir, 'cert.pem'), 'utf8'), b.certPem);
      assert.ok(second.logs.includes('warn: the SPIFFE ID changed from spiffe://a.example/workload to spiffe://b.example/workload: the workload now presents another identity'), second.logs.join('\n'));
    } finally {
      await second.stop();
    }
  });

  it('--watch says once that the certificate on disk is in its last 10 % and once that it expired, with no new one', { timeout: 30_000 }, async () => {
    const w = await watching('expiring');
    try {
      // 100 s of life, 95 s gone: in its last 10 % at once, expired 5 s later.
      const short = await makeSvidBetween('A', new Date(Date.now() - 95_000), new Date(Date.now() + 5_000));
      assert.equal(await w.push('1', [identity(short), trust(short)]), undefined);
      await waitFor(() => w.logs.some((m) => /expired at .* and no new certificate has arrived/.test(m)), 'the expiry warning', 15_000);
      assert.equal(w.logs.filter((m) => /in the last 10 % of its lifetime, and no new certificate has arrived/.test(m)).length, 1, w.logs.join('\n'));
      assert.equal(w.logs.filter((m) => /expired at/.test(m)).length, 1);
      assert.equal(await w.push('2', [identity(a), trust(a)]), undefined);
      assert.ok(w.logs.some((m) => /a new certificate .* replaced the one that was expiring/.test(m)), w.logs.join('\n'));
    } finally {
      await w.stop();
    }
  });

  it('--watch restarted while the server does not answer says that the certificate an earlier run wrote nears its end and expired', { timeout: 30_000 }, async () => {
    const short = await makeSvidBetween('A', new Date(Date.now() - 95_000), new Date(Date.now() + 5_000));
    const first = await watching('restarted-expiring');
    try {
      assert.equal(await first.push('1', [identity(short), trust(short)]), undefined);
    } finally {
      await first.stop();
    }
    const second = await watching('restarted-expiring');
    try {
      await waitFor(() => second.logs.some((m) => /^warn: cert\.pem \(serial .*\) expired at .* and no new certificate has arrived/.test(m)), 'the expiry warning', 15_000);
      assert.equal(second.logs.filter((m) => /in the last 10 % of its lifetime, and no new certificate has arrived/.test(m)).length, 1, second.logs.join('\n'));
    } finally {
      await second.stop();
    }
  });
});
