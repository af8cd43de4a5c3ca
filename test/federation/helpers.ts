// HTTPS clients for the bundle endpoint tests: Node's https, openssl s_client and curl, each
// verifying the server against a CA file, never with verification turned off.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import type { PeerCertificate } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PublishedDomain } from '../../src/federation/endpoint.js';
import { loadCertificateAuthority } from '../../src/pki/ca.js';
import type { CertificateAuthority } from '../../src/pki/types.js';
import type { TestCa } from '../helpers/openssl.js';

export interface HttpsResult {
  status: number;
  body: string;
  /** The URI SAN of the certificate the server presented. */
  peerUri: string;
}

/**
 * GET over TLS verified against `caPem`. The SPIFFE profile has no DNS name to check: the peer
 * must instead carry exactly `expectUri` as its URI SAN (what a SPIFFE-authenticating fetcher checks).
 */
export function httpsGet(
  port: number,
  path: string,
  opts: { caPem: string; servername?: string; expectUri?: string; host?: string },
): Promise<HttpsResult> {
  return new Promise((resolve, reject) => {
    let peerUri = '';
    const req = request(
      {
        host: opts.host ?? '127.0.0.1',
        port,
        path,
        method: 'GET',
        ca: opts.caPem,
        servername: opts.servername,
        agent: false,
        checkServerIdentity: (_host: string, cert: PeerCertificate) => {
          peerUri = cert.subjectaltname ?? '';
          if (opts.expectUri === undefined) return undefined;
          return peerUri === `URI:${opts.expectUri}` ? undefined : new Error(`peer SAN is ${peerUri}, expected URI:${opts.expectUri}`);
        },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, peerUri: peerUri.replace(/^URI:/, '') }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function withFile<T>(name: string, text: string, fn: (path: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-fed-'));
  try {
    const p = join(dir, name);
    writeFileSync(p, text);
    return await fn(p);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs a command without blocking the event loop (the server under test lives in this process). */
export function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const t = setTimeout(() => child.kill(), 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

/**
 * `openssl s_client -CAfile bundle -verify_return_error -showcerts`, with SNI `servername` (or
 * none). Returns the chain the server sent (PEM) and openssl's verify result line.
 */
export function sClient(port: number, caPem: string, servername?: string): Promise<{ chainPem: string; verify: string; text: string }> {
  return withFile('bundle.pem', caPem, async (caFile) => {
    const sni = servername ? ['-servername', servername] : ['-noservername'];
    const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, ...sni, '-CAfile', caFile, '-verify_return_error', '-showcerts']);
    const text = `${r.stdout}${r.stderr}`;
    const chainPem = (r.stdout.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g) ?? []).join('');
    const verify = /Verify return code: (.*)/.exec(text)?.[1] ?? '';
    return { chainPem, verify, text };
  });
}

/** `curl --cacert ca` → status and body; throws with curl's error when TLS fails. */
export function curl(url: string, caPem: string, extra: string[] = []): Promise<{ status: number; body: string }> {
  return withFile('ca.pem', caPem, async (caFile) => {
    const r = await run('curl', ['-sS', '--max-time', '20', '--cacert', caFile, ...extra, '-w', '\n%{http_code}', url]);
    if (r.code !== 0) throw new Error(`curl failed (${r.code}): ${r.stderr}`);
    const out = r.stdout;
    const i = out.lastIndexOf('\n');
    return { status: Number(out.slice(i + 1)), body: out.slice(0, i) };
  });
}

/** A self-signed test CA loaded as the server loads one (self-signed allowed). */
export const loadTestCa = (c: TestCa): CertificateAuthority => loadCertificateAuthority(c.certPem, c.keyPem, { allowSelfSigned: true, now: new Date() });

/** A trust domain the bundle endpoint publishes: its first CA issues the endpoint's SVID, all are in the bundle. */
export const publishedDomain = (td: string, ...cas: CertificateAuthority[]): PublishedDomain => ({
  trustDomain: td,
  ca: cas[0]!,
  svidLifetimeMs: 3600_000,
  caPems: cas.map((c) => c.trustPem),
  caFingerprints: cas.map((c) => c.fingerprint),
});
