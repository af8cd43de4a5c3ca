// Public surface of the resource model.
export * from './types.js';
export { parseResources, loadResourceFile, type ParseResult } from './parse.js';
export { normaliseDocument, KUMA_API_VERSION, MESH_LABEL, NAMESPACE_LABEL, DEFAULT_MESH } from './validate.js';
export { validateFiles } from './validate-files.js';
export { serializeResource, toUniversalObject } from './serialize.js';
export { parseDuration, formatDuration } from './duration.js';
export { splitPemCertificates, isCaCertificate, derToPem } from './pem.js';
export { pemBundleProblem } from './validate-meshtrust.js';
export * from './template.js';
