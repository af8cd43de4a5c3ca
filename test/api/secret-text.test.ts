// Messages about a value given where a file path (or a URL, a flag value) is expected never echo a
// secret, and still name a path that is one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { describeSecretLike, fileReadMessage, fsErrorReason, pathForMessage, scrubSecretText, urlForMessage, valueForMessage } from '../../src/api/secret-text.js';
import { callInWorker } from '../helpers/in-worker.js';

const PEM_KEY = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
const JWT = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJkZWZhdWx0LmJhY2tlbmQtMSJ9.xOgzzKDB2y_lDTQwFlyZusv_busckcZUwg7tUlwtdhc';
// Fixed keys: the base64 test is a heuristic that misses one random key in tens of thousands,
// and a test must not fail by chance.
const STATE_KEY = createHash('sha256').update('a mesh-sds state key').digest();
const STATE_KEY_B64 = STATE_KEY.toString('base64');
const STATE_KEY_HEX = STATE_KEY.toString('hex');

test('a key, a token or a key file pasted in place of a path is described by length and look, never echoed', () => {
  const cases: [string, RegExp][] = [
    [PEM_KEY, /^\d+ characters, looks like a PEM private key$/],
    ['-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n', /looks like a PEM block$/],
    [JWT, /looks like a JWT$/],
    [`Bearer ${JWT}`, /looks like an authorization header$/],
    [STATE_KEY_B64, /^44 characters, looks like a base64 key or token$/],
    [STATE_KEY_B64.replace(/=$/, '').replace(/\+/g, '-').replace(/\//g, '_'), /looks like a base64 key or token$/],
    [STATE_KEY_HEX, /^64 characters, looks like a hex-encoded key$/],
    ['first line\nsecond line', /spans 2 lines$/],
    ['ab\u0001cd', /control characters/],
    [`/no-such-folder-here/${'a'.repeat(300)}`, /^321 characters, too long to be shown$/],
  ];
  for (const [value, described] of cases) {
    // A piece from inside the value (past a PEM header), or all of a short one.
    const fragment = value.trim().length > 30 ? value.trim().slice(8, 30) : value;
    const looks = describeSecretLike(value);
    assert.match(looks ?? 'shown', described, value);
    const path = pathForMessage(value);
    assert.ok(!path.includes(fragment), `pathForMessage echoed ${value}`);
    assert.match(path, /^<not a file path: .*; not shown>$/);
    const message = fileReadMessage('--tls-key', value, Object.assign(new Error(`ENOENT: no such file or directory, open '${value}'`), { code: 'ENOENT' }));
    assert.match(message, /^cannot read --tls-key: .*; its value is not shown \(.*\)$/);
    assert.ok(!message.includes(fragment), `fileReadMessage echoed ${value}`);
  }
  assert.equal(describeSecretLike(PEM_KEY)?.startsWith(`${PEM_KEY.length} characters`), true);
  assert.match(describeSecretLike('x'.repeat(1704)) ?? '', /^1,704 characters/, 'thousands are grouped');
});

test('a path into a folder that exists is named even when long or mixed-case (a key has no such folder), and its read error says why', () => {
  const enoent = Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
  for (const p of [`/tmp/${'a'.repeat(300)}`, `${tmpdir()}/Secrets${'X1y2Z3'.repeat(5)}CaKeyV2`, `${tmpdir()}/caKeyVersion2ForMeshProdEu1xyz`]) {
    assert.equal(pathForMessage(p), p);
    assert.equal(fileReadMessage('--tls-key', p, enoent), `cannot read --tls-key ${p}: ENOENT`);
  }
  // A base64 key with a slash names no folder that exists: still not shown.
  const key = `${'Zm9vYmFyYmF6'}/${STATE_KEY.subarray(0, 30).toString('base64')}`;
  assert.match(pathForMessage(key), /^<not a file path: /);
  // Nor one whose only slash is its first character (a random base64 key, 1 in 64): its "folder" is the root, which always exists.
  const rooted = `/${STATE_KEY.subarray(0, 32).toString('base64').replaceAll('/', 'A').slice(1)}`;
  assert.match(pathForMessage(rooted), /^<not a file path: /);
  assert.match(valueForMessage(rooted), /^<not shown: /);
});

test('ordinary paths, URLs and flag values are still named as they are', () => {
  for (const p of ['/etc/mesh-sds/state.key', '/var/run/secrets/kubernetes.io/serviceaccount/token', 'state.key', './certs/tls.key', '/run/secrets/token', '/secure/mesh-sds-state.key', 'C:\\keys\\state.key', '/tmp/mesh-sds-abc123/tok', '/tmp/mesh-sds-ro-AbC123/typo-state', '/run/secrets/mesh-sds/STATE_KEY']) {
    assert.equal(describeSecretLike(p), undefined, p);
    assert.equal(pathForMessage(p), p);
  }
  const message = fileReadMessage('--token-file', '/run/secrets/token', Object.assign(new Error("ENOENT: no such file or directory, open '/run/secrets/token'"), { code: 'ENOENT' }));
  assert.equal(message, 'cannot read --token-file /run/secrets/token: no such file or directory (ENOENT)');
  assert.equal(pathForMessage('postgres://mesh:pw@db/mesh'), 'postgres://[REDACTED]@db/mesh', 'a URL where a path belongs loses its password');
  assert.equal(valueForMessage('maybe'), '"maybe"');
  assert.equal(valueForMessage('enabled-for-the-staging-cluster-x', 32), '<not shown: 33 characters, too long to be shown>');
});

test('fs errors are reworded without the path node quotes', async () => {
  const err = await readFile(`/nonexistent/${PEM_KEY}`).catch((e: unknown) => e);
  assert.ok(String((err as Error).message).includes('PRIVATE KEY'), 'node quotes the path');
  assert.equal(fsErrorReason(err), 'no such file or directory (ENOENT)');
  const dir = await readFile('/').catch((e: unknown) => e);
  assert.equal(fsErrorReason(dir), 'illegal operation on a directory (EISDIR)');
  assert.equal(fsErrorReason(Object.assign(new Error('something else about /x'), { code: 'EIO' })), 'EIO');
  assert.equal(fsErrorReason(new Error('no code: /x')), 'cannot be read');
});

test('a URL is named without its user and password', () => {
  assert.equal(urlForMessage('mysql://mesh:s3cret-pw@db.internal:3306/mesh'), 'mysql://[REDACTED]@db.internal:3306/mesh');
  assert.equal(urlForMessage('mysql://mesh:p@ss@db/mesh'), 'mysql://[REDACTED]@db/mesh', 'an unescaped @ in the password');
  assert.equal(urlForMessage('sqlite:///var/lib/mesh.db'), 'sqlite:///var/lib/mesh.db');
});

test('scrubSecretText removes key blocks, JWTs, bearer credentials, URL passwords and signed URLs\' signatures, keeps prose, and keeps a JSON line JSON', () => {
  const line = JSON.stringify({ msg: `detail ${PEM_KEY} tail`, reason: `Bearer ${JWT}`, url: 'postgres://u:pw@h/db', cut: '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG', next: 'kept' });
  const scrubbed = scrubSecretText(line);
  const parsed = JSON.parse(scrubbed) as Record<string, string>;
  assert.equal(parsed.msg, 'detail [REDACTED]\n tail');
  assert.equal(parsed.reason, 'Bearer [REDACTED]');
  assert.equal(parsed.url, 'postgres://[REDACTED]@h/db');
  assert.equal(parsed.cut, '[REDACTED]', 'a block without its END line ends at the end of its string');
  assert.equal(parsed.next, 'kept');
  for (const prose of ['missing authorization metadata (expected "Bearer <token>")', 'a bearer token is required', 'bearer authentication failed', 'spiffe://td/ns/a/sa/b', 'serial 014cc3a517addb10468171f6d15e77c5']) {
    assert.equal(scrubSecretText(prose), prose);
  }
  assert.equal(scrubSecretText('authorization: Bearer SECRETVALUE'), 'authorization: Bearer [REDACTED]');
  assert.equal(scrubSecretText('GET /debug/proxies?access_token=SECRET&proxy=default.web-1'), 'GET /debug/proxies?access_token=[REDACTED]&proxy=default.web-1');
  assert.equal(scrubSecretText('GET /debug/proxies?proxy=default.web-1'), 'GET /debug/proxies?proxy=default.web-1');
  // A signed URL's signature grants what it names (an https_web bundle endpoint may be one).
  assert.equal(
    scrubSecretText('GET https://b.s3.amazonaws.com/td?X-Amz-Credential=AKIA%2F&X-Amz-Signature=abc123&x=1'),
    'GET https://b.s3.amazonaws.com/td?X-Amz-Credential=AKIA%2F&X-Amz-Signature=[REDACTED]&x=1',
  );
  assert.equal(scrubSecretText('https://a.blob.core.windows.net/td?sv=2022&sig=Zm9v%3D&se=1'), 'https://a.blob.core.windows.net/td?sv=2022&sig=[REDACTED]&se=1');
  assert.equal(scrubSecretText('https://storage.googleapis.com/td?X-Goog-Signature=0a1b'), 'https://storage.googleapis.com/td?X-Goog-Signature=[REDACTED]');
  assert.equal(scrubSecretText('https://x.example/td?design=1&signal=2'), 'https://x.example/td?design=1&signal=2');
});

// V8 retried `\beyJ[A-Za-z0-9_-]{4,}\.` and a URL scheme's run from every word boundary in one run:
// 40 KB of `eyJ-` (a Dataplane label value, in a "proxy gets no identity" reason) took 1 s to log.
test('scrubSecretText reads a megabyte of JWT and URL-scheme look-alikes in one pass, and still redacts what follows', async () => {
  const jwt = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln';
  const text = `label "team" value "${'eyJ-'.repeat(150_000)}/" ://@ ${'a-'.repeat(200_000)} ${jwt} https://u:pw@h/`;
  const scrubbed = (await callInWorker(new URL('../../src/api/secret-text.ts', import.meta.url), 'scrubSecretText', [text])) as string;
  assert.ok(scrubbed.endsWith(' [REDACTED] https://[REDACTED]@h/'), scrubbed.slice(-80));
  assert.equal(scrubbed.length, text.length - jwt.length - 'u:pw'.length + 2 * '[REDACTED]'.length);
});
