import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate, createHash, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { caKeyProblem } from '../../src/api/pem.js';
import { makeCaUntil } from '../helpers/openssl.js';
import { loadCertificateAuthority } from '../../src/pki/ca.js';
import { CaError } from '../../src/pki/errors.js';
import { issueSvidSync } from '../../src/pki/leaf.js';
import { CA_EXTENSIONS, makeCert, makeIntermediateCa, makeKey, makeRootCa, openssl, opensslVerify, pemBlocks, tempDir, type Ca, type TempDir } from './helpers.js';

const refusal = (message: string | RegExp) => (e: unknown) => {
  assert.ok(e instanceof CaError, `expected CaError, got ${String(e)}`);
  if (typeof message === 'string') assert.equal(e.message, message);
  else assert.match(e.message, message);
  return true;
};

describe('loadCertificateAuthority', () => {
  let dir: TempDir;
  let root: Ca;
  let inter: Ca;
  before(() => {
    dir = tempDir();
    root = makeRootCa(dir, 'root');
    inter = makeIntermediateCa(dir, 'inter', root);
  });
  after(() => dir.cleanup());

  it('loads key formats PKCS#8, SEC1 and PKCS#1 for every supported algorithm', () => {
    const cases = [
      ['ec-p256', 'traditional'],
      ['ec-p256', 'pkcs8'],
      ['ec-p384', 'traditional'],
      ['rsa-2048', 'traditional'],
      ['rsa-3072', 'pkcs8'],
    ] as const;
    for (const [alg, format] of cases) {
      const ca = makeRootCa(dir, `fmt-${alg}-${format}`, alg, format);
      assert.match(ca.keyPem, format === 'pkcs8' ? /BEGIN PRIVATE KEY/ : alg.startsWith('ec') ? /BEGIN EC PRIVATE KEY/ : /BEGIN RSA PRIVATE KEY/);
      const loaded = loadCertificateAuthority(ca.certPem, ca.keyPem, { allowSelfSigned: true });
      assert.equal(loaded.keyAlgorithm, alg);
      const der = new X509Certificate(ca.certPem).raw;
      assert.ok(loaded.certDer.equals(der));
      assert.equal(loaded.fingerprint, createHash('sha256').update(der).digest('hex'));
    }
  });

  it('copies the CA SubjectKeyIdentifier and validity from the certificate', () => {
    const loaded = loadCertificateAuthority(inter.certPem, inter.keyPem, { allowSelfSigned: false });
    const text = openssl(['x509', '-in', dir.file('inter.pem'), '-noout', '-text']);
    const ski = /Subject Key Identifier:\s*\n\s*([0-9A-F:]+)/.exec(text)![1]!.replace(/:/g, '').toLowerCase();
    assert.equal(loaded.subjectKeyId.toString('hex'), ski);
    const x = new X509Certificate(inter.certPem);
    assert.equal(loaded.notAfter.getTime(), new Date(x.validTo).getTime());
    assert.equal(loaded.notBefore.getTime(), new Date(x.validFrom).getTime());
    assert.equal(loaded.selfSigned, false);
  });

  it('self-signed root, when allowed, is the trust anchor and is not served in the chain', () => {
    const loaded = loadCertificateAuthority(root.certPem, root.keyPem, { allowSelfSigned: true });
    assert.equal(loaded.selfSigned, true);
    assert.equal(loaded.chainPem, '');
    assert.deepEqual(pemBlocks(loaded.trustPem), pemBlocks(root.certPem));
  });

  it('refuses a self-signed CA unless allowed', () => {
    assert.throws(() => loadCertificateAuthority(root.certPem, root.keyPem, { allowSelfSigned: false }), refusal('self-signed certificates are not allowed'));
  });

  it('intermediate followed by its root: chain excludes the root, trust is the root', () => {
    const loaded = loadCertificateAuthority(inter.certPem + root.certPem, inter.keyPem, { allowSelfSigned: false });
    assert.equal(loaded.selfSigned, false);
    assert.deepEqual(pemBlocks(loaded.chainPem), pemBlocks(inter.certPem));
    assert.deepEqual(pemBlocks(loaded.trustPem), pemBlocks(root.certPem));
  });

  it('intermediate without its root: the intermediate itself is the trust anchor', () => {
    const loaded = loadCertificateAuthority(inter.certPem, inter.keyPem, { allowSelfSigned: false });
    assert.deepEqual(pemBlocks(loaded.chainPem), pemBlocks(inter.certPem));
    assert.deepEqual(pemBlocks(loaded.trustPem), pemBlocks(inter.certPem));
  });

  it('two-level chain: chain is CA + parent intermediate, trust is the root', () => {
    const sub = makeIntermediateCa(dir, 'sub', inter);
    const loaded = loadCertificateAuthority(sub.certPem + inter.certPem + root.certPem, sub.keyPem, { allowSelfSigned: false });
    assert.deepEqual(pemBlocks(loaded.chainPem), [...pemBlocks(sub.certPem), ...pemBlocks(inter.certPem)]);
    assert.deepEqual(pemBlocks(loaded.trustPem), pemBlocks(root.certPem));
    // Without the root, the signing CA itself is the anchor; the parent is still served.
    const noRoot = loadCertificateAuthority(sub.certPem + inter.certPem, sub.keyPem, { allowSelfSigned: false });
    assert.deepEqual(pemBlocks(noRoot.chainPem), [...pemBlocks(sub.certPem), ...pemBlocks(inter.certPem)]);
    assert.deepEqual(pemBlocks(noRoot.trustPem), pemBlocks(sub.certPem));
  });

  it('refuses a chain in the wrong order', () => {
    const sub = makeIntermediateCa(dir, 'sub2', inter);
    assert.throws(
      () => loadCertificateAuthority(sub.certPem + root.certPem + inter.certPem, sub.keyPem, { allowSelfSigned: false }),
      refusal(/chain certificate #1 did not issue certificate #0/),
    );
  });

  it('refuses a key that does not match the certificate', () => {
    assert.throws(() => loadCertificateAuthority(inter.certPem, root.keyPem, { allowSelfSigned: true }), refusal('private key does not match the CA certificate'));
  });

  it('refuses a certificate without basicConstraints CA:TRUE', () => {
    const keyPem = makeKey(dir, 'notca', 'ec-p256');
    for (const bc of ['basicConstraints = critical, CA:FALSE', null]) {
      const ext = ['keyUsage = critical, keyCertSign', 'subjectKeyIdentifier = hash', ...(bc ? [bc] : [])];
      const certPem = makeCert(dir, 'notca', { subject: '/CN=notca', keyPem, issuer: root, extensions: ext });
      assert.throws(() => loadCertificateAuthority(certPem, keyPem, { allowSelfSigned: false }), refusal('certificate is not a CA (basicConstraints CA:TRUE missing)'));
    }
  });

  it('refuses a CA whose key usage lacks keyCertSign', () => {
    const keyPem = makeKey(dir, 'noku', 'ec-p256');
    for (const [ku, reason] of [
      ['keyUsage = critical, digitalSignature, cRLSign', /^CA certificate key usage does not include keyCertSign; reissue it with keyUsage=critical,keyCertSign,cRLSign$/],
      [null, /^CA certificate has no keyUsage extension .*; reissue it with keyUsage=critical,keyCertSign,cRLSign$/],
    ] as const) {
      const ext = ['basicConstraints = critical, CA:TRUE', 'subjectKeyIdentifier = hash', ...(ku ? [ku] : [])];
      const certPem = makeCert(dir, 'noku', { subject: '/CN=noku', keyPem, issuer: root, extensions: ext });
      assert.throws(() => loadCertificateAuthority(certPem, keyPem, { allowSelfSigned: false }), refusal(reason));
    }
  });

  it('a CA made by `openssl req -x509` with its defaults (no keyUsage) is refused saying what to add', () => {
    const keyPem = makeKey(dir, 'reqdefaults', 'ec-p256');
    const certPem = openssl(['req', '-x509', '-new', '-key', dir.file('reqdefaults.in.key', keyPem), '-subj', '/CN=reqdefaults', '-days', '30', '-addext', 'subjectAltName=URI:spiffe://td.example']);
    assert.doesNotMatch(openssl(['x509', '-in', dir.file('reqdefaults.pem', certPem), '-noout', '-text']), /Key Usage/);
    assert.throws(() => loadCertificateAuthority(certPem, keyPem, { allowSelfSigned: true, trustDomain: 'td.example' }), refusal(/^CA certificate has no keyUsage extension .*reissue it with keyUsage=critical,keyCertSign,cRLSign$/));
  });

  it('refuses a CA without a SubjectKeyIdentifier', () => {
    const keyPem = makeKey(dir, 'noski', 'ec-p256');
    const ext = ['basicConstraints = critical, CA:TRUE', 'keyUsage = critical, keyCertSign', 'subjectKeyIdentifier = none'];
    const certPem = makeCert(dir, 'noski', { subject: '/CN=noski', keyPem, issuer: root, extensions: ext });
    assert.doesNotMatch(openssl(['x509', '-in', dir.file('noski.pem'), '-noout', '-text']), /Subject Key Identifier/);
    assert.throws(() => loadCertificateAuthority(certPem, keyPem, { allowSelfSigned: false }), refusal(/^CA certificate has no SubjectKeyIdentifier extension/));
  });

  it('refuses an expired CA, naming the expiry instant', () => {
    const loaded = loadCertificateAuthority(inter.certPem, inter.keyPem, { allowSelfSigned: false });
    const later = new Date(loaded.notAfter.getTime() + 1000);
    assert.throws(
      () => loadCertificateAuthority(inter.certPem, inter.keyPem, { allowSelfSigned: false, now: later }),
      refusal(`CA certificate expired at ${loaded.notAfter.toISOString()}`),
    );
  });

  it('refuses a CA that is not valid yet', () => {
    const loaded = loadCertificateAuthority(inter.certPem, inter.keyPem, { allowSelfSigned: false });
    const earlier = new Date(loaded.notBefore.getTime() - 1000);
    assert.throws(
      () => loadCertificateAuthority(inter.certPem, inter.keyPem, { allowSelfSigned: false, now: earlier }),
      refusal(`CA certificate is not valid before ${loaded.notBefore.toISOString()}`),
    );
  });

  it('refuses unsupported keys, encrypted keys and unparseable input', () => {
    const p521 = makeRootCa(dir, 'p521', 'ec-p521');
    assert.throws(() => loadCertificateAuthority(p521.certPem, p521.keyPem, { allowSelfSigned: true }), refusal(/unsupported EC curve secp521r1/));
    const enc = openssl(['pkey', '-in', dir.file('inter.key'), '-aes256', '-passout', 'pass:x']);
    assert.throws(() => loadCertificateAuthority(inter.certPem, enc, { allowSelfSigned: true }), refusal(/encrypted/));
    assert.throws(() => loadCertificateAuthority('nope', inter.keyPem, { allowSelfSigned: true }), refusal('CA certificate PEM contains no certificate'));
    assert.throws(() => loadCertificateAuthority(inter.certPem, 'nope', { allowSelfSigned: true }), refusal(/not a PEM private key/));
    const garbled = '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n';
    assert.throws(() => loadCertificateAuthority(garbled, inter.keyPem, { allowSelfSigned: true }), refusal(/CA certificate cannot be parsed: PEM block 1 is not an X.509 certificate/));
  });

  it('checks extensions of a chain certificate too', () => {
    // A leaf-like parent (not a CA) must not be accepted as part of the chain.
    const keyPem = makeKey(dir, 'fakeparent', 'ec-p256');
    const fake = makeCert(dir, 'fakeparent', { subject: '/CN=fakeparent', keyPem, extensions: ['basicConstraints = critical, CA:FALSE', 'subjectKeyIdentifier = hash'] });
    assert.throws(() => loadCertificateAuthority(inter.certPem + fake, inter.keyPem, { allowSelfSigned: false }), refusal(/chain certificate #1 is not a CA/));
  });
  it('a chain that goes on past its root, or repeats a certificate, is refused naming the certificate: copies of the root were served to every proxy in each SVID', () => {
    const sub = makeIntermediateCa(dir, 'dup-sub', inter);
    for (const [certPem, reason] of [
      [inter.certPem + root.certPem + root.certPem, /^chain certificate #2 comes after the self-signed root \(chain certificate #1\): the root must be last$/],
      [inter.certPem + root.certPem + inter.certPem, /^chain certificate #2 comes after the self-signed root \(chain certificate #1\): the root must be last$/],
      [inter.certPem + inter.certPem + root.certPem, /^chain certificate #1 is a second copy of certificate #0$/],
      [sub.certPem + inter.certPem + inter.certPem + root.certPem, /^chain certificate #2 is a second copy of certificate #1$/],
    ] as const) {
      const key = certPem.startsWith(sub.certPem) ? sub.keyPem : inter.keyPem;
      assert.throws(() => loadCertificateAuthority(certPem, key, { allowSelfSigned: false }), refusal(reason));
    }
    // The chain as it should be: the root is not served.
    const ok = loadCertificateAuthority(inter.certPem + root.certPem, inter.keyPem, { allowSelfSigned: false });
    assert.deepEqual(pemBlocks(ok.chainPem), pemBlocks(inter.certPem));
  });

  it('a CA or chain certificate whose key federated peers refuse (RSA under 2048 bits, secp256k1, an exponent past 2^31-1) is refused naming the certificate and its key', () => {
    const withKey = (name: string, genpkey: string[]): string => {
      openssl(['genpkey', ...genpkey, '-out', dir.file(`${name}.gen.key`)]);
      return readFileSync(dir.file(`${name}.gen.key`), 'utf8');
    };
    const weakRoots = [
      ['rsa1024', ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024'], 'an RSA 1024-bit key; at least 2048 bits are required'],
      ['k1', ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:secp256k1'], 'an EC key on curve secp256k1; the curve must be P-256, P-384 or P-521'],
    ] as const;
    for (const [name, genpkey, problem] of weakRoots) {
      const rootKey = withKey(`weak-${name}`, [...genpkey]);
      const r: Ca = { keyPem: rootKey, certPem: makeCert(dir, `weak-${name}`, { subject: `/CN=weak-${name}`, keyPem: rootKey }) };
      // The root is what the MeshTrust and the bundle endpoint publish: a peer refuses it as a CA.
      assert.equal(caKeyProblem(new X509Certificate(r.certPem)), problem);
      const i = makeIntermediateCa(dir, `weak-${name}-inter`, r);
      assert.throws(() => loadCertificateAuthority(i.certPem + r.certPem, i.keyPem, { allowSelfSigned: false }), refusal(`chain certificate #1 has ${problem}`));
    }
    // The signing CA's own key: of a supported size, but with an exponent Go's crypto/rsa refuses.
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 0xffffffff });
    const bigE = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const bigECert = makeCert(dir, 'big-e', { subject: '/CN=big-e', keyPem: bigE, issuer: root });
    assert.throws(
      () => loadCertificateAuthority(bigECert + root.certPem, bigE, { allowSelfSigned: false }),
      refusal('CA certificate has an RSA 2048-bit key with a 32-bit public exponent; the exponent must be odd, from 3 to 2^31-1'),
    );
    // A P-521 root (which peers accept) above a P-256 intermediate still loads.
    const p521 = makeRootCa(dir, 'ok-p521', 'ec-p521');
    const underP521 = makeIntermediateCa(dir, 'ok-p521-inter', p521);
    assert.doesNotThrow(() => loadCertificateAuthority(underP521.certPem + p521.certPem, underP521.keyPem, { allowSelfSigned: false }));
  });

  it('a CA or chain certificate signed with MD5 or SHA-1 is refused naming the certificate and its signature: OpenSSL at security level 1 refuses every leaf below it (and Go SHA-1, BoringSSL MD5)', () => {
    const rsaRoot = makeRootCa(dir, 'weaksig-root', 'rsa-2048');
    for (const digest of ['sha1', 'md5']) {
      const midKey = makeKey(dir, `weaksig-${digest}`, 'ec-p256');
      const mid: Ca = { keyPem: midKey, certPem: makeCert(dir, `weaksig-${digest}`, { subject: `/CN=weaksig-${digest}`, keyPem: midKey, issuer: rsaRoot, digest }) };
      const name = digest === 'sha1' ? 'SHA-1' : 'MD5';
      // As the signing CA (with its root or without it), and as a chain certificate above it.
      for (const certPem of [mid.certPem + rsaRoot.certPem, mid.certPem]) {
        assert.throws(() => loadCertificateAuthority(certPem, midKey, { allowSelfSigned: false }), refusal(`CA certificate is signed with ${name} with RSA, which verifiers refuse (OpenSSL at its default security level, Go, BoringSSL for MD5); have it signed with SHA-256 or stronger`));
      }
      const below = makeIntermediateCa(dir, `weaksig-${digest}-below`, mid);
      assert.throws(() => loadCertificateAuthority(below.certPem + mid.certPem + rsaRoot.certPem, below.keyPem, { allowSelfSigned: false }), refusal(/^chain certificate #1 is signed with (SHA-1|MD5) with RSA, which verifiers refuse/));
      // What a peer's OpenSSL (TLS contexts default to security level 1) makes of a leaf below it.
      const leafKey = makeKey(dir, `weaksig-${digest}-leaf`, 'ec-p256');
      const leaf = makeCert(dir, `weaksig-${digest}-leaf`, {
        subject: '/CN=leaf',
        keyPem: leafKey,
        issuer: mid,
        extensions: ['basicConstraints = critical, CA:FALSE', 'keyUsage = critical, digitalSignature', 'subjectAltName = critical, URI:spiffe://td.example/w'],
      });
      const r = spawnSync('openssl', ['verify', '-auth_level', '1', '-CAfile', dir.file('weaksig-root.pem'), '-untrusted', dir.file(`weaksig-${digest}.pem`), dir.file(`weaksig-${digest}-leaf.pem`, leaf)], { encoding: 'utf8' });
      assert.notEqual(r.status, 0);
      assert.match(r.stdout + r.stderr, /CA signature digest algorithm too weak/);
    }
    // RSA-PSS with SHA-1 as its hash (what PSS parameters default to) too.
    const pssKey = makeKey(dir, 'weaksig-pss', 'ec-p256');
    const pss = makeCert(dir, 'weaksig-pss', { subject: '/CN=weaksig-pss', keyPem: pssKey, issuer: rsaRoot, digest: 'sha1', sigopt: ['rsa_padding_mode:pss'] });
    assert.match(openssl(['x509', '-in', dir.file('weaksig-pss.pem'), '-noout', '-text']), /rsassaPss[\s\S]*Hash Algorithm: sha1/);
    assert.throws(() => loadCertificateAuthority(pss + rsaRoot.certPem, pssKey, { allowSelfSigned: false }), refusal(/^CA certificate is signed with RSA-PSS with SHA-1, which verifiers refuse/));
    // A self-signed root's own signature is not checked by verifiers (it is the anchor): a SHA-1 root is no reason to refuse.
    const sha1RootKey = makeKey(dir, 'sha1-selfsigned', 'rsa-2048');
    const sha1Root: Ca = { keyPem: sha1RootKey, certPem: makeCert(dir, 'sha1-selfsigned', { subject: '/CN=sha1-selfsigned', keyPem: sha1RootKey, digest: 'sha1' }) };
    const underSha1Root = makeIntermediateCa(dir, 'sha1-selfsigned-inter', sha1Root);
    assert.doesNotThrow(() => loadCertificateAuthority(underSha1Root.certPem + sha1Root.certPem, underSha1Root.keyPem, { allowSelfSigned: false }));
  });

  it('certificate text with more certificates than a CA chain has (a CA bundle file given as the CA) is refused by its count, before each is parsed', () => {
    const bundle = inter.certPem + Array.from({ length: 200 }, () => root.certPem).join('');
    assert.throws(
      () => loadCertificateAuthority(bundle, inter.keyPem, { allowSelfSigned: false }),
      refusal('CA certificate text holds 201 certificates, more than the 10 a CA chain (the CA, its intermediates, the root) may have: is it a bundle of trusted CAs?'),
    );
    // Ten is a chain still: refused for what it is, not for its length.
    assert.throws(() => loadCertificateAuthority(inter.certPem + Array.from({ length: 9 }, () => root.certPem).join(''), inter.keyPem, { allowSelfSigned: false }), refusal(/comes after the self-signed root/));
  });

  it('a CA or chain certificate whose EC key is encoded with explicit curve parameters is refused: openssl verify -x509_strict refuses every leaf below it', () => {
    const explicitKey = (name: string): string => {
      openssl(['ecparam', '-name', 'prime256v1', '-param_enc', 'explicit', '-genkey', '-noout', '-out', dir.file(`${name}.explicit.key`)]);
      return readFileSync(dir.file(`${name}.explicit.key`), 'utf8');
    };
    const reason = 'has an EC key with explicit curve parameters (RFC 5480 allows only a named curve; openssl verify -x509_strict and Go refuse it); reissue it with the key in named-curve form (openssl pkey -ec_param_enc named_curve)';
    // As the signing CA, under a good root.
    const midKey = explicitKey('explicit-mid');
    const mid: Ca = { keyPem: midKey, certPem: makeCert(dir, 'explicit-mid', { subject: '/CN=explicit-mid', keyPem: midKey, issuer: root }) };
    const leafKey = makeKey(dir, 'explicit-mid-leaf', 'ec-p256');
    const leaf = makeCert(dir, 'explicit-mid-leaf', {
      subject: '/CN=leaf',
      keyPem: leafKey,
      issuer: mid,
      extensions: ['basicConstraints = critical, CA:FALSE', 'keyUsage = critical, digitalSignature', 'extendedKeyUsage = serverAuth', 'subjectAltName = critical, URI:spiffe://td.example/w'],
    });
    const v = opensslVerify(dir, { root: root.certPem, untrusted: mid.certPem, leafChain: leaf, purpose: 'sslserver' });
    assert.equal(v.ok, false);
    assert.match(v.output, /explicit ECC parameters/);
    assert.throws(() => loadCertificateAuthority(mid.certPem + root.certPem, midKey, { allowSelfSigned: false }), refusal(`CA certificate ${reason}`));
    // As the root above a good intermediate.
    const rootKey = explicitKey('explicit-root');
    const r: Ca = { keyPem: rootKey, certPem: makeCert(dir, 'explicit-root', { subject: '/CN=explicit-root', keyPem: rootKey }) };
    const i = makeIntermediateCa(dir, 'explicit-root-inter', r);
    assert.throws(() => loadCertificateAuthority(i.certPem + r.certPem, i.keyPem, { allowSelfSigned: false }), refusal(`chain certificate #1 ${reason}`));
  });

  it('a certificate or key whose line breaks came through as the two characters \\n (an environment variable set from JSON) is refused saying so', () => {
    const escape = (pem: string) => pem.replace(/\n/g, '\\n');
    const hint = /: its text holds "\\n" as two characters where line breaks belong; unescape them$/;
    assert.throws(() => loadCertificateAuthority(escape(inter.certPem + root.certPem), inter.keyPem, { allowSelfSigned: false }), refusal(/^CA certificate cannot be parsed: PEM block 1 is not valid base64/));
    assert.throws(() => loadCertificateAuthority(escape(inter.certPem + root.certPem), inter.keyPem, { allowSelfSigned: false }), refusal(hint));
    assert.throws(() => loadCertificateAuthority(inter.certPem + root.certPem, escape(inter.keyPem), { allowSelfSigned: false }), refusal(/^CA private key cannot be parsed: .*: its text holds/));
    // Not said of a text that is broken otherwise.
    assert.throws(() => loadCertificateAuthority(inter.certPem + root.certPem, inter.keyPem.replace(/\n[A-Za-z0-9+/]{8}/, '\n!!!!!!!!'), { allowSelfSigned: false }), refusal(/^CA private key cannot be parsed: [^"]*$/));
  });

  it('key text holding more than one private key (an old and a new one concatenated) is refused by their count, whichever comes first', () => {
    for (const keyPem of [root.keyPem + inter.keyPem, inter.keyPem + root.keyPem]) {
      assert.throws(() => loadCertificateAuthority(inter.certPem + root.certPem, keyPem, { allowSelfSigned: false }), refusal('CA private key text holds 2 private keys; give only the key of the CA certificate'));
    }
  });

  it('a CA or chain certificate whose validity OpenSSL cannot read (a year-1 NotBefore) is refused: every leaf below it failed with "format error in certificate\'s notBefore field"', async () => {
    const odd = await makeCaUntil('odd-time', new Date('3000-01-01T00:00:00Z'), { notBefore: new Date('0001-01-01T00:00:00Z') });
    assert.equal(new X509Certificate(odd.certPem).validFrom, 'Bad time value');
    assert.throws(() => loadCertificateAuthority(odd.certPem, odd.keyPem, { allowSelfSigned: true }), refusal('CA certificate has a validity OpenSSL cannot read ("Bad time value"): verifiers refuse every leaf below it; reissue it with dates from 1950 on'));
    const below = makeIntermediateCa(dir, 'odd-time-inter', odd);
    assert.throws(() => loadCertificateAuthority(below.certPem + odd.certPem, below.keyPem, { allowSelfSigned: false }), refusal(/^chain certificate #1 has a validity OpenSSL cannot read/));
  });

  describe('a chain through which no leaf could verify is refused (openssl verify agrees)', () => {
    /** A root with `extra` extensions, an intermediate under it, and an openssl-made leaf for spiffe://<td> under that. */
    const chainWith = (name: string, extra: string[], o: { rootDays?: number } = {}) => {
      const rootKey = makeKey(dir, `${name}-root`, 'ec-p256');
      const r: Ca = { keyPem: rootKey, certPem: makeCert(dir, `${name}-root`, { subject: `/CN=${name}-root`, keyPem: rootKey, extensions: [...CA_EXTENSIONS, ...extra], days: o.rootDays }) };
      const i = makeIntermediateCa(dir, `${name}-inter`, r);
      const leafKey = makeKey(dir, `${name}-leaf`, 'ec-p256');
      const leaf = (td: string) =>
        makeCert(dir, `${name}-leaf-${td}`, {
          subject: `/CN=${name}-leaf`,
          keyPem: leafKey,
          issuer: i,
          extensions: ['basicConstraints = critical, CA:FALSE', 'keyUsage = critical, digitalSignature', 'extendedKeyUsage = serverAuth', `subjectAltName = critical, URI:spiffe://${td}/w`],
        });
      const verifies = (td: string) => opensslVerify(dir, { root: r.certPem, untrusted: i.certPem, leafChain: leaf(td), purpose: 'sslserver' });
      return { root: r, inter: i, verifies };
    };

    it('a root whose path length allows no CA below it', () => {
      const c = chainWith('pathlen0', ['basicConstraints = critical, CA:TRUE, pathlen:0']);
      assert.equal(c.verifies('td.example').ok, false);
      assert.throws(
        () => loadCertificateAuthority(c.inter.certPem + c.root.certPem, c.inter.keyPem, { allowSelfSigned: false }),
        refusal(/chain certificate #1 has path length constraint 0, but 1 CA certificate\(s\) stand below it/),
      );
      const ok = chainWith('pathlen1', ['basicConstraints = critical, CA:TRUE, pathlen:1']);
      assert.equal(ok.verifies('td.example').ok, true, ok.verifies('td.example').output);
      assert.doesNotThrow(() => loadCertificateAuthority(ok.inter.certPem + ok.root.certPem, ok.inter.keyPem, { allowSelfSigned: false }));
    });

    it('a chain certificate with a critical extension TLS peers do not process, or an extendedKeyUsage without serverAuth and clientAuth', () => {
      for (const [name, extra, reason] of [
        ['critext', ['1.2.3.4.5 = critical, ASN1:UTF8String:x'], /chain certificate #1 has a critical extension 1\.2\.3\.4\.5 that TLS peers do not process/],
        ['codesign', ['extendedKeyUsage = codeSigning'], /chain certificate #1 restricts extendedKeyUsage without serverAuth and clientAuth/],
      ] as const) {
        const c = chainWith(name, [...extra]);
        assert.equal(c.verifies('td.example').ok, false, `openssl refuses it too: ${name}`);
        assert.throws(() => loadCertificateAuthority(c.inter.certPem + c.root.certPem, c.inter.keyPem, { allowSelfSigned: false }), refusal(reason));
      }
      const fine = chainWith('ekuboth', ['extendedKeyUsage = serverAuth, clientAuth', '1.2.3.4.6 = ASN1:UTF8String:not critical']);
      assert.equal(fine.verifies('td.example').ok, true, fine.verifies('td.example').output);
      assert.doesNotThrow(() => loadCertificateAuthority(fine.inter.certPem + fine.root.certPem, fine.inter.keyPem, { allowSelfSigned: false }));
    });

    it('a CA or chain certificate whose basicConstraints is not critical, or a chain certificate without keyUsage: openssl verify -x509_strict refuses every leaf through them', () => {
      const STRICT_CA = ['basicConstraints = critical, CA:TRUE', 'keyUsage = critical, keyCertSign', 'subjectKeyIdentifier = hash'];
      const LAX_BC = ['basicConstraints = CA:TRUE', 'keyUsage = critical, keyCertSign', 'subjectKeyIdentifier = hash'];
      const NO_KU = ['basicConstraints = critical, CA:TRUE', 'subjectKeyIdentifier = hash'];
      for (const [name, rootExt, interExt, reason] of [
        ['laxbc-root', LAX_BC, STRICT_CA, /^chain certificate #1 has basicConstraints CA:TRUE not marked critical/],
        ['laxbc-inter', STRICT_CA, LAX_BC, /^certificate has basicConstraints CA:TRUE not marked critical/],
        ['noku-root', NO_KU, STRICT_CA, /^chain certificate #1 has no keyUsage extension/],
      ] as const) {
        const rootKey = makeKey(dir, `${name}-root`, 'ec-p256');
        const r: Ca = { keyPem: rootKey, certPem: makeCert(dir, `${name}-root`, { subject: `/CN=${name}-root`, keyPem: rootKey, extensions: [...rootExt] }) };
        const interKey = makeKey(dir, `${name}-inter`, 'ec-p256');
        const i: Ca = { keyPem: interKey, certPem: makeCert(dir, `${name}-inter`, { subject: `/CN=${name}-inter`, keyPem: interKey, issuer: r, extensions: [...interExt] }) };
        const leafKey = makeKey(dir, `${name}-leaf`, 'ec-p256');
        const leaf = makeCert(dir, `${name}-leaf`, {
          subject: `/CN=${name}-leaf`,
          keyPem: leafKey,
          issuer: i,
          extensions: ['basicConstraints = critical, CA:FALSE', 'keyUsage = critical, digitalSignature', 'extendedKeyUsage = serverAuth', 'subjectAltName = critical, URI:spiffe://td.example/w'],
        });
        const v = opensslVerify(dir, { root: r.certPem, untrusted: i.certPem, leafChain: leaf, purpose: 'sslserver' });
        assert.equal(v.ok, false, `openssl -x509_strict refuses it too: ${name}`);
        assert.throws(() => loadCertificateAuthority(i.certPem + r.certPem, i.keyPem, { allowSelfSigned: false }), refusal(reason), name);
      }
    });

    it('a CA or chain certificate that is not self-signed and has no AuthorityKeyIdentifier: openssl verify -x509_strict refuses every leaf through it', () => {
      const r = makeRootCa(dir, 'noaki-root');
      const midKey = makeKey(dir, 'noaki-mid', 'ec-p256');
      const mid: Ca = { keyPem: midKey, certPem: makeCert(dir, 'noaki-mid', { subject: '/CN=noaki-mid', keyPem: midKey, issuer: r, extensions: [...CA_EXTENSIONS], noAuthorityKeyId: true }) };
      assert.doesNotMatch(openssl(['x509', '-in', dir.file('noaki-mid.pem'), '-noout', '-text']), /Authority Key Identifier/);
      const leafKey = makeKey(dir, 'noaki-leaf', 'ec-p256');
      const leaf = makeCert(dir, 'noaki-leaf', {
        subject: '/CN=noaki-leaf',
        keyPem: leafKey,
        issuer: mid,
        extensions: ['basicConstraints = critical, CA:FALSE', 'keyUsage = critical, digitalSignature', 'extendedKeyUsage = serverAuth', 'subjectAltName = critical, URI:spiffe://td.example/w'],
      });
      const v = opensslVerify(dir, { root: r.certPem, untrusted: mid.certPem, leafChain: leaf, purpose: 'sslserver' });
      assert.equal(v.ok, false, 'openssl -x509_strict refuses it too');
      assert.match(v.output, /Missing Authority Key Identifier/);
      // As the signing CA, and as a chain certificate above it.
      assert.throws(() => loadCertificateAuthority(mid.certPem + r.certPem, mid.keyPem, { allowSelfSigned: false }), refusal(/^CA certificate has no AuthorityKeyIdentifier extension/));
      const below = makeIntermediateCa(dir, 'noaki-below', mid);
      assert.throws(() => loadCertificateAuthority(below.certPem + mid.certPem + r.certPem, below.keyPem, { allowSelfSigned: false }), refusal(/^chain certificate #1 has no AuthorityKeyIdentifier extension/));
    });

    it('a CA with an empty subject: its leaves (empty subject, empty issuer) look self-issued and never verify, not even without -x509_strict', () => {
      const key = makeKey(dir, 'emptysubj', 'ec-p256');
      const ext = ['basicConstraints = critical, CA:TRUE', 'keyUsage = critical, keyCertSign', 'subjectKeyIdentifier = hash', 'subjectAltName = critical, URI:spiffe://td.example'];
      const certPem = makeCert(dir, 'emptysubj', { subject: '/', keyPem: key, extensions: ext });
      assert.throws(() => loadCertificateAuthority(certPem, key, { allowSelfSigned: true, trustDomain: 'td.example' }), refusal(/^CA certificate has an empty subject/));
      const leafKey = makeKey(dir, 'emptysubj-leaf', 'ec-p256');
      const leaf = makeCert(dir, 'emptysubj-leaf', {
        subject: '/',
        keyPem: leafKey,
        issuer: { certPem, keyPem: key },
        // As this server's leaves: no SubjectKeyIdentifier (optional for end-entity certificates).
        extensions: ['basicConstraints = critical, CA:FALSE', 'keyUsage = critical, digitalSignature', 'extendedKeyUsage = clientAuth', 'subjectAltName = critical, URI:spiffe://td.example/w', 'subjectKeyIdentifier = none'],
      });
      const r = spawnSync('openssl', ['verify', '-purpose', 'sslclient', '-CAfile', dir.file('emptysubj-root.pem', certPem), dir.file('emptysubj-leaf-only.pem', leaf)], { encoding: 'utf8' });
      assert.notEqual(r.status, 0, 'openssl verify (not strict) refuses such a leaf');
      assert.match(r.stdout + r.stderr, /self-signed certificate/);
    });

    it('a chain certificate whose SubjectKeyIdentifier is marked critical: OpenSSL and BoringSSL do not process it as critical, so every leaf fails (unhandled critical extension)', () => {
      const c = chainWith('skicrit', ['subjectKeyIdentifier = critical, hash']);
      assert.match(openssl(['x509', '-in', dir.file('skicrit-root.pem'), '-noout', '-text']), /Subject Key Identifier: critical/);
      const v = c.verifies('td.example');
      assert.equal(v.ok, false);
      assert.match(v.output, /unhandled critical extension/);
      assert.throws(() => loadCertificateAuthority(c.inter.certPem + c.root.certPem, c.inter.keyPem, { allowSelfSigned: false }), refusal(/^chain certificate #1 has a critical extension 2\.5\.29\.14 that TLS peers do not process/));
    });

    it('each strict-check refusal names what is wrong in words and what to reissue the certificate with', () => {
      // A critical key identifier: named, not only by its OID.
      const ski = chainWith('fixski', ['subjectKeyIdentifier = critical, hash']);
      assert.throws(
        () => loadCertificateAuthority(ski.inter.certPem + ski.root.certPem, ski.inter.keyPem, { allowSelfSigned: false }),
        refusal(/2\.5\.29\.14 .*\(subjectKeyIdentifier\).*reissue it with subjectKeyIdentifier not marked critical/),
      );
      // basicConstraints not critical, a root without keyUsage, a CA without AKI.
      const rootKey = makeKey(dir, 'fix-laxbc', 'ec-p256');
      const laxRoot: Ca = { keyPem: rootKey, certPem: makeCert(dir, 'fix-laxbc', { subject: '/CN=fix-laxbc', keyPem: rootKey, extensions: ['basicConstraints = CA:TRUE', 'keyUsage = critical, keyCertSign', 'subjectKeyIdentifier = hash'] }) };
      const underLax = makeIntermediateCa(dir, 'fix-laxbc-inter', laxRoot);
      assert.throws(() => loadCertificateAuthority(underLax.certPem + laxRoot.certPem, underLax.keyPem, { allowSelfSigned: false }), refusal(/not marked critical.*reissue it with basicConstraints=critical,CA:TRUE/));
      const noKuKey = makeKey(dir, 'fix-noku', 'ec-p256');
      const noKuRoot: Ca = { keyPem: noKuKey, certPem: makeCert(dir, 'fix-noku', { subject: '/CN=fix-noku', keyPem: noKuKey, extensions: ['basicConstraints = critical, CA:TRUE', 'subjectKeyIdentifier = hash'] }) };
      const underNoKu = makeIntermediateCa(dir, 'fix-noku-inter', noKuRoot);
      assert.throws(() => loadCertificateAuthority(underNoKu.certPem + noKuRoot.certPem, underNoKu.keyPem, { allowSelfSigned: false }), refusal(/no keyUsage extension.*reissue it with keyUsage=critical,keyCertSign,cRLSign/));
      const r = makeRootCa(dir, 'fix-noaki-root');
      const midKey = makeKey(dir, 'fix-noaki', 'ec-p256');
      const mid: Ca = { keyPem: midKey, certPem: makeCert(dir, 'fix-noaki', { subject: '/CN=fix-noaki', keyPem: midKey, issuer: r, extensions: [...CA_EXTENSIONS], noAuthorityKeyId: true }) };
      assert.throws(() => loadCertificateAuthority(mid.certPem + r.certPem, mid.keyPem, { allowSelfSigned: false }), refusal(/no AuthorityKeyIdentifier extension.*reissue it with authorityKeyIdentifier=keyid/));
    });

    it('a chain in the wrong order is named as such (the key belongs to a later certificate), and a parent without keyCertSign as what it lacks', () => {
      const c = chainWith('order', []);
      assert.throws(() => loadCertificateAuthority(c.root.certPem + c.inter.certPem, c.inter.keyPem, { allowSelfSigned: true }), refusal(/private key does not match the first certificate but chain certificate #1: order must be CA/));
      const noSign = chainWith('nosign', []);
      const parentKey = makeKey(dir, 'nosign-parent', 'ec-p256');
      const parent: Ca = { keyPem: parentKey, certPem: makeCert(dir, 'nosign-parent', { subject: '/CN=nosign-parent', keyPem: parentKey, issuer: noSign.root, extensions: ['basicConstraints = critical, CA:TRUE', 'keyUsage = critical, digitalSignature', 'subjectKeyIdentifier = hash'] }) };
      const child = makeIntermediateCa(dir, 'nosign-child', parent);
      assert.throws(() => loadCertificateAuthority(child.certPem + parent.certPem + noSign.root.certPem, child.keyPem, { allowSelfSigned: false }), refusal(/chain certificate #1 key usage does not include keyCertSign/));
    });

    it('a chain certificate that has expired or is not valid yet', () => {
      const c = chainWith('shortroot', [], { rootDays: 1 });
      const later = new Date(Date.now() + 2 * 24 * 3600_000); // the root has expired, the intermediate (30 days) has not
      assert.throws(
        () => loadCertificateAuthority(c.inter.certPem + c.root.certPem, c.inter.keyPem, { allowSelfSigned: false, now: later }),
        refusal(/chain certificate #1 expired at /),
      );
      assert.doesNotThrow(() => loadCertificateAuthority(c.inter.certPem + c.root.certPem, c.inter.keyPem, { allowSelfSigned: false }));
    });

    it('the CA is valid only as long as its whole chain: a root that expires before the intermediate ends every leaf with it', () => {
      const c = chainWith('shortroot2', [], { rootDays: 1 });
      const ca = loadCertificateAuthority(c.inter.certPem + c.root.certPem, c.inter.keyPem, { allowSelfSigned: false });
      const rootEnd = new X509Certificate(c.root.certPem).validTo;
      assert.equal(ca.notAfter.getTime(), Date.parse(rootEnd), 'the root\'s end, not the 30-day intermediate\'s');
      const leaf = issueSvidSync(ca, 'spiffe://td.example/w', 7 * 24 * 3600_000);
      assert.ok(leaf.notAfter.getTime() <= Date.parse(rootEnd), `leaf ends ${leaf.notAfter.toISOString()}, root ${rootEnd}`);
      // Within two seconds of the root's end nothing is issued (the leaf would be dead on arrival).
      assert.throws(() => issueSvidSync(ca, 'spiffe://td.example/w', 3600_000, new Date(Date.parse(rootEnd) - 1000)), refusal(/expires too soon to issue/));
      assert.throws(() => issueSvidSync(ca, 'spiffe://td.example/w', 3600_000, new Date(Date.parse(rootEnd) + 1000)), refusal(/CA certificate expired at/));
    });

    it('a CA whose URI SAN names another trust domain, as a MeshTrust would refuse it', () => {
      const keyPem = makeKey(dir, 'td-a', 'ec-p256');
      const certPem = makeCert(dir, 'td-a', { subject: '/O=Test/CN=td-a', keyPem, extensions: [...CA_EXTENSIONS, 'subjectAltName = URI:spiffe://a.example'] });
      const load = (trustDomain: string) => loadCertificateAuthority(certPem, keyPem, { allowSelfSigned: true, trustDomain });
      assert.throws(() => load('b.example'), refusal('CA certificate is the CA of trust domain "a.example" (its URI SAN), not of "b.example"'));
      assert.doesNotThrow(() => load('a.example'));
    });

    it('directory name constraints that do not permit the subject of a CA below them', () => {
      const dirName = (mode: string, o: string) => [`nameConstraints = critical, ${mode};dirName:dir_sect`, '[dir_sect]', `O = ${o}`];
      const other = chainWith('dn-other', dirName('permitted', 'Other'));
      assert.equal(other.verifies('td.example').ok, false);
      // At depth 1, the intermediate: OpenSSL checks from the top down.
      assert.match(other.verifies('td.example').output, /at 1 depth lookup: permitted subtree violation/);
      assert.throws(
        () => loadCertificateAuthority(other.inter.certPem + other.root.certPem, other.inter.keyPem, { allowSelfSigned: false, trustDomain: 'td.example' }),
        refusal('chain certificate #1 has name constraints that do not permit the subject of the CA certificate (O=Test, CN=dn-other-inter): leaves signed by the CA would not verify'),
      );
      const excluded = chainWith('dn-excluded', dirName('excluded', 'test'));
      assert.match(excluded.verifies('td.example').output, /at 1 depth lookup: excluded subtree violation/, 'excluded: names compare without regard to case');
      assert.throws(() => loadCertificateAuthority(excluded.inter.certPem + excluded.root.certPem, excluded.inter.keyPem, { allowSelfSigned: false }), refusal(/^chain certificate #1 has name constraints that do not permit the subject of the CA certificate/));
      // Permitted (in another case): loaded, and its leaves (empty subject) verify.
      const same = chainWith('dn-same', dirName('permitted', 'TEST'));
      const ca = loadCertificateAuthority(same.inter.certPem + same.root.certPem, same.inter.keyPem, { allowSelfSigned: false, trustDomain: 'td.example' });
      const svid = issueSvidSync(ca, 'spiffe://td.example/w', 3600_000);
      const v = opensslVerify(dir, { root: ca.trustPem, untrusted: ca.chainPem, leafChain: svid.certChainPem, purpose: 'sslclient' });
      assert.equal(v.ok, true, v.output);
    });

    it('name constraints that do not permit the trust domain', () => {
      const c = chainWith('nc', ['nameConstraints = critical, permitted;URI:.partner.example, excluded;URI:bad.partner.example']);
      assert.equal(c.verifies('td.example').ok, false);
      assert.equal(c.verifies('mesh.partner.example').ok, true);
      assert.equal(c.verifies('bad.partner.example').ok, false);
      const load = (trustDomain: string) => loadCertificateAuthority(c.inter.certPem + c.root.certPem, c.inter.keyPem, { allowSelfSigned: false, trustDomain });
      assert.throws(() => load('td.example'), refusal(/chain certificate #1 permits URIs only in ".partner.example", not trust domain "td.example"/));
      assert.throws(() => load('bad.partner.example'), refusal(/chain certificate #1 excludes URIs in "bad.partner.example"/));
      assert.doesNotThrow(() => load('mesh.partner.example'));
    });
  });
});
