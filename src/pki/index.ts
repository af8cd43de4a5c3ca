export type { CertificateAuthority, IssuedSvid, KeyAlgorithm } from './types.js';
export { CaError } from './errors.js';
export { loadCertificateAuthority, keyAlgorithmOf, type LoadCaOptions } from './ca.js';
export { generateCertificateAuthority, type GenerateCaOptions, type GeneratedCa } from './generate-ca.js';
export { issueSvidSync, leafKeyAlgorithm, NOT_BEFORE_SKEW_MS } from './leaf.js';
export { SvidIssuer, type SvidIssuerOptions } from './issuer.js';
export { resolveDataSource, DataSourceError, type DataSourceContext } from './data-source.js';
