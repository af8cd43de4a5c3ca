// The SPIFFE bundle codec for federation code. Its implementation is in src/api/spiffe-bundle.ts
// because resource validation (the bottom layer) reads bundle documents too.
export {
  decodeSpiffeBundle,
  encodeSpiffeBundle,
  readBundleDocument,
  spiffeBundleDocument,
  SpiffeBundleError,
  X509_SVID_USE,
  JWT_SVID_USE,
} from '../api/spiffe-bundle.js';
export type { BundleDocument, DecodedSpiffeBundle, EncodeSpiffeBundleInput } from '../api/spiffe-bundle.js';
