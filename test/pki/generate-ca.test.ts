import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { loadCertificateAuthority } from '../../src/pki/ca.js';
import { CaError } from '../../src/pki/errors.js';
import { generateCertificateAuthority } from '../../src/pki/generate-ca.js';
import { issueSvidSync } from '../../src/pki/leaf.js';
import { x509 } from '../../src/pki/x509.js';
import { openssl, opensslVerify, tempDir, type TempDir } from './helpers.js';

const TD = 'default.zone1.mesh.local';

describe('generateCertificateAuthority', () => {
  let dir: TempDir;
  before(() => (dir = tempDir()));
  after(() => dir.cleanup());

  it('default CA: ECDSA P-256, O=Kuma OU=Mesh CN=<td>, URI SAN, 10 years, critical CA extensions, SKI, self-signed', () => {
    const now = new Date('2030-06-01T12:00:00.000Z');
    const g = generateCertificateAuthority(TD, { now });
    const c = new x509.X509Certificate(g.certPem);
    const subjectText = openssl(['x509', '-in', dir.file('gen.pem', g.certPem), '-noout', '-subject', '-nameopt', 'RFC2253']).trim();
    assert.equal(subjectText, `subject=CN=${TD},OU=Mesh,O=Kuma`); // RFC 2253 prints the last RDN first: DER order is O, OU, CN
    assert.equal(c.subject, c.issuer);
    const san = c.getExtension(x509.SubjectAlternativeNameExtension)!;
    assert.deepEqual(san.names.items.map((n) => [n.type, n.value]), [['url', `spiffe://${TD}`]]);
    const bc = c.getExtension(x509.BasicConstraintsExtension)!;
    assert.deepEqual([bc.ca, bc.critical], [true, true]);
    const ku = c.getExtension(x509.KeyUsagesExtension)!;
    const F = x509.KeyUsageFlags;
    assert.equal(ku.critical, true);
    assert.equal(ku.usages, F.keyCertSign | F.cRLSign);
    assert.ok(c.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId.length > 0);
    assert.equal(c.notBefore.getTime(), now.getTime() - 10_000);
    assert.equal(c.notAfter.toISOString(), '2040-06-01T11:59:50.000Z');
    const key = createPrivateKey(g.keyPem);
    assert.match(g.keyPem, /^-----BEGIN PRIVATE KEY-----/);
    assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    const nc = new X509Certificate(g.certPem);
    assert.ok(nc.checkPrivateKey(key));
    assert.ok(nc.verify(nc.publicKey), 'signed by its own key');
  });

  it('keeps the CN within 64 characters for a long trust domain, distinct per domain, with the full name in the SAN', () => {
    const long = (tail: string) => `${'a'.repeat(70)}.${tail}.mesh.local`;
    const [a, b] = [long('one'), long('two')].map((td) => ({ td, c: new x509.X509Certificate(generateCertificateAuthority(td).certPem) }));
    for (const { td, c } of [a!, b!]) {
      const cn = c.subjectName.getField('CN')[0]!;
      assert.ok(cn.length <= 64, `CN of ${cn.length} characters`);
      assert.ok(cn.startsWith('a'.repeat(40)));
      const san = c.getExtension(x509.SubjectAlternativeNameExtension)!;
      assert.deepEqual(san.names.items.map((n) => n.value), [`spiffe://${td}`]);
    }
    assert.notEqual(a!.c.subject, b!.c.subject, 'two CAs of one prefix must not share a subject');
    const short = new x509.X509Certificate(generateCertificateAuthority(TD).certPem);
    assert.deepEqual(short.subjectName.getField('CN'), [TD]);
  });

  it('is refused as self-signed unless allowed, and then issues leaves openssl accepts', () => {
    const g = generateCertificateAuthority(TD);
    assert.throws(() => loadCertificateAuthority(g.certPem, g.keyPem, { allowSelfSigned: false }), (e: unknown) => e instanceof CaError && e.message === 'self-signed certificates are not allowed');
    const ca = loadCertificateAuthority(g.certPem, g.keyPem, { allowSelfSigned: true });
    assert.equal(ca.selfSigned, true);
    assert.equal(ca.keyAlgorithm, 'ec-p256');
    const svid = issueSvidSync(ca, `spiffe://${TD}/ns/a/sa/b`, 3_600_000);
    for (const purpose of ['sslserver', 'sslclient'] as const) {
      const v = opensslVerify(dir, { root: ca.trustPem, leafChain: svid.certChainPem, purpose });
      assert.ok(v.ok, v.output);
    }
  });

  it('key usage is keyCertSign and cRLSign only: X509-SVID (Appendix A) reserves digitalSignature for leaves, as Kuma and SPIRE make their CAs', () => {
    for (const keyAlgorithm of ['ec-p256', 'rsa-2048'] as const) {
      const g = generateCertificateAuthority(TD, { keyAlgorithm });
      const text = openssl(['x509', '-in', dir.file(`ku-${keyAlgorithm}.pem`, g.certPem), '-noout', '-ext', 'keyUsage']);
      assert.match(text, /X509v3 Key Usage: critical\n\s*Certificate Sign, CRL Sign\n/, text);
    }
  });

  it('honours keyAlgorithm and validityYears', () => {
    for (const keyAlgorithm of ['ec-p384', 'rsa-2048'] as const) {
      const now = new Date('2030-01-01T00:00:00Z');
      const g = generateCertificateAuthority(TD, { keyAlgorithm, validityYears: 2, now });
      const ca = loadCertificateAuthority(g.certPem, g.keyPem, { allowSelfSigned: true, now });
      assert.equal(ca.keyAlgorithm, keyAlgorithm);
      assert.equal(ca.notAfter.toISOString(), '2031-12-31T23:59:50.000Z');
    }
  });

  it('crosses the UTCTime/GeneralizedTime boundary correctly (NotAfter in 2050+)', () => {
    const now = new Date('2045-03-04T05:06:07Z');
    const g = generateCertificateAuthority(TD, { now });
    const ca = loadCertificateAuthority(g.certPem, g.keyPem, { allowSelfSigned: true, now });
    assert.equal(ca.notAfter.toISOString(), '2055-03-04T05:05:57.000Z');
    assert.match(openssl(['x509', '-in', dir.file('2055.pem', g.certPem), '-noout', '-enddate']), /Mar {2}4 05:05:57 2055 GMT/);
  });

  it('rejects a trust domain that cannot be a URI authority', () => {
    assert.throws(() => generateCertificateAuthority('bad domain'), TypeError);
    assert.throws(() => generateCertificateAuthority('a/b'), TypeError);
  });
});
