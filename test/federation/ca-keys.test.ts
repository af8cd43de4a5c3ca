// The key policy for CAs a remote bundle carries (fetched or bootstrap): RSA of at least 2048
// bits, EC on P-256/P-384/P-521, or Ed25519. CAs made by the openssl CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { acceptBundle } from '../../src/federation/accept.js';
import { encodeSpiffeBundle } from '../../src/federation/bundle.js';
import { FederationFailure } from '../../src/federation/fetch.js';
import { openssl } from '../helpers/openssl.js';
import { assertAccepted, assertRejected } from '../api/helpers.js';
import { unreadableTimesCa } from './remote.js';

const TD = 'zone-b.test';

/** A self-signed CA of `TD` whose key openssl makes with these `genpkey` arguments. */
function caWithKey(genpkey: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-cakey-'));
  try {
    const key = join(dir, 'ca.key');
    const crt = join(dir, 'ca.crt');
    openssl(['genpkey', ...genpkey, '-out', key]);
    openssl([
      'req', '-x509', '-new', '-key', key, '-out', crt, '-subj', '/O=Test/CN=key-policy', '-days', '30',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      '-addext', `subjectAltName=URI:spiffe://${TD}`,
    ]);
    return readFileSync(crt, 'utf8');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const rsa = (bits: number) => caWithKey(['-algorithm', 'RSA', '-pkeyopt', `rsa_keygen_bits:${bits}`]);
const ec = (curve: string) => caWithKey(['-algorithm', 'EC', '-pkeyopt', `ec_paramgen_curve:${curve}`]);

function refusal(text: string): FederationFailure {
  try {
    acceptBundle(text, TD, undefined);
  } catch (e) {
    if (e instanceof FederationFailure) return e;
    throw e;
  }
  assert.fail('accepted');
}

const KINDS = 'a CA key must be RSA (at least 2048 bits), EC on P-256, P-384 or P-521, or Ed25519';

test('a fetched bundle with an RSA CA under 2048 bits, a secp256k1 or an Ed448 CA is refused naming the CA and its key; RSA-2048, P-256, P-384, P-521 and Ed25519 CAs are accepted', () => {
  const good = ec('P-256');
  const weak: Array<[string, string]> = [
    [rsa(512), 'an RSA 512-bit key; at least 2048 bits are required'],
    [rsa(1024), 'an RSA 1024-bit key; at least 2048 bits are required'],
    [ec('secp256k1'), 'an EC key on curve secp256k1; the curve must be P-256, P-384 or P-521'],
    [caWithKey(['-algorithm', 'ED448']), `a key of type Ed448; ${KINDS}`],
  ];
  for (const [pem, problem] of weak) {
    const alone = refusal(encodeSpiffeBundle({ cas: [pem], sequence: 2 }));
    assert.equal(alone.reason, 'unacceptable_ca_key');
    assert.equal(alone.message, `CA 1 of 1 has ${problem}`);
    // Beside a good CA it still spoils the bundle: one weak anchor is enough to forge identities.
    assert.equal(refusal(encodeSpiffeBundle({ cas: [good, pem], sequence: 2 })).message, `CA 2 of 2 has ${problem}`);
  }
  const fine = [rsa(2048), good, ec('P-384'), ec('P-521'), caWithKey(['-algorithm', 'ED25519'])];
  assert.equal(acceptBundle(encodeSpiffeBundle({ cas: fine, sequence: 2 }), TD, undefined).caPems.length, fine.length);
});

/** A ClusterFederatedTrustDomain of TD whose bootstrap bundle is `bundle`. */
const cftd = (bundle: string) => ({
  type: 'ClusterFederatedTrustDomain',
  name: 'zone-b',
  spec: {
    trustDomain: TD,
    bundleEndpointURL: `https://127.0.0.1:44443/${TD}`,
    bundleEndpointProfile: { type: 'https_spiffe', endpointSPIFFEID: `spiffe://${TD}/mesh-sds/bundle-endpoint` },
    trustDomainBundle: bundle,
  },
});

test('a bootstrap bundle is held to the same CA key policy at validation, as PEM or as a SPIFFE bundle', () => {
  const good = ec('P-256');
  const weak = rsa(1024);
  for (const bundle of [good + weak, encodeSpiffeBundle({ cas: [good, weak] })]) {
    assertRejected(cftd(bundle), 'spec.trustDomainBundle: certificate 2 has an RSA 1024-bit key; at least 2048 bits are required');
  }
  assertAccepted(cftd(encodeSpiffeBundle({ cas: [good, ec('P-521')] })));
});

test('a bootstrap bundle with a CA whose validity cannot be read is refused at validation, as PEM or as a SPIFFE bundle (it was trusted in every mesh until the first fetch)', async () => {
  const good = ec('P-256');
  const unreadable = await unreadableTimesCa('zone-b-unreadable');
  for (const bundle of [good + unreadable, encodeSpiffeBundle({ cas: [good, unreadable] })]) {
    assertRejected(cftd(bundle), 'spec.trustDomainBundle: certificate 2 has a validity that cannot be read');
  }
});

test('an RSA CA with a public exponent above 2^31-1 is refused naming it (each verification with it cost as much as a signing: 5.3 ms instead of 0.2 ms for RSA-3072, for every CA, every mesh and every trust change); e = 65537 and e = 3 are accepted', () => {
  // A 1,500-bit exponent on a 2048-bit modulus (OpenSSL allows any exponent up to 3072-bit moduli).
  const e = (1n << 1499n) | 1n | (12345n << 100n);
  const big = caWithKey(['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-pkeyopt', `rsa_keygen_pubexp:${e}`]);
  const f = refusal(encodeSpiffeBundle({ cas: [ec('P-256'), big], sequence: 2 }));
  assert.equal(f.reason, 'unacceptable_ca_key');
  assert.equal(f.message, 'CA 2 of 2 has an RSA 2048-bit key with a 1500-bit public exponent; the exponent must be odd, from 3 to 2^31-1');
  // Just past the bound, and the bootstrap bundle too.
  const past = caWithKey(['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-pkeyopt', `rsa_keygen_pubexp:${2 ** 31 + 1}`]);
  assert.equal(refusal(encodeSpiffeBundle({ cas: [past], sequence: 2 })).message, 'CA 1 of 1 has an RSA 2048-bit key with a 32-bit public exponent; the exponent must be odd, from 3 to 2^31-1');
  assertRejected(cftd(past), 'spec.trustDomainBundle: certificate 1 has an RSA 2048-bit key with a 32-bit public exponent; the exponent must be odd, from 3 to 2^31-1');
  const small = caWithKey(['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-pkeyopt', 'rsa_keygen_pubexp:3']);
  assert.equal(acceptBundle(encodeSpiffeBundle({ cas: [small, rsa(2048)], sequence: 2 }), TD, undefined).caPems.length, 2);
});
