// The TLS clients of the suite: Node https (full verification: chain against the bundle plus the
// server's SPIFFE ID), curl and openssl s_client as separate processes.
import { execFile } from 'node:child_process';
import { request } from 'node:https';
import type { PeerCertificate } from 'node:tls';

export interface HttpsResult {
  status: number;
  body: string;
  /** Serial number (hex, as Node prints it) of the certificate the server presented. */
  serverSerial: string;
}

export interface ClientIdentity {
  cert?: string;
  key?: string;
}

/**
 * GET https://127.0.0.1:port/ on a fresh connection. The server must chain to `ca` (PEM) and carry
 * the URI SAN `serverSpiffeId`: SVIDs have no DNS or IP SAN, so the hostname check is replaced by
 * the SPIFFE ID check, as a SPIFFE-aware client does.
 */
export function httpsGet(port: number, ca: string, serverSpiffeId: string, client: ClientIdentity, timeoutMs = 5000): Promise<HttpsResult> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/',
        method: 'GET',
        agent: false,
        ca,
        cert: client.cert,
        key: client.key,
        rejectUnauthorized: true,
        headers: { connection: 'close' },
        timeout: timeoutMs,
        checkServerIdentity: (_host: string, cert: PeerCertificate) => {
          const uris = (cert.subjectaltname ?? '').split(/,\s*/).filter((s) => s.startsWith('URI:'));
          return uris.length === 1 && uris[0] === `URI:${serverSpiffeId}`
            ? undefined
            : new Error(`server SPIFFE ID is ${uris.join(' ') || '(none)'}, expected ${serverSpiffeId}`);
        },
      },
      (res) => {
        const serverSerial = (res.socket as unknown as { getPeerCertificate(): PeerCertificate }).getPeerCertificate().serialNumber;
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, serverSerial }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function exec(cmd: string, args: string[], input?: string, timeoutMs = 10_000): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
      resolve({ code, stdout, stderr });
    });
    // A command may exit before it reads its input (openssl refusing a certificate at once): the
    // write then fails with EPIPE, and the exit code and stderr are the result, not that error.
    child.stdin?.on('error', () => undefined);
    if (input !== undefined) child.stdin?.end(input);
    else child.stdin?.end();
  });
}

/**
 * curl with an optional client certificate. `--insecure` is deliberate and safe here: curl cannot
 * check a server that has only a URI SAN (it insists on a DNS/IP name), so curl's role is the
 * client side (does nginx demand and verify the client certificate?), `--pinnedpubkey` still pins
 * the server's key (curl checks a pin even with --insecure), and the server side is verified by
 * openssl s_client and Node https against the bundle.
 */
export function curl(port: number, o: { cert?: string; key?: string; pinnedPubKey?: string }): Promise<ExecResult & { status: number; body: string }> {
  const args = ['-sS', '--insecure', '--max-time', '5', '-w', '\n%{http_code}', `https://127.0.0.1:${port}/`];
  if (o.cert) args.push('--cert', o.cert);
  if (o.key) args.push('--key', o.key);
  if (o.pinnedPubKey) args.push('--pinnedpubkey', o.pinnedPubKey);
  return exec('curl', args).then((r) => {
    const i = r.stdout.lastIndexOf('\n');
    return { ...r, status: Number(r.stdout.slice(i + 1)) || 0, body: r.stdout.slice(0, Math.max(i, 0)).trim() };
  });
}

/** openssl s_client presenting `cert`/`key`, verifying the server against `caFile`, sending one HTTP request. */
export function sClient(port: number, o: { cert?: string; key?: string; caFile: string }): Promise<ExecResult> {
  const args = ['s_client', '-connect', `127.0.0.1:${port}`, '-CAfile', o.caFile, '-verify_return_error', '-x509_strict', '-ign_eof'];
  if (o.cert) args.push('-cert', o.cert);
  if (o.key) args.push('-key', o.key);
  return exec('openssl', args, 'GET / HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n');
}
