// The files hold PEM made from what was parsed, never the server's text as sent: text outside the
// PEM blocks (headers, comments, or anything a server slips in, meant for a program that reads the
// file another way) is dropped, and every block is written in the canonical form.
import { createPrivateKey } from 'node:crypto';
import { derToPem, splitPemCertificates } from '../api/pem.js';
import { RefusedSvid } from './check-svid.js';

/** Every certificate of `text`, re-encoded from its DER. */
export function canonicalCertificates(text: string, what: string): string {
  const { ders, error } = splitPemCertificates(text);
  if (error) throw new RefusedSvid(`${what}: ${error}; not written`);
  return ders.map(derToPem).join('');
}

/** The private key re-encoded from its parsed form, in the same PEM type it came in (SEC1, PKCS#1 or PKCS#8). */
export function canonicalKey(text: string): string {
  const key = createPrivateKey(text);
  const label = /-----BEGIN ([A-Z0-9 ]+)-----/.exec(text)?.[1];
  if (label === 'EC PRIVATE KEY') return key.export({ type: 'sec1', format: 'pem' }).toString();
  if (label === 'RSA PRIVATE KEY') return key.export({ type: 'pkcs1', format: 'pem' }).toString();
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}
