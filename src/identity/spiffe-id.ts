// SPIFFE ID syntax per the SPIFFE-ID standard (§2), with go-spiffe's wording for the errors.

export const SPIFFE_SCHEME_PREFIX = 'spiffe://';
export const SPIFFE_ID_MAX_BYTES = 2048;

export type ParsedSpiffeId = { trustDomain: string; path: string } | { error: string };

const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const PATH_SEGMENT = /^[A-Za-z0-9._-]+$/;

/** Why `td` is not a valid trust domain name, or undefined when it is. */
export function trustDomainProblem(td: string): string | undefined {
  if (td === '') return 'trust domain is missing';
  if (!TRUST_DOMAIN.test(td)) {
    return 'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores';
  }
  return undefined;
}

/** Why `path` is not a valid SPIFFE ID path ('' or `/seg/seg…`), or undefined when it is. */
export function spiffePathProblem(path: string): string | undefined {
  if (path === '') return undefined;
  if (!path.startsWith('/')) return 'path must have a leading slash';
  const segments = path.slice(1).split('/');
  for (const [i, seg] of segments.entries()) {
    if (seg === '') return i === segments.length - 1 ? 'path cannot have a trailing slash' : 'path cannot contain empty segments';
    if (seg === '.' || seg === '..') return 'path cannot contain dot segments';
    if (!PATH_SEGMENT.test(seg)) return 'path segment characters are limited to letters, numbers, dots, dashes, and underscores';
  }
  return undefined;
}

/** Splits `spiffe://<trust-domain>[/path]`; path is '' for a bare trust domain ID. */
export function parseSpiffeId(id: string): ParsedSpiffeId {
  if (id === '') return { error: 'cannot be empty' };
  if (Buffer.byteLength(id, 'utf8') > SPIFFE_ID_MAX_BYTES) return { error: `must not be longer than ${SPIFFE_ID_MAX_BYTES} bytes` };
  if (!id.startsWith(SPIFFE_SCHEME_PREFIX)) return { error: 'scheme is missing or invalid' };
  const rest = id.slice(SPIFFE_SCHEME_PREFIX.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? '' : rest.slice(slash);
  // Port, userinfo, query and fragment all fail the character rules below.
  const error = trustDomainProblem(trustDomain) ?? spiffePathProblem(path);
  return error ? { error } : { trustDomain, path };
}

export function isValidSpiffeId(id: string): boolean {
  return !('error' in parseSpiffeId(id));
}
