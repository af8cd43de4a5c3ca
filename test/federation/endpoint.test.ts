// The bundle endpoint module on its own: SVID rotation, CA changes, the https_web profile, and
// sequence numbers shared by replicas through the state store.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { decodeSpiffeBundle } from '../../src/federation/bundle.js';
import { startBundleEndpoint, type PublishedDomain } from '../../src/federation/endpoint.js';
import { BundleSequences, storedSequence } from '../../src/federation/sequence.js';
import { loadCertificateAuthority } from '../../src/pki/ca.js';
import type { CertificateAuthority } from '../../src/pki/types.js';
import { MemoryStateStore } from '../../src/store/memory-state.js';
import { makeCa, makeLeaf, openssl } from '../helpers/openssl.js';
import { waitFor } from '../conformance/world.js';
import { curl, httpsGet, loadTestCa, publishedDomain, sClient } from './helpers.js';

const load = loadTestCa;
const domain = publishedDomain;
const serialOf = (pem: string) => openssl(['x509', '-noout', '-serial'], pem).trim().replace('serial=', '').toLowerCase();

test('the endpoint SVID is reissued at 80 % of its lifetime and the new one is what TLS clients get', async () => {
  const ca = load(makeCa('rot', { trustDomain: 'rot.test' }));
  const ep = await startBundleEndpoint({ listen: '127.0.0.1:0', state: new MemoryStateStore(), svidLifetimeMs: 4000 });
  try {
    const t0 = Date.now();
    await ep.setDomains([domain('rot.test', ca)]);
    const first = ep.svid('rot.test')!;
    assert.equal(first.spiffeId, 'spiffe://rot.test/mesh-sds/bundle-endpoint');
    const second = await waitFor('the SVID to be reissued', () => ep.svid('rot.test')!.serialHex !== first.serialHex && ep.svid('rot.test')!, 10_000);
    // Issued at or after t0, so 80 % of its lifetime is no earlier than 0.2·t0 + 0.8·NotAfter.
    const earliest = 0.2 * t0 + 0.8 * first.notAfter.getTime();
    assert.ok(Date.now() >= earliest, `reissued ${earliest - Date.now()} ms before 80 % of its lifetime`);
    const s = await sClient(ep.port, ca.trustPem, 'rot.test');
    assert.equal(s.verify, '0 (ok)', s.text);
    assert.equal(serialOf(s.chainPem), second.serialHex.toLowerCase());
  } finally {
    await ep.close();
  }
});

for (const [jump, step] of [
  ['forward past its NotAfter (a suspended host, an NTP step)', (svid: { notBefore: Date; notAfter: Date }) => svid.notAfter.getTime() + 60_000],
  ['back past its NotBefore (a fast clock corrected: clients refuse it as not valid yet)', (svid: { notBefore: Date; notAfter: Date }) => svid.notBefore.getTime() - 60_000],
] as const) {
  test(`a wall clock that jumps ${jump} gets the endpoint a new SVID at the next clock check, not when the timer set before the jump fires`, async () => {
    const ca = load(makeCa('jump', { trustDomain: 'jump.test' }));
    let clock = Date.now();
    const ep = await startBundleEndpoint({ listen: '127.0.0.1:0', state: new MemoryStateStore(), svidLifetimeMs: 3600_000, now: () => new Date(clock), clockCheckMs: 100 });
    try {
      await ep.setDomains([domain('jump.test', ca)]);
      const first = ep.svid('jump.test')!;
      // Monotonic timers do not see the jump: the one set at issuance would fire 48 min from now.
      clock = step(first);
      const second = await waitFor('the SVID to be reissued', () => ep.svid('jump.test')!.serialHex !== first.serialHex && ep.svid('jump.test')!, 5000);
      assert.ok(second.notBefore.getTime() <= clock && clock < second.notAfter.getTime(), `${second.notBefore.toISOString()}–${second.notAfter.toISOString()} at ${new Date(clock).toISOString()}`);
    } finally {
      await ep.close();
    }
  });
}

test('a CA no longer published gets the endpoint a new SVID from the current CA at once; a trust domain that goes away is a 404', async () => {
  const a = load(makeCa('a', { trustDomain: 'one.test' }));
  const b = load(makeCa('b', { trustDomain: 'one.test' }));
  const ep = await startBundleEndpoint({ listen: '127.0.0.1:0', state: new MemoryStateStore() });
  try {
    await ep.setDomains([domain('one.test', a), domain('two.test', load(makeCa('two', { trustDomain: 'two.test' })))]);
    assert.equal(ep.svid('one.test')!.caFingerprint, a.fingerprint);
    // Roll: b current, a still published → the SVID from a stays.
    await ep.setDomains([domain('one.test', b, a)]);
    assert.equal(ep.svid('one.test')!.caFingerprint, a.fingerprint);
    assert.equal(decodeSpiffeBundle(ep.document('one.test')!.body).cas.length, 2);
    // a retired → reissued from b, and the old bundle no longer verifies the endpoint.
    await ep.setDomains([domain('one.test', b)]);
    assert.equal(ep.svid('one.test')!.caFingerprint, b.fingerprint);
    assert.equal((await sClient(ep.port, b.trustPem, 'one.test')).verify, '0 (ok)');
    assert.notEqual((await sClient(ep.port, a.trustPem, 'one.test')).verify, '0 (ok)');
    assert.deepEqual(decodeSpiffeBundle(ep.document('one.test')!.body).caPems, [b.trustPem]);
    assert.equal(ep.document('one.test')!.sequence, 3);
    // two.test was dropped from the set.
    const gone = await httpsGet(ep.port, '/two.test', { caPem: b.trustPem, servername: 'one.test' });
    assert.equal(gone.status, 404);
    assert.equal(ep.svid('two.test'), undefined);
  } finally {
    await ep.close();
  }
});

test('https_web: a given certificate, verified by curl --cacert; bundles and 404s as with https_spiffe', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-web-'));
  const webCa = makeCa('web-root');
  writeFileSync(join(dir, 'ca.crt'), webCa.certPem);
  writeFileSync(join(dir, 'ca.key'), webCa.keyPem);
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', join(dir, 'web.key')]);
  openssl(['req', '-new', '-key', join(dir, 'web.key'), '-subj', '/CN=localhost', '-out', join(dir, 'web.csr')]);
  openssl(['x509', '-req', '-in', join(dir, 'web.csr'), '-CA', join(dir, 'ca.crt'), '-CAkey', join(dir, 'ca.key'), '-set_serial', '7', '-days', '2', '-extfile', join(dir, 'ext.cnf'), '-out', join(dir, 'web.crt')]);
  const td = load(makeCa('td', { trustDomain: 'web.test' }));
  const ep = await startBundleEndpoint({
    listen: '127.0.0.1:0',
    state: new MemoryStateStore(),
    webTls: { certFile: join(dir, 'web.crt'), keyFile: join(dir, 'web.key') },
    refreshHintSeconds: 60,
  });
  try {
    assert.equal(ep.profile, 'https_web');
    await ep.setDomains([domain('web.test', td)]);
    assert.equal(ep.svid('web.test'), undefined);
    const ok = await curl(`https://127.0.0.1:${ep.port}/web.test`, webCa.certPem);
    assert.equal(ok.status, 200);
    const b = decodeSpiffeBundle(ok.body);
    assert.deepEqual(b.caPems, [td.trustPem]);
    assert.equal(b.refreshHintSeconds, 60);
    assert.equal(b.sequence, 1);
    const nf = await curl(`https://localhost:${ep.port}/other.test`, webCa.certPem);
    assert.equal(nf.status, 404);
    assert.match(JSON.parse(nf.body).error, /other\.test/);
    // The certificate the server presents is the given one.
    const s = await sClient(ep.port, webCa.certPem);
    assert.equal(s.verify, '0 (ok)');
    assert.equal(serialOf(s.chainPem), serialOf(readFileSync(join(dir, 'web.crt'), 'utf8')));
    for (const body of [ok.body, nf.body]) assert.doesNotMatch(body, /PRIVATE KEY|"d"\s*:/);
    // A renewed certificate written over the files is served without a restart.
    openssl(['x509', '-req', '-in', join(dir, 'web.csr'), '-CA', join(dir, 'ca.crt'), '-CAkey', join(dir, 'ca.key'), '-set_serial', '8', '-days', '2', '-extfile', join(dir, 'ext.cnf'), '-out', join(dir, 'web2.crt')]);
    renameSync(join(dir, 'web2.crt'), join(dir, 'web.crt'));
    const until = Date.now() + 15_000;
    let serial = '';
    while (Date.now() < until && serial !== '08') {
      await new Promise((r) => setTimeout(r, 250));
      serial = serialOf((await sClient(ep.port, webCa.certPem)).chainPem);
    }
    assert.equal(serial, '08');
  } finally {
    await ep.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('spiffe_sequence is shared through the state store: replicas agree, an unchanged CA set keeps its number, a change is one more, never lower', async () => {
  const state = new MemoryStateStore();
  const r1 = new BundleSequences(state);
  const r2 = new BundleSequences(state);
  assert.equal(await r1.sequenceFor('td.test', ['a']), 1);
  assert.equal(await r2.sequenceFor('td.test', ['a']), 1);
  assert.equal(await r1.sequenceFor('td.test', ['b', 'a']), 2);
  assert.equal(await r2.sequenceFor('td.test', ['a', 'b']), 2, 'order does not matter');
  assert.equal(await r2.sequenceFor('td.test', ['b']), 3);
  assert.equal(await r1.sequenceFor('td.test', ['b']), 3);
  assert.equal(await storedSequence(state, 'td.test', ['b']), 3);
  assert.equal(await storedSequence(state, 'td.test', ['a']), undefined);
  // Going back to an earlier CA set is a change too: a higher number, not the old one.
  assert.equal(await r1.sequenceFor('td.test', ['a']), 4);
  // State lost (a fresh store) while a replica runs: it keeps what it served, never lower.
  const fresh = new MemoryStateStore();
  const r3 = new BundleSequences(fresh);
  assert.equal(await r3.sequenceFor('td.test', ['x']), 1);
  assert.equal(await r3.sequenceFor('other.test', ['x']), 1);
});

test('a damaged spiffe_sequence record does not stop its trust domain: numbering goes on from the current time, never lower, the record is written again and the damage reported', async () => {
  const state = new MemoryStateStore();
  const damaged: string[] = [];
  const seq = new BundleSequences(state, { onDamaged: (k) => damaged.push(k) });
  assert.equal(await seq.sequenceFor('td.test', ['a']), 1);
  for (const bad of ['{"sequence": 7, "dige', 'null', '{"sequence": -3, "digest": "x"}', '{"sequence": "9", "digest": "x"}']) {
    await state.put('bundle-sequence/td.test', bad);
    const before = Math.floor(Date.now() / 1000);
    const n = await seq.sequenceFor('td.test', ['a']);
    assert.ok(n > before, `${bad}: ${n} is above the time in seconds`);
    assert.equal(await seq.sequenceFor('td.test', ['a']), n, 'the record was written again: an unchanged CA set keeps its number');
    assert.equal(await storedSequence(state, 'td.test', ['a']), n);
  }
  assert.deepEqual(damaged, Array(4).fill('bundle-sequence/td.test'));
});

test('the listen address: a bare port binds loopback; a bad address or hint is refused before listening', async () => {
  const ep = await startBundleEndpoint({ listen: '0', state: new MemoryStateStore() });
  try {
    assert.equal(ep.address, '127.0.0.1');
  } finally {
    await ep.close();
  }
  await assert.rejects(startBundleEndpoint({ listen: 'nope', state: new MemoryStateStore() }), /--bundle-endpoint: listen address must be host:port/);
  await assert.rejects(startBundleEndpoint({ listen: '127.0.0.1:0', state: new MemoryStateStore(), refreshHintSeconds: 0 }), /--bundle-refresh-hint/);
});

test('a client that stalls is dropped after the client timeout: before its TLS handshake and in the middle of its request headers', async () => {
  const ca = load(makeCa('slow', { trustDomain: 'slow.test' }));
  const ep = await startBundleEndpoint({ listen: '127.0.0.1:0', state: new MemoryStateStore(), clientTimeoutMs: 500 });
  try {
    await ep.setDomains([domain('slow.test', ca)]);
    const closedAfter = (socket: Socket) =>
      new Promise<number>((resolve) => {
        const t0 = Date.now();
        socket.on('error', () => undefined);
        socket.on('close', () => resolve(Date.now() - t0));
        socket.resume(); // read whatever the server says (a 408), so its close is seen
        setTimeout(() => resolve(Infinity), 5000);
      });
    // Connects and says nothing (no TLS ClientHello).
    const silent = netConnect(ep.port, '127.0.0.1');
    const silentMs = await closedAfter(silent);
    silent.destroy();
    // Completes TLS, then sends half a request and stops.
    const half = tlsConnect({ port: ep.port, host: '127.0.0.1', servername: 'slow.test', rejectUnauthorized: false });
    await new Promise((r) => half.once('secureConnect', r));
    half.write('GET /slow.test HTTP/1.1\r\nHost: slow.test\r\nX-Slow: ');
    const halfMs = await closedAfter(half);
    half.destroy();
    assert.ok(silentMs < 2500, `a silent connection was held ${silentMs} ms`);
    assert.ok(halfMs < 2500, `a stalled request was held ${halfMs} ms`);
    // A normal client is still served.
    const ok = await httpsGet(ep.port, '/slow.test', { caPem: ca.trustPem, servername: 'slow.test' });
    assert.equal(ok.status, 200);
  } finally {
    await ep.close();
  }
});

/** Sends one raw request line over TLS (verified against `caPem`) and returns the status line. */
async function rawStatusLine(port: number, caPem: string, servername: string, requestLine: string): Promise<string> {
  const s = tlsConnect({ port, host: '127.0.0.1', servername, ca: caPem, checkServerIdentity: () => undefined });
  try {
    await new Promise((r, j) => s.once('secureConnect', r).once('error', j));
    s.write(`${requestLine}\r\nHost: ${servername}\r\nConnection: close\r\n\r\n`);
    let text = '';
    s.setEncoding('utf8').on('data', (c: string) => (text += c));
    await new Promise((r) => s.once('close', r));
    return text.split('\r\n')[0] ?? '';
  } finally {
    s.destroy();
  }
}

test('a request target that URL parsing rejects is a 400 and the endpoint keeps serving (it used to end the process)', async () => {
  const ca = load(makeCa('url', { trustDomain: 'url.test' }));
  const ep = await startBundleEndpoint({ listen: '127.0.0.1:0', state: new MemoryStateStore() });
  try {
    await ep.setDomains([domain('url.test', ca)]);
    for (const line of ['GET //% HTTP/1.1', 'GET http://[/ HTTP/1.1', 'HEAD //% HTTP/1.1', 'GET /%E0%A4%A HTTP/1.1']) {
      assert.match(await rawStatusLine(ep.port, ca.trustPem, 'url.test', line), /^HTTP\/1\.1 400 /, line);
    }
    const ok = await httpsGet(ep.port, '/url.test', { caPem: ca.trustPem, servername: 'url.test' });
    assert.equal(ok.status, 200);
  } finally {
    await ep.close();
  }
});

/** A P-256 CA `spiffe://<td>` signed by a self-signed Ed25519 root, as openssl makes them. */
function underEd25519Root(td: string): CertificateAuthority {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-ed-'));
  try {
    const p = (f: string) => join(dir, f);
    writeFileSync(p('ext'), `[int]\nbasicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\nsubjectAltName=URI:spiffe://${td}\n`);
    openssl(['genpkey', '-algorithm', 'ed25519', '-out', p('root.key')]);
    openssl(['req', '-x509', '-new', '-key', p('root.key'), '-subj', '/CN=ed-root', '-days', '30', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign', '-addext', 'subjectKeyIdentifier=hash', '-out', p('root.crt')]);
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', p('int.key')]);
    openssl(['req', '-new', '-key', p('int.key'), '-subj', '/CN=ed-int', '-out', p('int.csr')]);
    openssl(['x509', '-req', '-in', p('int.csr'), '-CA', p('root.crt'), '-CAkey', p('root.key'), '-CAcreateserial', '-days', '20', '-extfile', p('ext'), '-extensions', 'int', '-out', p('int.crt')]);
    const chain = readFileSync(p('int.crt'), 'utf8') + readFileSync(p('root.crt'), 'utf8');
    return loadCertificateAuthority(chain, readFileSync(p('int.key'), 'utf8'), { allowSelfSigned: false, now: new Date() });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('a CA under an Ed25519 root is published (OKP key); a CA that cannot be encoded fails only its own trust domain, which keeps its last good bundle', async () => {
  const ok = load(makeCa('ok', { trustDomain: 'ok.test' }));
  const ed = underEd25519Root('ed.test');
  const bad = load(makeCa('bad', { trustDomain: 'bad.test' }));
  // A certificate no SPIFFE bundle can carry as an authority (not a CA).
  const unpublishable = (d: PublishedDomain): PublishedDomain => ({ ...d, caPems: [...d.caPems, makeLeaf('not-a-ca')], caFingerprints: [...d.caFingerprints, 'leaf'] });
  const ep = await startBundleEndpoint({ listen: '127.0.0.1:0', state: new MemoryStateStore() });
  try {
    // At start-up: the bad domain is not published, every other one is.
    await ep.setDomains([domain('ok.test', ok), domain('ed.test', ed), unpublishable(domain('bad.test', bad))]);
    assert.equal(ep.document('bad.test'), undefined);
    assert.match(ep.problems().get('bad.test') ?? '', /not a CA/);
    assert.equal(ep.svid('bad.test'), undefined);
    const edDoc = JSON.parse(ep.document('ed.test')!.body) as { keys: { kty: string; crv?: string }[] };
    assert.deepEqual(edDoc.keys.map((k) => [k.kty, k.crv]), [['OKP', 'Ed25519']]);
    const viaTls = await httpsGet(ep.port, '/ed.test', { caPem: ed.trustPem, servername: 'ed.test', expectUri: 'spiffe://ed.test/mesh-sds/bundle-endpoint' });
    assert.equal(viaTls.status, 200);
    assert.equal((await httpsGet(ep.port, '/ok.test', { caPem: ok.trustPem, servername: 'ok.test' })).status, 200);

    // At run time: the bad domain becomes good, then bad again — it keeps its last good bundle
    // while a change in another trust domain is still published.
    await ep.setDomains([domain('ok.test', ok), domain('bad.test', bad)]);
    const goodBad = ep.document('bad.test')!;
    assert.equal(ep.problems().size, 0);
    const ok2 = load(makeCa('ok2', { trustDomain: 'ok.test' }));
    await ep.setDomains([domain('ok.test', ok2, ok), unpublishable(domain('bad.test', bad)), domain('new.test', load(makeCa('n', { trustDomain: 'new.test' })))]);
    assert.deepEqual(ep.document('bad.test'), goodBad);
    assert.equal(ep.svid('bad.test')!.caFingerprint, bad.fingerprint);
    assert.equal(decodeSpiffeBundle(ep.document('ok.test')!.body).cas.length, 2);
    assert.ok(ep.document('new.test'));
    assert.deepEqual([...ep.problems().keys()], ['bad.test']);
  } finally {
    await ep.close();
  }
});

test('the endpoint SVID is reissued when its CA is given again with a completed chain, so TLS clients get the intermediates', async () => {
  const { makeIntermediateCa, makeRootCa, tempDir } = await import('../pki/helpers.js');
  const pki = tempDir();
  const root = makeRootCa(pki, 'ep-root');
  const mid = makeIntermediateCa(pki, 'ep-mid', root);
  const issuing = makeIntermediateCa(pki, 'ep-ca', mid);
  const blocks = (pem: string) => pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
  const ep = await startBundleEndpoint({ listen: '127.0.0.1:0', state: new MemoryStateStore() });
  try {
    const alone = loadCertificateAuthority(issuing.certPem, issuing.keyPem, { allowSelfSigned: false, now: new Date() });
    await ep.setDomains([domain('chain.test', alone)]);
    const first = ep.svid('chain.test')!;
    assert.equal(blocks(first.certChainPem).length, 2, 'leaf + the CA');
    // Same CA (key and certificate), now with its parent and root: its chain grew.
    const completed = loadCertificateAuthority(issuing.certPem + mid.certPem + root.certPem, issuing.keyPem, { allowSelfSigned: false, now: new Date() });
    assert.equal(completed.fingerprint, alone.fingerprint);
    await ep.setDomains([domain('chain.test', completed)]);
    const second = ep.svid('chain.test')!;
    assert.notEqual(second.serialHex, first.serialHex, 'reissued');
    assert.equal(blocks(second.certChainPem).length, 3, 'leaf + the CA + its parent');
    assert.equal(blocks(second.certChainPem)[2], blocks(mid.certPem)[0]);
    const s = await sClient(ep.port, root.certPem, 'chain.test');
    assert.equal(s.verify, '0 (ok)', s.text);
  } finally {
    await ep.close();
    pki.cleanup();
  }
});
