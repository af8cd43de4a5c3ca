// The leak scan (issue 11 point 6): every log line and admin response a suite produces is
// collected here, with the SVID private keys served and the tokens made in that test process, and
// the scan fails on a PRIVATE KEY block, a base64 fragment (>= 24 characters) of any of those keys'
// DER, or a token (whole, or a fragment of its signature). Each test file runs in its own process,
// so one collector per process is one per test file.
import { createPrivateKey, createPublicKey } from 'node:crypto';

export const FRAGMENT = 24;
const PRIVATE_KEY_BLOCK = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;
/** Any JWT (header.payload.signature), ours or not. */
const JWT = /eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}/;
/** Runs of base64 / base64url characters long enough to hold a fragment. */
const RUN = new RegExp(`[A-Za-z0-9+/_-]{${FRAGMENT},}`, 'g');

/** Every FRAGMENT-character window of the base64 of `der`, at each of the three byte alignments. */
function windows(der: Buffer): Set<string> {
  const out = new Set<string>();
  for (let shift = 0; shift < 3; shift++) {
    const b64 = der.subarray(shift).toString('base64').replace(/=+$/, '');
    // The last characters of a shifted encoding depend on padding bits: leave them out.
    for (let i = 0; i + FRAGMENT <= b64.length - 2; i++) out.add(b64.slice(i, i + FRAGMENT));
  }
  return out;
}

export interface Finding {
  source: string;
  what: string;
}

export class LeakScan {
  private readonly texts: { source: string; text: string }[] = [];
  private readonly pending: Promise<unknown>[] = [];
  private readonly keyWindows = new Map<string, string>();
  private readonly tokenWindows = new Map<string, string>();
  private keys = 0;
  private tokens = 0;

  /** A log line, an admin response, anything a person or a log system would see. */
  addText(source: string, text: string): void {
    this.texts.push({ source, text });
  }

  /** Text that arrives later (a response body being read). */
  addPending(source: string, text: Promise<string>): void {
    this.pending.push(text.then((t) => this.addText(source, t), () => undefined));
  }

  /**
   * A private key served in this test (PEM). Windows that are also in its public key are left out:
   * the public key is in the certificate, which may be shown.
   */
  addKeyPem(pem: string): void {
    const key = createPrivateKey(pem);
    const der = key.export({ type: 'pkcs8', format: 'der' });
    const pub = windows(createPublicKey(key).export({ type: 'spki', format: 'der' }));
    const label = `SVID private key #${++this.keys}`;
    const forms: Buffer[] = [der];
    // The same key in its traditional form (SEC1 / PKCS#1), as some tools write it.
    try {
      forms.push(key.export({ type: key.asymmetricKeyType === 'rsa' ? 'pkcs1' : 'sec1', format: 'der' } as never) as Buffer);
    } catch {
      // Ed25519 and others have no traditional form.
    }
    for (const form of forms) for (const w of windows(form)) if (!pub.has(w)) this.keyWindows.set(w, label);
  }

  /** A token made in this test. Its signature is what makes it a credential. */
  addToken(token: string): void {
    const sig = token.split('.')[2] ?? '';
    const label = `token #${++this.tokens}`;
    for (let i = 0; i + FRAGMENT <= sig.length; i++) this.tokenWindows.set(sig.slice(i, i + FRAGMENT), label);
  }

  /** Everything found, naming where and what (never the secret itself). */
  async findings(): Promise<Finding[]> {
    await Promise.all(this.pending.splice(0));
    const out: Finding[] = [];
    for (const { source, text } of this.texts) {
      if (PRIVATE_KEY_BLOCK.test(text)) out.push({ source, what: 'a PRIVATE KEY block' });
      if (JWT.test(text)) out.push({ source, what: 'a JWT' });
      const seen = new Set<string>();
      for (const m of text.matchAll(RUN)) {
        const run = m[0];
        for (let i = 0; i + FRAGMENT <= run.length; i++) {
          const w = run.slice(i, i + FRAGMENT);
          const hit = this.keyWindows.get(w) ?? this.tokenWindows.get(w);
          if (hit && !seen.has(hit)) {
            seen.add(hit);
            out.push({ source, what: `a ${FRAGMENT}+ character fragment of ${hit}` });
          }
        }
      }
    }
    return out;
  }

  /** Throws when anything leaked; the message names the sources, not the secrets. */
  async assertClean(): Promise<void> {
    const found = await this.findings();
    if (found.length > 0) {
      const list = found.slice(0, 20).map((f) => `  ${f.source}: ${f.what}`).join('\n');
      throw new Error(`leak scan: ${found.length} finding(s) in logs or admin responses\n${list}`);
    }
  }

  /** Forgets the collected text (secrets stay known). */
  reset(): void {
    this.texts.length = 0;
  }

  get textCount(): number {
    return this.texts.length;
  }
}

/** The collector of this test process. */
export const leakScan = new LeakScan();

const adminBases = new Set<string>();
let fetchPatched = false;

/**
 * Collects every response a test reads from an admin server (`base` like http://127.0.0.1:port),
 * by teeing global fetch.
 */
export function captureAdminResponses(base: string): void {
  adminBases.add(base.replace(/\/+$/, ''));
  if (fetchPatched) return;
  fetchPatched = true;
  const original = globalThis.fetch;
  globalThis.fetch = async (input, init) => {
    const res = await original(input, init);
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    if ([...adminBases].some((b) => url.startsWith(b))) leakScan.addPending(`admin ${url}`, res.clone().text());
    return res;
  };
}

/** Reads every admin view once (so the scan covers them even when no test looked) into the collector. */
export async function collectAdminViews(base: string): Promise<void> {
  for (const path of ['/metrics', '/debug/proxies', '/debug/secrets', '/debug/identities', '/readyz?verbose']) {
    try {
      const res = await fetch(`${base}${path}`);
      leakScan.addText(`admin ${path}`, await res.text());
    } catch {
      // The admin server is already gone: nothing more to read.
    }
  }
}
