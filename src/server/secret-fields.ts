// Which field names hold secrets, wherever a structure is shown: log lines (logger.ts) and the admin
// /debug pages (admin.ts) drop the same fields by one rule.

/** Field names (lower case, `-` and `_` left out) whose value is secret wherever they appear. */
const SECRET_NAMES: ReadonlySet<string> = new Set(['key', 'pem', 'secret', 'token', 'password', 'passwd', 'passphrase', 'authorization', 'bearer', 'jwt', 'cookie']);
/** Endings that make a name secret: accessToken, proxy-authorization, client_secret, dbPassword, privateKeyPem. */
const SECRET_ENDINGS: readonly string[] = ['token', 'authorization', 'password', 'passwd', 'passphrase', 'secret', 'cookie', 'jwt', 'keypem', 'privatekey'];
/**
 * A name ending in "key" holds a key (caKey, macKey, signingKey, apiKey, tlsKey) unless it is one of
 * these, which name or identify something: the state entry a warning is about (`stateKey`), a
 * resource, a proxy, a map entry. Names ending otherwise (keyId, stateKeyId, keyFile) are readable.
 */
const NAMING_KEY_PREFIXES: ReadonlySet<string> = new Set([
  'state', 'resource', 'proxy', 'public', 'pub', 'node', 'dataplane', 'cache', 'map', 'spec', 'desired', 'history',
  'sort', 'partition', 'lookup', 'primary', 'foreign', 'group', 'object', 'row', 'index', 'idempotency', 'label', 'route', 'metric',
]);

function secretFieldName(name: string): boolean {
  const n = name.toLowerCase().replace(/[-_]/g, '');
  if (SECRET_NAMES.has(n)) return true;
  for (const ending of SECRET_ENDINGS) if (n.endsWith(ending)) return true;
  if (!n.endsWith('key')) return false;
  const prefix = n.slice(0, -3);
  return !NAMING_KEY_PREFIXES.has(prefix) && !prefix.endsWith('public'); // ecPublicKey
}

/** secretFieldName per name seen: a log line's few field names are looked up, not matched. Bounded (header names come from peers). */
const secretNameCache = new Map<string, boolean>();
const MAX_CACHED_NAMES = 4096;

/** Whether a field (log line, /debug) named `name` holds a secret and is left out. */
export function isSecretField(name: string): boolean {
  let secret = secretNameCache.get(name);
  if (secret === undefined) {
    secret = secretFieldName(name);
    if (secretNameCache.size < MAX_CACHED_NAMES) secretNameCache.set(name, secret);
  }
  return secret;
}
