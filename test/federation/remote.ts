// A remote trust domain for follower tests: a real CA, and a real HTTPS bundle endpoint whose
// certificate (SVID, SPIFFE ID) and document the test can change at will.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { encodeSpiffeBundle } from '../../src/federation/bundle.js';
import { generateCertificateAuthority } from '../../src/pki/generate-ca.js';
import { loadCertificateAuthority } from '../../src/pki/ca.js';
import { issueSvidSync } from '../../src/pki/leaf.js';
import type { CertificateAuthority } from '../../src/pki/types.js';
import type { ClusterFederatedTrustDomain } from '../../src/api/types.js';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { makeCaUntil } from '../helpers/openssl.js';

export function newCa(trustDomain: string): CertificateAuthority {
  const g = generateCertificateAuthority(trustDomain);
  return loadCertificateAuthority(g.certPem, g.keyPem, { allowSelfSigned: true });
}

export const endpointId = (td: string) => `spiffe://${td}/mesh-sds/bundle-endpoint`;

export interface FakeEndpoint {
  url: string;
  port: number;
  /** Number of requests answered. */
  hits: number;
  /** Present an SVID with this SPIFFE ID, signed by this CA. */
  present(ca: CertificateAuthority, spiffeId: string): void;
  /** Serve this body (status 200 unless given). */
  serve(body: string, status?: number): void;
  close(): Promise<void>;
  /** Stops listening (connection refused) but can be restarted on the same port. */
  stop(): Promise<void>;
  start(): Promise<void>;
}

export function bundleOf(cas: CertificateAuthority[], sequence: number, refreshHintSeconds = 300): string {
  return encodeSpiffeBundle({ cas: cas.map((c) => c.trustPem), sequence, refreshHintSeconds });
}

export async function fakeEndpoint(ca: CertificateAuthority, spiffeId: string, body: string): Promise<FakeEndpoint> {
  let current = { body, status: 200 };
  const tlsFor = (c: CertificateAuthority, id: string) => {
    const svid = issueSvidSync(c, id, 3600_000);
    return { cert: svid.certChainPem, key: svid.keyPem };
  };
  let tls = tlsFor(ca, spiffeId);
  let port = 0;
  let server: Server | undefined;
  const ep: FakeEndpoint = {
    url: '',
    port: 0,
    hits: 0,
    present(c, id) {
      tls = tlsFor(c, id);
      server?.setSecureContext(tls);
    },
    serve(b, status = 200) {
      current = { body: b, status };
    },
    async start() {
      server = createServer({ ...tls }, (req, res) => {
        ep.hits++;
        res.writeHead(current.status, { 'content-type': 'application/json' });
        res.end(current.body);
      });
      server.keepAliveTimeout = 1;
      await new Promise<void>((resolve) => server!.listen(port, '127.0.0.1', resolve));
      port = (server.address() as AddressInfo).port;
      ep.port = port;
    },
    async stop() {
      const s = server;
      server = undefined;
      if (!s) return;
      await new Promise<void>((resolve) => {
        s.close(() => resolve());
        s.closeAllConnections();
      });
    },
    close() {
      return ep.stop();
    },
  };
  await ep.start();
  ep.url = `https://127.0.0.1:${port}/zone-b`;
  return ep;
}

export function cftd(name: string, trustDomain: string, url: string, bootstrapPem: string | undefined, endpointSpiffeId = endpointId(trustDomain)): ClusterFederatedTrustDomain {
  return {
    kind: 'ClusterFederatedTrustDomain',
    name,
    mesh: '',
    namespace: '',
    labels: {},
    spec: {
      trustDomain,
      bundleEndpointURL: url,
      bundleEndpointProfile: { type: 'https_spiffe', endpointSPIFFEID: endpointSpiffeId },
      ...(bootstrapPem ? { trustDomainBundle: bootstrapPem } : {}),
    },
  };
}

/** Timers the test fires by hand; records each requested delay. */
export class ManualTimers {
  readonly delays: number[] = [];
  private pending = new Map<number, () => void>();
  private next = 1;
  setTimeout = (fn: () => void, ms: number): unknown => {
    this.delays.push(ms);
    const id = this.next++;
    this.pending.set(id, fn);
    return id;
  };
  clearTimeout = (h: unknown): void => {
    this.pending.delete(h as number);
  };
  get count(): number {
    return this.pending.size;
  }
  /** Fires every pending timer once. */
  fireAll(): void {
    const fns = [...this.pending.values()];
    this.pending.clear();
    for (const f of fns) f();
  }
}

/** A CA for `td` that is an intermediate under a root it is given without (as a zone's operator may). */
export function newIntermediateCa(td: string): CertificateAuthority {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-int-'));
  const run = (args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const p = (f: string) => join(dir, f);
    writeFileSync(p('ext'), `[int]\nbasicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\nsubjectAltName=URI:spiffe://${td}\n`);
    run(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', p('root.key')]);
    run(['req', '-x509', '-new', '-key', p('root.key'), '-subj', '/CN=root', '-days', '30', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign', '-addext', 'subjectKeyIdentifier=hash', '-out', p('root.crt')]);
    run(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', p('int.key')]);
    run(['req', '-new', '-key', p('int.key'), '-subj', '/CN=intermediate', '-out', p('int.csr')]);
    run(['x509', '-req', '-in', p('int.csr'), '-CA', p('root.crt'), '-CAkey', p('root.key'), '-CAcreateserial', '-days', '20', '-extfile', p('ext'), '-extensions', 'int', '-out', p('int.crt')]);
    return loadCertificateAuthority(readFileSync(p('int.crt'), 'utf8'), readFileSync(p('int.key'), 'utf8'), { allowSelfSigned: false });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A CA whose validity OpenSSL cannot read: its times are UTCTime "0101000000Z" (day 00), printed "Bad time value". */
export async function unreadableTimesCa(cn: string): Promise<string> {
  const ca = await makeCaUntil(cn, new Date('0002-01-01T00:00:00Z'), { notBefore: new Date('0001-01-01T00:00:00Z') });
  assert.ok(Number.isNaN(Date.parse(new X509Certificate(ca.certPem).validFrom)), 'the CA was meant to have an unreadable validity');
  return ca.certPem;
}
