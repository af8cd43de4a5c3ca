// `validate` loads a MeshIdentity's CA when both halves are inline (InsecureInline), as the server
// will: a CA the server refuses is then refused here too, with the same reason. Other sources
// (files, environment variables, Secrets) may differ between this machine and the server's.
import type { Resource } from '../api/types.js';
import { loadCertificateAuthority } from '../pki/ca.js';

export function inlineCaProblem(r: Resource): { path: string; message: string } | undefined {
  if (r.kind !== 'MeshIdentity' || r.spec.provider.type !== 'Bundled') return undefined;
  const bundled = r.spec.provider.bundled;
  const ca = bundled.ca;
  if (ca?.certificate.type !== 'InsecureInline' || ca.privateKey.type !== 'InsecureInline') return undefined;
  try {
    loadCertificateAuthority(ca.certificate.insecureInline.value, ca.privateKey.insecureInline.value, { allowSelfSigned: bundled.insecureAllowSelfSigned });
    return undefined;
  } catch (e) {
    return { path: 'spec.provider.bundled.ca', message: (e as Error).message };
  }
}
