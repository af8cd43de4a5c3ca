import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { loadCertificateAuthority } from '../../src/pki/ca.js';
import { children, readNode, tlv } from '../../src/pki/der.js';
import { CaError } from '../../src/pki/errors.js';
import { issueSvidSync } from '../../src/pki/leaf.js';
import type { CertificateAuthority, IssuedSvid } from '../../src/pki/types.js';
import { x509 } from '../../src/pki/x509.js';
import { makeCert, makeIntermediateCa, makeKey, makeRootCa, opensslVerify, pemBlocks, tempDir, type Ca, type TempDir } from './helpers.js';

const DAY = 86_400_000;
const ID = 'spiffe://default.zone1.mesh.local/ns/demo/sa/web';

/** Re-encodes DER with minimal lengths, descending into constructed values and extension OCTET STRINGs. */
function reencode(buf: Buffer, start = 0, end = buf.length): Buffer {
  const out: Buffer[] = [];
  for (let p = start; p < end; ) {
    const n = readNode(buf, p);
    const constructed = (n.tag & 0x20) !== 0;
    // An OCTET STRING holding DER (an extension's value) starts with a SEQUENCE or BIT STRING.
    const wrapsDer = n.tag === 0x04 && (buf[n.contentStart] === 0x30 || buf[n.contentStart] === 0x03) && n.end > n.contentStart;
    out.push(constructed || wrapsDer ? tlv(n.tag, reencode(buf, n.contentStart, n.end)) : tlv(n.tag, buf.subarray(n.contentStart, n.end)));
    p = n.end;
  }
  return Buffer.concat(out);
}

/** Every SPEC §2 leaf property, checked with @peculiar/x509. */
function assertLeafShape(svid: IssuedSvid, ca: CertificateAuthority, now: Date, expiryMs: number): x509.X509Certificate {
  const [leafPem] = pemBlocks(svid.certChainPem);
  const leaf = new x509.X509Certificate(leafPem!);
  assert.equal(leaf.subject, '', 'empty subject');
  assert.equal(leaf.issuer, new x509.X509Certificate(new Uint8Array(ca.certDer)).subject);

  const sans = leaf.extensions.filter((e) => e.type === '2.5.29.17');
  assert.equal(sans.length, 1);
  const san = leaf.getExtension(x509.SubjectAlternativeNameExtension)!;
  assert.equal(san.critical, true, 'SAN critical with an empty subject');
  assert.deepEqual(san.names.items.map((n) => [n.type, n.value]), [['url', ID]]);

  const bc = leaf.getExtension(x509.BasicConstraintsExtension)!;
  assert.equal(bc.ca, false);
  assert.equal(bc.critical, true);

  const ku = leaf.getExtension(x509.KeyUsagesExtension)!;
  assert.equal(ku.critical, true);
  const F = x509.KeyUsageFlags;
  const wantKu = ca.keyAlgorithm.startsWith('ec-') ? F.digitalSignature | F.keyAgreement : F.digitalSignature | F.keyEncipherment;
  assert.equal(ku.usages, wantKu);

  const eku = leaf.getExtension(x509.ExtendedKeyUsageExtension)!;
  assert.deepEqual([...eku.usages].sort(), [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth].sort());

  const aki = leaf.getExtension(x509.AuthorityKeyIdentifierExtension)!;
  assert.equal(aki.keyId, ca.subjectKeyId.toString('hex'));

  const wantNotBefore = Math.floor((now.getTime() - 10_000) / 1000) * 1000;
  const wantNotAfter = Math.floor(Math.min(now.getTime() + expiryMs, ca.notAfter.getTime()) / 1000) * 1000;
  assert.equal(leaf.notBefore.getTime(), wantNotBefore);
  assert.equal(leaf.notAfter.getTime(), wantNotAfter);
  assert.equal(svid.notBefore.getTime(), wantNotBefore);
  assert.equal(svid.notAfter.getTime(), wantNotAfter);

  // Serial: positive, 128 bits wide, reported as hex.
  const serial = new X509Certificate(leafPem!).serialNumber.toLowerCase();
  assert.equal(serial, svid.serialHex);
  assert.equal(svid.serialHex.length, 32);
  assert.ok(parseInt(svid.serialHex.slice(0, 2), 16) < 0x80);

  // Key: PKCS#8, same family as the CA, and the pair of the certified public key.
  assert.match(svid.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
  const key = createPrivateKey(svid.keyPem);
  assert.ok(new X509Certificate(leafPem!).checkPrivateKey(key));
  if (ca.keyAlgorithm === 'ec-p256') assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  else if (ca.keyAlgorithm === 'ec-p384') assert.equal(key.asymmetricKeyDetails?.namedCurve, 'secp384r1');
  else assert.deepEqual([key.asymmetricKeyType, key.asymmetricKeyDetails?.modulusLength], ['rsa', 2048]);

  const sigAlg = ca.keyAlgorithm === 'ec-p256' ? ['ECDSA', 'SHA-256'] : ca.keyAlgorithm === 'ec-p384' ? ['ECDSA', 'SHA-384'] : ['RSASSA-PKCS1-v1_5', 'SHA-256'];
  const sa = leaf.signatureAlgorithm as { name: string; hash: { name: string } };
  assert.deepEqual([sa.name, sa.hash.name], sigAlg);
  assert.ok(new X509Certificate(leafPem!).verify(new X509Certificate(ca.certDer).publicKey));
  assert.equal(svid.caFingerprint, ca.fingerprint);
  assert.equal(svid.spiffeId, ID);
  return leaf;
}

describe('issueSvidSync', () => {
  let dir: TempDir;
  let root: Ca;
  before(() => {
    dir = tempDir();
    root = makeRootCa(dir, 'root');
  });
  after(() => dir.cleanup());

  for (const alg of ['ec-p256', 'ec-p384', 'rsa-2048'] as const) {
    it(`${alg} CA: leaf passes openssl -x509_strict as server and client and has every SPEC §2 property`, () => {
      const caFiles = makeRootCa(dir, `ca-${alg}`, alg);
      const ca = loadCertificateAuthority(caFiles.certPem, caFiles.keyPem, { allowSelfSigned: true });
      const now = new Date();
      const svid = issueSvidSync(ca, ID, DAY, now);
      assertLeafShape(svid, ca, now, DAY);
      assert.equal(pemBlocks(svid.certChainPem).length, 1, 'the self-signed root is not served');
      for (const purpose of ['sslserver', 'sslclient'] as const) {
        const v = opensslVerify(dir, { root: ca.trustPem, leafChain: svid.certChainPem, purpose });
        assert.ok(v.ok, v.output);
      }
    });
  }

  it('intermediate CA: chain served is leaf + intermediate and verifies against the root only', () => {
    const inter = makeIntermediateCa(dir, 'inter', root);
    const ca = loadCertificateAuthority(inter.certPem + root.certPem, inter.keyPem, { allowSelfSigned: false });
    const now = new Date();
    const svid = issueSvidSync(ca, ID, DAY, now);
    assertLeafShape(svid, ca, now, DAY);
    const blocks = pemBlocks(svid.certChainPem);
    assert.equal(blocks.length, 2);
    assert.equal(blocks[1], pemBlocks(inter.certPem)[0]);
    assert.equal(ca.trustPem.trim(), root.certPem.trim());
    for (const purpose of ['sslserver', 'sslclient'] as const) {
      const v = opensslVerify(dir, { root: root.certPem, untrusted: blocks[1]!, leafChain: svid.certChainPem, purpose });
      assert.ok(v.ok, v.output);
    }
    // Without the intermediate the leaf does not chain to the root: the chain is needed.
    assert.equal(opensslVerify(dir, { root: root.certPem, leafChain: svid.certChainPem, purpose: 'sslserver' }).ok, false);
  });

  it('intermediate CA given without its root: its trust bundle (the intermediate) verifies leaves with partial chains', () => {
    const inter = makeIntermediateCa(dir, 'inter-alone', root);
    const ca = loadCertificateAuthority(inter.certPem, inter.keyPem, { allowSelfSigned: false });
    const svid = issueSvidSync(ca, ID, DAY);
    assert.equal(pemBlocks(svid.certChainPem).length, 2);
    const v = opensslVerify(dir, { root: ca.trustPem, leafChain: svid.certChainPem, purpose: 'sslclient', partialChain: true });
    assert.ok(v.ok, v.output);
  });

  it('clamps NotAfter to the CA NotAfter', () => {
    const ca = loadCertificateAuthority(root.certPem, root.keyPem, { allowSelfSigned: true });
    const now = new Date(ca.notAfter.getTime() - 3_600_000); // CA has one hour left
    const svid = issueSvidSync(ca, ID, DAY, now);
    assert.equal(svid.notAfter.getTime(), ca.notAfter.getTime());
    assertLeafShape(svid, ca, now, DAY);
  });

  it('backdates NotBefore by 10 s and uses the requested expiry', () => {
    const ca = loadCertificateAuthority(root.certPem, root.keyPem, { allowSelfSigned: true });
    const now = new Date();
    const svid = issueSvidSync(ca, ID, 3_600_000, now);
    assert.ok(Math.abs(svid.notBefore.getTime() - (now.getTime() - 10_000)) < 1000);
    assert.ok(Math.abs(svid.notAfter.getTime() - (now.getTime() + 3_600_000)) < 1000);
  });

  it('RSA 4096 CA loads and issues RSA 2048 leaves', () => {
    const keyPem = makeKey(dir, 'rsa4096', 'rsa-4096');
    const certPem = makeCert(dir, 'rsa4096', { subject: '/CN=rsa4096', keyPem, issuer: root });
    const ca = loadCertificateAuthority(certPem, keyPem, { allowSelfSigned: false });
    assert.equal(ca.keyAlgorithm, 'rsa-4096');
    const svid = issueSvidSync(ca, ID, DAY);
    assert.equal(createPrivateKey(svid.keyPem).asymmetricKeyDetails?.modulusLength, 2048);
    const v = opensslVerify(dir, { root: root.certPem, untrusted: certPem, leafChain: svid.certChainPem, purpose: 'sslserver' });
    assert.ok(v.ok, v.output);
  });

  it('refuses to issue from an expired CA and rejects bad input', () => {
    const ca = loadCertificateAuthority(root.certPem, root.keyPem, { allowSelfSigned: true });
    assert.throws(() => issueSvidSync(ca, ID, DAY, new Date(ca.notAfter.getTime() + 1)), (e: unknown) => e instanceof CaError && e.message === `CA certificate expired at ${ca.notAfter.toISOString()}`);
    assert.throws(() => issueSvidSync(ca, 'https://x/y', DAY), TypeError);
    assert.throws(() => issueSvidSync(ca, 'spiffe://td/with space', DAY), TypeError);
    assert.throws(() => issueSvidSync(ca, ID, 0), RangeError);
  });

  it('encodes EC private keys whose scalar has leading zero bytes at full length', () => {
    const ca = loadCertificateAuthority(root.certPem, root.keyPem, { allowSelfSigned: true });
    // About 1 key in 256 has a leading zero byte; 5000 tries miss one with probability ~3e-9.
    for (let i = 0; i < 5000; i++) {
      const svid = issueSvidSync(ca, ID, DAY);
      const key = createPrivateKey(svid.keyPem);
      const d = Buffer.from(key.export({ format: 'jwk' }).d!, 'base64url');
      if (d[0] !== 0) continue;
      assert.equal(d.length, 32);
      assert.ok(new X509Certificate(pemBlocks(svid.certChainPem)[0]!).checkPrivateKey(key));
      return;
    }
    assert.fail('no key with a leading zero byte in 5000 leaves');
  });

  for (const alg of ['ec-p256', 'ec-p384'] as const) {
    it(`${alg}: certificate is canonical DER and the PKCS#8 key is byte for byte what OpenSSL encodes for it`, () => {
      const caFiles = makeRootCa(dir, `canon-${alg}`, alg);
      const ca = loadCertificateAuthority(caFiles.certPem, caFiles.keyPem, { allowSelfSigned: true });
      for (let i = 0; i < 50; i++) {
        const svid = issueSvidSync(ca, `${ID}-${i}`, DAY);
        const der = new X509Certificate(pemBlocks(svid.certChainPem)[0]!).raw;
        assert.ok(reencode(der).equals(der), 'minimal DER lengths at every level');
        const tbs = children(der, readNode(der, 0))[0]!;
        assert.equal(tbs.tag, 0x30);
        const key = createPrivateKey(svid.keyPem);
        const pkcs8 = Buffer.from(svid.keyPem.replace(/-----[A-Z ]+-----|\n/g, ''), 'base64');
        assert.ok(key.export({ type: 'pkcs8', format: 'der' }).equals(pkcs8));
        assert.equal(svid.keyPem, key.export({ type: 'pkcs8', format: 'pem' }));
        assert.ok(new X509Certificate(der).checkPrivateKey(key));
      }
    });
  }

  it('long SPIFFE IDs (multi-byte DER lengths in the SAN and extensions) encode and verify', () => {
    const ca = loadCertificateAuthority(root.certPem, root.keyPem, { allowSelfSigned: true });
    for (const len of [100, 127, 128, 200, 255, 256, 2048]) {
      const id = `spiffe://td.example/${'a'.repeat(len - 'spiffe://td.example/'.length)}`;
      assert.equal(id.length, len);
      const svid = issueSvidSync(ca, id, DAY);
      const [leafPem] = pemBlocks(svid.certChainPem);
      const der = new X509Certificate(leafPem!).raw;
      assert.ok(reencode(der).equals(der), `canonical DER (${len})`);
      const leaf = new x509.X509Certificate(leafPem!);
      assert.deepEqual(leaf.getExtension(x509.SubjectAlternativeNameExtension)!.names.items.map((n) => [n.type, n.value]), [['url', id]]);
      const v = opensslVerify(dir, { root: ca.trustPem, leafChain: svid.certChainPem, purpose: 'sslclient' });
      assert.ok(v.ok, `${len}: ${v.output}`);
    }
  });

  it('gives every leaf a fresh key and a distinct serial', () => {
    const ca = loadCertificateAuthority(root.certPem, root.keyPem, { allowSelfSigned: true });
    const svids = Array.from({ length: 200 }, () => issueSvidSync(ca, ID, DAY));
    assert.equal(new Set(svids.map((s) => s.serialHex)).size, 200);
    assert.equal(new Set(svids.map((s) => s.keyPem)).size, 200);
  });
});
