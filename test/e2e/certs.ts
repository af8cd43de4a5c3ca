// Certificates the mesh did not issue, made by the openssl CLI: a SPIFFE leaf signed by any CA
// (the partner's, or a stranger's), for the "who gets in" checks.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCa, openssl, type TestCa } from '../helpers/openssl.js';

export { makeCa, type TestCa };

export interface TestLeaf {
  certPem: string;
  keyPem: string;
}

/** An ECDSA P-256 leaf for `spiffeId` signed by `ca`, shaped like an SVID (empty subject, critical URI SAN). */
export function issueLeaf(ca: TestCa, spiffeId: string, days = 2): TestLeaf {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-e2e-leaf-'));
  try {
    const p = (f: string) => join(dir, f);
    writeFileSync(p('ca.crt'), ca.certPem);
    writeFileSync(p('ca.key'), ca.keyPem, { mode: 0o600 });
    writeFileSync(
      p('ext.cnf'),
      [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature,keyAgreement',
        'extendedKeyUsage=serverAuth,clientAuth',
        `subjectAltName=critical,URI:${spiffeId}`,
        'authorityKeyIdentifier=keyid',
        'subjectKeyIdentifier=hash',
        '',
      ].join('\n'),
    );
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', p('leaf.key')]);
    openssl(['req', '-new', '-key', p('leaf.key'), '-subj', '/', '-out', p('leaf.csr')]);
    openssl([
      'x509', '-req', '-in', p('leaf.csr'), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial',
      '-days', String(days), '-extfile', p('ext.cnf'), '-out', p('leaf.crt'),
    ]);
    return { certPem: readFileSync(p('leaf.crt'), 'utf8'), keyPem: readFileSync(p('leaf.key'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
