// nginx, curl and openssl against SVIDs that `mesh-sds fetch --out-dir --watch` keeps current:
// nginx serves HTTPS with backend's SVID and requires a client certificate from backend's trust
// bundle; the clients present frontend's SVID. Real processes, real sockets, loopback only.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { curl, exec, httpsGet, sClient, type HttpsResult } from './clients.js';
import { issueLeaf, makeCa } from './certs.js';
import { ensureNginx, prepareNginx, type Nginx } from './nginx.js';
import { poll, sleep } from './procs.js';
import { BACKEND, FRONTEND, PARTNER_TD, startWorld, type AgentHandle, type World } from './world.js';

const read = (f: string) => readFileSync(f, 'utf8');
const pin = (certFile: string) =>
  `sha256//${createHash('sha256').update(new X509Certificate(read(certFile)).publicKey.export({ type: 'spki', format: 'der' })).digest('base64')}`;

describe('nginx + curl + openssl with SVIDs from mesh-sds fetch --watch', { timeout: 180_000 }, () => {
  let world: World | undefined;
  let nginx: Nginx | undefined;
  let backend: AgentHandle;
  let frontend: AgentHandle;
  let extra: string;

  before(async () => {
    // Fails (does not skip) when nginx is missing and cannot be installed: see ensureNginx.
    const bin = ensureNginx();
    world = await startWorld('nginx');
    extra = join(world.root, 'extra');
    mkdirSync(extra);
    // The backend agent gets the reload command before nginx exists: its first write only
    // creates the files nginx starts from; every later write reloads nginx.
    const svid = world.agentDir(BACKEND);
    nginx = await prepareNginx(bin, world.root, { cert: join(svid, 'cert.pem'), key: join(svid, 'key.pem'), bundle: join(svid, 'bundle.pem') });
    [frontend, backend] = await Promise.all([world.startAgent(FRONTEND), world.startAgent(BACKEND, { onUpdate: nginx.reloadCommand })]);
    await nginx.start();
  });

  after(async () => {
    await nginx?.stop();
    await world?.close();
  });

  const asFrontend = () => httpsGet(nginx!.port, read(frontend.bundle), BACKEND.spiffeId, { cert: read(frontend.cert), key: read(frontend.key) });

  it('the agents wrote each workload its SVID (key 0600) and a bundle of all three trust domains', async () => {
    const { statSync } = await import('node:fs');
    for (const [agent, w] of [[frontend, FRONTEND], [backend, BACKEND]] as const) {
      const leaf = new X509Certificate(read(agent.cert));
      assert.equal(leaf.subjectAltName, `URI:${w.spiffeId}`);
      assert.equal(statSync(agent.key).mode & 0o777, 0o600);
      assert.deepEqual(agent.writes().at(-1)!.trustDomains, [BACKEND.trustDomain, FRONTEND.trustDomain, PARTNER_TD]);
      assert.equal((read(agent.bundle).match(/BEGIN CERTIFICATE/g) ?? []).length, 3);
    }
  });

  it('curl presenting frontend\'s SVID gets 200, and nginx verified that certificate', async () => {
    const r = await curl(nginx!.port, { cert: frontend.cert, key: frontend.key, pinnedPubKey: pin(backend.cert) });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.status, 200);
    const serial = new X509Certificate(read(frontend.cert)).serialNumber;
    assert.match(r.body, /^hello verify=SUCCESS serial=([0-9A-F]+)$/);
    // nginx prints the serial without leading zeros.
    assert.equal(r.body.split('serial=')[1]!.replace(/^0+/, ''), serial.replace(/^0+/, ''));
  });

  it('the curl pin is a real check: a pin of another key fails the request', async () => {
    const r = await curl(nginx!.port, { cert: frontend.cert, key: frontend.key, pinnedPubKey: pin(frontend.cert) });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /pinned|public key/i);
  });

  it('curl without a client certificate is refused (400 No required SSL certificate was sent)', async () => {
    const r = await curl(nginx!.port, {});
    assert.equal(r.status, 400);
    assert.match(r.body, /No required SSL certificate was sent/);
    assert.doesNotMatch(r.body, /hello/);
  });

  it('curl with a SPIFFE certificate from a CA no MeshTrust names is refused (400 SSL certificate error)', async () => {
    const stranger = makeCa('Stranger Root', { trustDomain: 'stranger.example' });
    // It even claims frontend's SPIFFE ID: the name is worthless without a trusted issuer.
    const leaf = issueLeaf(stranger, FRONTEND.spiffeId);
    writeFileSync(join(extra, 'stranger.crt'), leaf.certPem);
    writeFileSync(join(extra, 'stranger.key'), leaf.keyPem, { mode: 0o600 });
    const r = await curl(nginx!.port, { cert: join(extra, 'stranger.crt'), key: join(extra, 'stranger.key') });
    assert.equal(r.status, 400);
    assert.match(r.body, /The SSL certificate error/);
  });

  it('a certificate from the partner CA (manual MeshTrust) is accepted: manual trust reaches nginx too', async () => {
    const leaf = issueLeaf(world!.partnerCa, `spiffe://${PARTNER_TD}/ns/partners/sa/acme`);
    writeFileSync(join(extra, 'partner.crt'), leaf.certPem);
    writeFileSync(join(extra, 'partner.key'), leaf.keyPem, { mode: 0o600 });
    const r = await curl(nginx!.port, { cert: join(extra, 'partner.crt'), key: join(extra, 'partner.key') });
    assert.equal(r.status, 200, r.body);
    assert.match(r.body, /verify=SUCCESS/);
  });

  it('openssl s_client with frontend\'s SVID verifies nginx against frontend\'s bundle (strict) and gets 200', async () => {
    const r = await sClient(nginx!.port, { cert: frontend.cert, key: frontend.key, caFile: frontend.bundle });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Verify return code: 0 \(ok\)/);
    assert.match(r.stdout, /HTTP\/1\.1 200 OK/);
    assert.match(r.stdout, /hello verify=SUCCESS/);
  });

  it('openssl s_client fails the handshake when the server is not in the CA file (the check is not vacuous)', async () => {
    writeFileSync(join(extra, 'partner-only.pem'), world!.partnerCa.certPem);
    const r = await sClient(nginx!.port, { cert: frontend.cert, key: frontend.key, caFile: join(extra, 'partner-only.pem') });
    assert.notEqual(r.code, 0);
    assert.match(r.stdout + r.stderr, /unable to get local issuer certificate|verify error/);
    assert.doesNotMatch(r.stdout, /HTTP\/1\.1 200/);
  });

  it('openssl s_client without a client certificate gets no 200', async () => {
    const r = await sClient(nginx!.port, { caFile: frontend.bundle });
    assert.doesNotMatch(r.stdout, /HTTP\/1\.1 200/);
    assert.match(r.stdout, /400 Bad Request|No required SSL certificate/);
  });

  it('openssl verify -x509_strict passes both served SVIDs for their purpose', async () => {
    for (const [agent, purpose] of [[backend, 'sslserver'], [frontend, 'sslclient']] as const) {
      const r = await exec('openssl', ['verify', '-x509_strict', '-purpose', purpose, '-CAfile', agent.bundle, '-untrusted', agent.cert, agent.cert]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /: OK$/m);
    }
  });

  it('Node https verifies nginx (chain + SPIFFE ID) with frontend\'s bundle, and refuses a wrong SPIFFE ID', async () => {
    const ok = await asFrontend();
    assert.equal(ok.status, 200);
    assert.equal(ok.serverSerial, new X509Certificate(read(backend.cert)).serialNumber);
    await assert.rejects(
      httpsGet(nginx!.port, read(frontend.bundle), FRONTEND.spiffeId, { cert: read(frontend.cert), key: read(frontend.key) }),
      /server SPIFFE ID is URI:spiffe:\/\/backend\.mesh\.local\/ns\/shop\/sa\/backend, expected/,
    );
  });

  it('removing frontend\'s trust domain fails new connections from frontend once the push reached nginx; adding it back restores them', async () => {
    const w = world!;
    // Auto-created MeshTrusts have no file: disabling their creation removes them (see world.ts).
    const before = backend.writes().length;
    w.setIdentity(FRONTEND, { meshTrustCreation: 'Disabled' });
    const removed = await backend.waitForWrite((x) => !x.trustDomains.includes(FRONTEND.trustDomain), 10_000, before);
    assert.ok(removed.changed.includes('bundle.pem'));
    assert.deepEqual(removed.trustDomains, [BACKEND.trustDomain, PARTNER_TD]);
    assert.equal((read(backend.bundle).match(/BEGIN CERTIFICATE/g) ?? []).length, 2);
    // The agent then runs `nginx -s reload`; new workers take over within moments.
    const refused = await poll('nginx to refuse frontend', 10_000, async () => {
      const r = await curl(nginx!.port, { cert: frontend.cert, key: frontend.key });
      return r.status === 400 ? r : undefined;
    });
    assert.match(refused.body, /The SSL certificate error/);
    // It stays refused once the old workers are gone: a loaded machine may let an old worker take a
    // connection or two after the reload, so wait (bounded) for three refusals in a row.
    let inARow = 0;
    await poll('nginx to refuse frontend three times in a row', 10_000, async () => {
      inARow = (await curl(nginx!.port, { cert: frontend.cert, key: frontend.key })).status === 400 ? inARow + 1 : 0;
      return inARow >= 3 ? true : undefined;
    });
    // Other trust domains are unaffected.
    assert.equal((await curl(nginx!.port, { cert: join(extra, 'partner.crt'), key: join(extra, 'partner.key') })).status, 200);

    const mid = backend.writes().length;
    w.setIdentity(FRONTEND, { meshTrustCreation: 'Enabled' });
    const restored = await backend.waitForWrite((x) => x.trustDomains.includes(FRONTEND.trustDomain), 10_000, mid);
    assert.ok(restored.changed.includes('bundle.pem'));
    // As for the refusal: an old worker may still take a connection right after the reload, so
    // wait (bounded) for three acceptances in a row before the next test relies on it.
    let accepted = 0;
    const back = await poll('nginx to accept frontend three times in a row', 10_000, async () => {
      const r = await curl(nginx!.port, { cert: frontend.cert, key: frontend.key });
      accepted = r.status === 200 ? accepted + 1 : 0;
      return accepted >= 3 ? r : undefined;
    });
    assert.match(back.body, /verify=SUCCESS/);
    // Every reload the agent ran worked (nginx accepted each rewritten bundle).
    assert.doesNotMatch(backend.proc.stderr(), /on-update command (failed|could not start)/);
    assert.match(backend.proc.stderr(), /on-update command succeeded/);
    // Frontend kept its certificate throughout: only trust changed.
    assert.equal(new X509Certificate(read(frontend.cert)).serialNumber, frontend.writes()[0]!.serial);
  });

  it('a forced rotation gives nginx new certificates (new serials seen by the client) with no failed request', async () => {
    const w = world!;
    const first = new X509Certificate(read(backend.cert)).serialNumber;
    // An 8 s expiry forces an immediate reissue (the SVID's inputs changed), and the next one comes
    // from the rotation timer at ~80 % of 8 s, leaving ~1.6 s to reload nginx before the old one
    // expires: two rotations within the loop below.
    w.setIdentity(BACKEND, { expiry: '8s' });
    const serials = new Set<string>([first]);
    const failures: string[] = [];
    const results: HttpsResult[] = [];
    const started = Date.now();
    // Bounded: every 100 ms, at most 14 s, until a timer-driven rotation has been seen as well.
    while (Date.now() - started < 14_000 && serials.size < 3) {
      try {
        const r = await asFrontend();
        results.push(r);
        if (r.status !== 200) failures.push(`HTTP ${r.status}: ${r.body}`);
        serials.add(r.serverSerial);
      } catch (e) {
        failures.push((e as Error).message);
      }
      await sleep(100);
    }
    w.setIdentity(BACKEND, { expiry: '24h' });
    assert.deepEqual(failures, [], `failed requests during rotation (${results.length} ok)`);
    assert.ok(serials.size >= 3, `saw serials ${[...serials].join(', ')} in ${Date.now() - started} ms`);
    // Every serial the client saw is one the agent wrote (nginx served nothing else).
    const written = new Set(backend.writes().map((x) => x.serial));
    for (const s of serials) assert.ok(written.has(s), `serial ${s} was never written by the agent`);
    assert.ok(results.length >= 10, `only ${results.length} requests in the loop`);
    assert.doesNotMatch(backend.proc.stderr(), /on-update command (failed|could not start)/);
  });
});
