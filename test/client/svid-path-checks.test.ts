// The agent refuses an identity whose path to the trust bundle peers would refuse (openssl verify
// errors 10 and 9 on the anchor, 79 on a certificate that is no CA, "key too small"): such a push
// replaced good files and was ACKed, and nginx, curl and OpenSSL then failed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, webcrypto } from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { checkSvid, RefusedSvid } from '../../src/client/check-svid.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);
const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 86_400_000;
const now = Date.now();

interface Made {
  cert: x509.X509Certificate;
  keys: CryptoKeyPair;
}

async function ecKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function rsaKeys(bits: number): Promise<CryptoKeyPair> {
  // WebCrypto makes no key this small; node:crypto does, as a misconfigured server might.
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: bits });
  const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  return {
    privateKey: await webcrypto.subtle.importKey('pkcs8', privateKey.export({ format: 'der', type: 'pkcs8' }), alg, true, ['sign']),
    publicKey: await webcrypto.subtle.importKey('spki', publicKey.export({ format: 'der', type: 'spki' }), alg, true, ['verify']),
  } as CryptoKeyPair;
}

async function ca(name: string, from: number, to: number, issuer?: Made, isCa = true, sameKeysAs?: Made): Promise<Made> {
  const keys = sameKeysAs?.keys ?? (await ecKeys());
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: `0${Math.floor(Math.random() * 1e9)}`,
    subject: `CN=${name}`,
    issuer: issuer ? issuer.cert.subject : `CN=${name}`,
    notBefore: new Date(from),
    notAfter: new Date(to),
    signingAlgorithm: EC,
    publicKey: keys.publicKey,
    signingKey: (issuer ?? { keys }).keys.privateKey,
    extensions: [new x509.BasicConstraintsExtension(isCa, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)],
  });
  return { cert, keys };
}

async function leaf(issuer: Made, keys?: CryptoKeyPair): Promise<string> {
  const k = keys ?? (await ecKeys());
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: '0a1b',
    subject: 'CN=workload',
    issuer: issuer.cert.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + DAY),
    signingAlgorithm: EC,
    publicKey: k.publicKey,
    signingKey: issuer.keys.privateKey,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: 'spiffe://good.example/workload' }], true), new x509.BasicConstraintsExtension(false, undefined, true)],
  });
  return cert.toString('pem');
}

const pem = (m: Made) => m.cert.toString('pem');
const refused = (chain: string, bundle: string, re: RegExp) =>
  assert.throws(() => checkSvid(chain, bundle, undefined, now), (e: unknown) => e instanceof RefusedSvid && re.test(e.message));

test('a leaf valid now whose bundle anchor expired, or is not valid for another 30 days, is refused naming the anchor', async () => {
  const expired = await ca('Expired Root', now - 400 * DAY, now - 30 * DAY);
  refused(await leaf(expired), pem(expired), /through CN=Expired Root \(serial [0-9A-F]+\) in the trust bundle, which expired at/);
  const future = await ca('Future Root', now + 30 * DAY, now + 400 * DAY);
  refused(await leaf(future), pem(future), /through CN=Future Root .* in the trust bundle, which is not valid until/);
  // A good anchor: written.
  const good = await ca('Good Root', now - DAY, now + 400 * DAY);
  assert.deepEqual(checkSvid(await leaf(good), pem(good), undefined, now).warnings, []);
});

test('a leaf and its CA both a little ahead of this host\'s clock are the clock (a warning), not a refusal', async () => {
  const root = await ca('Fresh Root', now - 120_000, now + 400 * DAY);
  const chain = await leaf(root);
  const r = checkSvid(chain, pem(root), undefined, now - 10 * 60_000);
  assert.match(r.warnings.join('\n'), /is not valid until .* by this host's clock/);
});

test('a chain through a certificate that is no CA (CA:FALSE) is refused naming it', async () => {
  const root = await ca('Root', now - DAY, now + 400 * DAY);
  const notCa = await ca('Not A CA', now - DAY, now + 400 * DAY, root, false);
  refused(`${await leaf(notCa)}${pem(notCa)}`, pem(root), /through CN=Not A CA .* in the certificate chain, which is not a CA/);
});

test('a leaf with an RSA key of 1024 bits is refused: OpenSSL will not load it', async () => {
  const root = await ca('Root', now - DAY, now + 400 * DAY);
  refused(await leaf(root, await rsaKeys(1024)), pem(root), /has an RSA key of 1024 bits \(at least 2048 are needed\): OpenSSL refuses it/);
  assert.deepEqual(checkSvid(await leaf(root, await rsaKeys(2048)), pem(root), undefined, now).warnings, []);
});

test('a root renewed with the same key, the expired one still first in the bundle, is not refused: the path through the valid one is taken, as OpenSSL does', async () => {
  const old = await ca('Mesh Root', now - 400 * DAY, now - DAY);
  const renewed = await ca('Mesh Root', now - DAY, now + 400 * DAY, undefined, true, old);
  const chain = await leaf(renewed);
  for (const bundle of [pem(old) + pem(renewed), pem(renewed) + pem(old)]) assert.deepEqual(checkSvid(chain, bundle, undefined, now).warnings, []);
  // Only the expired one: refused.
  refused(chain, pem(old), /through CN=Mesh Root .* in the trust bundle, which expired at/);
});
