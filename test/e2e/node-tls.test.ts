// Node `tls` peers doing the check Envoy's SPIFFE validator does (see spiffe-check.ts): a server
// with backend's SVID and a client with frontend's, both from `mesh-sds fetch --out-dir --watch`,
// each judging the other against the per-trust-domain CAs of the `system_trust_bundle` secret it
// gets from the real server.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { fetchOnce } from '../../src/client/sds-client.js';
import { issueLeaf, makeCa } from './certs.js';
import { peerChain, trustDomainsFrom, verifySpiffePeer, type SpiffeVerdict, type TrustDomains } from './spiffe-check.js';
import { BACKEND, FRONTEND, PARTNER_TD, startWorld, type AgentHandle, type Workload, type World } from './world.js';

const read = (f: string) => readFileSync(f, 'utf8');

interface Outcome {
  /** What the server decided about the client. */
  server: SpiffeVerdict;
  /** What the client decided about the server (undefined when the server hung up first). */
  client?: SpiffeVerdict;
  /** Application data the client received: only sent to accepted peers. */
  reply: string;
}

describe('Node tls peers with the SPIFFE check Envoy does', { timeout: 120_000 }, () => {
  let world: World | undefined;
  let server: Server | undefined;
  let frontend: AgentHandle;
  let backend: AgentHandle;
  let backendTrust: TrustDomains;
  let frontendTrust: TrustDomains;
  const verdicts: SpiffeVerdict[] = [];

  /** The validation context a workload gets (`system_trust_bundle`), split per trust domain. */
  async function trustOf(w: Workload): Promise<TrustDomains> {
    const { secrets } = await fetchOnce({ server: world!.sds, node: `default.${w.node}`, token: await world!.token(w), names: ['system_trust_bundle'], timeoutMs: 15_000 });
    const s = secrets[0]!;
    assert.equal(s.kind, 'spiffe', 'system_trust_bundle is a SPIFFE validator config');
    return trustDomainsFrom(s.kind === 'spiffe' ? s.trustDomains : []);
  }

  before(async () => {
    world = await startWorld('node-tls');
    [frontend, backend] = await Promise.all([world.startAgent(FRONTEND), world.startAgent(BACKEND)]);
    [backendTrust, frontendTrust] = await Promise.all([trustOf(BACKEND), trustOf(FRONTEND)]);
    // Envoy asks for a client certificate and decides itself (the SPIFFE validator replaces
    // OpenSSL's default chain check): requestCert + rejectUnauthorized false + our check.
    server = createServer({ cert: read(backend.cert), key: read(backend.key), requestCert: true, rejectUnauthorized: false }, (socket) => {
      const verdict = verifySpiffePeer(peerChain(socket), backendTrust);
      verdicts.push(verdict);
      if (verdict.ok) socket.end(`hello ${verdict.spiffeId}\n`);
      else socket.destroy();
    });
    server.on('tlsClientError', () => undefined);
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  });

  after(async () => {
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    await world?.close();
  });

  function dial(client: { cert?: string; key?: string }): Promise<Outcome> {
    const port = (server!.address() as AddressInfo).port;
    const seen = verdicts.length;
    return new Promise<Outcome>((resolve, reject) => {
      let clientVerdict: SpiffeVerdict | undefined;
      let reply = '';
      const s: TLSSocket = connect({ host: '127.0.0.1', port, cert: client.cert, key: client.key, rejectUnauthorized: false }, () => {
        clientVerdict = verifySpiffePeer(peerChain(s), frontendTrust);
        if (!clientVerdict.ok) s.destroy();
      });
      s.setEncoding('utf8');
      s.on('data', (d: string) => (reply += d));
      s.on('error', () => undefined); // a reset by the server is an expected outcome
      s.on('close', () => {
        // The server's verdict is recorded before it answers or hangs up.
        const wait = Date.now() + 2000;
        const check = () => {
          const v = verdicts[seen];
          if (v) return resolve({ server: v, client: clientVerdict, reply });
          if (Date.now() > wait) return reject(new Error('server recorded no verdict'));
          setTimeout(check, 10);
        };
        check();
      });
      s.setTimeout(5000, () => s.destroy());
    });
  }

  it('the validation context lists the three trust domains, each with only its own CA', () => {
    assert.deepEqual([...backendTrust.keys()], [BACKEND.trustDomain, FRONTEND.trustDomain, PARTNER_TD]);
    for (const [td, cas] of backendTrust) {
      assert.equal(cas.length, 1, td);
      assert.ok(cas[0]!.ca);
      assert.equal(cas[0]!.subjectAltName, `URI:spiffe://${td}`);
    }
  });

  it('a trusted peer is accepted both ways: frontend calls backend, each verifies the other\'s SPIFFE ID', async () => {
    const o = await dial({ cert: read(frontend.cert), key: read(frontend.key) });
    assert.deepEqual(o.server, { ok: true, spiffeId: FRONTEND.spiffeId, trustDomain: FRONTEND.trustDomain });
    assert.deepEqual(o.client, { ok: true, spiffeId: BACKEND.spiffeId, trustDomain: BACKEND.trustDomain });
    assert.equal(o.reply, `hello ${FRONTEND.spiffeId}\n`);
  });

  it('a partner workload (manual MeshTrust) is accepted', async () => {
    const leaf = issueLeaf(world!.partnerCa, `spiffe://${PARTNER_TD}/ns/partners/sa/acme`);
    const o = await dial({ cert: leaf.certPem, key: leaf.keyPem });
    assert.equal(o.server.ok, true);
    assert.match(o.reply, /^hello spiffe:\/\/partner\.example\//);
  });

  it('a peer from a trust domain no MeshTrust names is rejected', async () => {
    const stranger = makeCa('Stranger Root', { trustDomain: 'stranger.example' });
    const leaf = issueLeaf(stranger, 'spiffe://stranger.example/ns/shop/sa/frontend');
    const o = await dial({ cert: leaf.certPem, key: leaf.keyPem });
    assert.deepEqual(o.server, { ok: false, reason: 'trust domain stranger.example is not trusted' });
    assert.equal(o.reply, '');
  });

  it('a peer without a client certificate is rejected', async () => {
    const o = await dial({});
    assert.deepEqual(o.server, { ok: false, reason: 'no peer certificate' });
    assert.equal(o.reply, '');
  });

  it('a trusted domain\'s CA cannot mint another domain\'s identity (partner CA signing a frontend SPIFFE ID)', async () => {
    // A flat bundle would accept this: the partner CA is trusted. The per-domain check does not.
    const forged = issueLeaf(world!.partnerCa, FRONTEND.spiffeId);
    const o = await dial({ cert: forged.certPem, key: forged.keyPem });
    assert.deepEqual(o.server, { ok: false, reason: `the chain does not verify against the CAs of trust domain ${FRONTEND.trustDomain}` });
    assert.equal(o.reply, '');
  });

  it('a CA certificate presented as the leaf is rejected, even a trusted root', async () => {
    const ca = world!.partnerCa; // trusted, self-signed, URI SAN spiffe://partner.example
    const o = await dial({ cert: ca.certPem, key: ca.keyPem });
    assert.deepEqual(o.server, { ok: false, reason: 'the leaf certificate is a CA' });
    assert.equal(o.reply, '');
  });

  it('the client rejects a server whose SVID its trust does not cover', () => {
    // frontend judging a backend certificate against a context without backend's domain.
    const withoutBackend = new Map([...frontendTrust].filter(([td]) => td !== BACKEND.trustDomain));
    const chain = [new X509Certificate(read(backend.cert))];
    assert.deepEqual(verifySpiffePeer(chain, withoutBackend), { ok: false, reason: `trust domain ${BACKEND.trustDomain} is not trusted` });
    assert.equal(verifySpiffePeer(chain, frontendTrust).ok, true);
  });
});
