// A hostile server cannot make one push cost unbounded CPU in the chain check: a chain or trust
// bundle past a sane count of certificates is refused naming the count, and the signature checks of
// one chain walk are capped (thousands of CAs of the issuer's name would each be tried).
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { checkSvid, MAX_BUNDLE_CERTS, MAX_CHAIN_CERTS, RefusedSvid } from '../../src/client/check-svid.js';
import { decodeSecretResource } from '../../src/client/decode.js';
import { spiffeValidatorSecret, tlsCertificateSecret } from '../../src/xds/secrets.js';

const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
/** Self-signed, subject CN=Same, no key identifiers: every one is a name match for every other. */
async function sameName(ca: boolean): Promise<string> {
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const c = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=Same',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    keys,
    signingAlgorithm: alg,
    extensions: [new x509.BasicConstraintsExtension(ca, undefined, true)],
  });
  return c.toString('pem') + '\n';
}

describe('bounds on the chain check', () => {
  let leaf: string;
  let decoy: string;
  before(async () => {
    leaf = await sameName(false);
    decoy = await sameName(true);
  });

  it('refuses a chain of more than 16 certificates, naming the count', () => {
    assert.equal(MAX_CHAIN_CERTS, 16);
    assert.throws(() => checkSvid(leaf + decoy.repeat(MAX_CHAIN_CERTS), decoy, undefined), (e: Error) => e instanceof RefusedSvid && /chain carries 17 certificates; at most 16/.test(e.message));
  });

  it('refuses a trust bundle of more than 1,000 certificates, naming the count', () => {
    assert.equal(MAX_BUNDLE_CERTS, 1000);
    assert.throws(() => checkSvid(leaf, decoy.repeat(MAX_BUNDLE_CERTS + 1), undefined), (e: Error) => e instanceof RefusedSvid && /bundle carries 1001 certificates; at most 1000/.test(e.message));
  });

  it('stops trying candidate issuers of one name past a cap, and says the chain could not be checked', () => {
    const r = checkSvid(leaf + decoy.repeat(MAX_CHAIN_CERTS - 1), decoy.repeat(MAX_BUNDLE_CERTS), undefined);
    assert.equal(r.warnings.length, 1);
    assert.match(r.warnings[0]!, /could not be checked against the trust bundle sent with it: over \d+ candidate issuers/);
  });

  it('still verifies a chain to a bundle CA within the limits', () => {
    const r = checkSvid(leaf, decoy.repeat(10) + leaf, undefined);
    assert.deepEqual(r.warnings, []);
  });

  // The decoder parses every certificate of a push before the chain check: it is bounded the same.
  it('the decoder refuses a certificate_chain of more than 16 certificates, naming the count, before parsing them', () => {
    const any = tlsCertificateSecret('default', leaf + decoy.repeat(MAX_CHAIN_CERTS), 'not a key', 'v').any;
    assert.throws(() => decodeSecretResource(any), /default: certificate_chain: carries 17 certificates; at most 16 are accepted/);
  });

  it('the decoder refuses SPIFFE trust bundles of more than 1,000 certificates together, naming the count', () => {
    const ok = spiffeValidatorSecret('ALL', [{ trustDomain: 'a.example', pem: decoy.repeat(600) }, { trustDomain: 'b.example', pem: decoy.repeat(400) }]).any;
    assert.equal(decodeSecretResource(ok)?.kind, 'spiffe');
    const tooMany = spiffeValidatorSecret('ALL', [{ trustDomain: 'a.example', pem: decoy.repeat(600) }, { trustDomain: 'b.example', pem: decoy.repeat(401) }]).any;
    assert.throws(() => decodeSecretResource(tooMany), /trust_domains\[1\] \(b\.example\)\.trust_bundle: carries 401 certificates; at most 400 more \(1000 for all trust domains together\) are accepted/);
  });

  it('the decoder says a trust domain\'s bundle exceeds what the others left of the shared limit, also when exactly 16 places are left', () => {
    const sixteenLeft = spiffeValidatorSecret('ALL', [{ trustDomain: 'a.example', pem: decoy.repeat(984) }, { trustDomain: 'b.example', pem: decoy.repeat(17) }]).any;
    assert.throws(() => decodeSecretResource(sixteenLeft), /trust_domains\[1\] \(b\.example\)\.trust_bundle: carries 17 certificates; at most 16 more \(1000 for all trust domains together\) are accepted/);
    const first = spiffeValidatorSecret('ALL', [{ trustDomain: 'a.example', pem: decoy.repeat(1001) }]).any;
    assert.throws(() => decodeSecretResource(first), /trust_domains\[0\] \(a\.example\)\.trust_bundle: carries 1001 certificates; at most 1000 are accepted/);
  });

  // Parsing costs ~0.2 ms a certificate: a 15 MiB push of 24,000 copies of one took 5 s of CPU to refuse.
  it('the decoder refuses a chain or bundle past the limit by its count, before parsing any of its certificates', () => {
    // Blocks that are no certificate: an error about one of them would mean it was parsed first.
    const notParsed = '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n';
    const chain = tlsCertificateSecret('default', notParsed.repeat(MAX_CHAIN_CERTS + 1), 'not a key', 'v').any;
    assert.throws(() => decodeSecretResource(chain), /default: certificate_chain: carries 17 certificates; at most 16 are accepted/);
    const bundle = spiffeValidatorSecret('ALL', [{ trustDomain: 'a.example', pem: notParsed.repeat(MAX_BUNDLE_CERTS + 1) }]).any;
    assert.throws(() => decodeSecretResource(bundle), /trust_domains\[0\] \(a\.example\)\.trust_bundle: carries 1001 certificates; at most 1000 are accepted/);
  });
});
