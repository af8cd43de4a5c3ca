// MeshIdentity rules of SPEC §1: each has an input that fails with an exact `path: message` and one that passes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { MeshIdentity } from '../../src/api/types.js';
import { assertAccepted, assertRejected, meshIdentity, meshIdentityWithCa, withField } from './helpers.js';

const CA = 'spec.provider.bundled.ca';
const bundled = (mi: MeshIdentity) => {
  assert.equal(mi.spec.provider.type, 'Bundled');
  if (mi.spec.provider.type !== 'Bundled') throw new Error('not bundled');
  return mi.spec.provider.bundled;
};

test('provider type must be Bundled or Spire', () => {
  assertRejected(withField(meshIdentity(), 'spec.provider.type', 'Vault'), 'spec.provider.type: must be one of Bundled, Spire');
  assertRejected(withField(meshIdentity(), 'spec.provider.type', undefined), 'spec.provider.type: must be one of Bundled, Spire');
  const mi = assertAccepted<MeshIdentity>(withField(meshIdentity(), 'spec.provider', { type: 'Spire', spire: {} }));
  assert.equal(mi.spec.provider.type, 'Spire');
});

test('provider is required', () => {
  assertRejected(withField(meshIdentity(), 'spec.provider', undefined), 'spec.provider: must be defined');
});

test('bundled must be defined when type is Bundled', () => {
  assertRejected(withField(meshIdentity(), 'spec.provider', { type: 'Bundled' }), 'spec.provider.bundled: must be defined when type is Bundled');
});

test('spire must be defined when type is Spire, and the other provider must not be', () => {
  assertRejected(withField(meshIdentity(), 'spec.provider', { type: 'Spire' }), 'spec.provider.spire: must be defined when type is Spire');
  assertRejected(
    withField(meshIdentity(), 'spec.provider.spire', {}),
    'spec.provider.spire: must not be defined when type is Bundled',
  );
});

test('bundled needs either a ca or autogenerate.enabled: true', () => {
  const msg = 'spec.provider.bundled: either ca or autogenerate.enabled: true must be defined';
  assertRejected(withField(meshIdentity(), 'spec.provider.bundled', {}), msg);
  assertRejected(withField(meshIdentity(), 'spec.provider.bundled.autogenerate.enabled', false), msg);
  assertAccepted(meshIdentity());
  assertAccepted(meshIdentityWithCa());
});

test('bundled must not have both a ca and autogenerate.enabled: true', () => {
  const both = withField(meshIdentityWithCa(), 'spec.provider.bundled.autogenerate', { enabled: true });
  assertRejected(both, `${CA}: must not be defined when autogenerate.enabled is true`);
});

test('a ca needs both certificate and privateKey', () => {
  assertRejected(withField(meshIdentityWithCa(), `${CA}.privateKey`, undefined), `${CA}.privateKey: must be defined`);
  assertRejected(withField(meshIdentityWithCa(), `${CA}.certificate`, undefined), `${CA}.certificate: must be defined`);
});

test('a File data source path must be absolute', () => {
  assertRejected(
    withField(meshIdentityWithCa(), `${CA}.certificate.file.path`, 'certs/ca.crt'),
    `${CA}.certificate.file.path: must be absolute`,
  );
  assertRejected(withField(meshIdentityWithCa(), `${CA}.certificate.file.path`, ''), `${CA}.certificate.file.path: must not be empty`);
  const mi = assertAccepted<MeshIdentity>(meshIdentityWithCa());
  assert.deepEqual(bundled(mi).ca?.certificate, { type: 'File', file: { path: '/etc/ca.crt' } });
});

test('data source type must be one of the four kinds', () => {
  assertRejected(
    withField(meshIdentityWithCa(), `${CA}.certificate.type`, 'Vault'),
    `${CA}.certificate.type: must be one of File, Secret, EnvVar, InsecureInline`,
  );
});

test('the sub-object matching the data source type must be present, and no other', () => {
  assertRejected(
    withField(meshIdentityWithCa(), `${CA}.certificate`, { type: 'EnvVar', file: { path: '/x' } }),
    `${CA}.certificate.file: must not be defined when type is EnvVar`,
    `${CA}.certificate.envVar: must be defined when type is EnvVar`,
  );
  assertRejected(withField(meshIdentityWithCa(), `${CA}.certificate`, { type: 'File' }), `${CA}.certificate.file: must be defined when type is File`);
});

test('an EnvVar data source needs a name', () => {
  assertRejected(
    withField(meshIdentityWithCa(), `${CA}.privateKey`, { type: 'EnvVar', envVar: { name: '' } }),
    `${CA}.privateKey.envVar.name: must not be empty`,
  );
  const mi = assertAccepted<MeshIdentity>(withField(meshIdentityWithCa(), `${CA}.privateKey`, { type: 'EnvVar', envVar: { name: 'CA_KEY' } }));
  assert.deepEqual(bundled(mi).ca?.privateKey, { type: 'EnvVar', envVar: { name: 'CA_KEY' } });
});

test('an EnvVar data source names an environment variable: a newline, a space or a leading digit is refused (it forged /readyz lines)', () => {
  for (const name of ['CA_KEY\n[+]store ok', 'CA KEY', '1CA', 'CA=KEY']) {
    assertRejected(
      withField(meshIdentityWithCa(), `${CA}.privateKey`, { type: 'EnvVar', envVar: { name } }),
      `${CA}.privateKey.envVar.name: must be an environment variable name (letters, digits, '_', '-', '.'; not starting with a digit)`,
    );
  }
  for (const name of ['ca.key', 'CA-KEY', '_ca1']) assertAccepted(withField(meshIdentityWithCa(), `${CA}.privateKey`, { type: 'EnvVar', envVar: { name } }));
});

test('an InsecureInline data source needs a value', () => {
  assertRejected(
    withField(meshIdentityWithCa(), `${CA}.privateKey`, { type: 'InsecureInline', insecureInline: {} }),
    `${CA}.privateKey.insecureInline.value: must not be empty`,
  );
  const mi = assertAccepted<MeshIdentity>(
    withField(meshIdentityWithCa(), `${CA}.certificate`, { type: 'InsecureInline', insecureInline: { value: 'PEM' } }),
  );
  assert.deepEqual(bundled(mi).ca?.certificate, { type: 'InsecureInline', insecureInline: { value: 'PEM' } });
});

test('a Secret data source must reference kind Secret by a valid name', () => {
  assertRejected(
    withField(meshIdentityWithCa(), `${CA}.certificate`, { type: 'Secret', secretRef: { kind: 'ConfigMap', name: 'ca' } }),
    `${CA}.certificate.secretRef.kind: must be one of Secret`,
  );
  assertRejected(
    withField(meshIdentityWithCa(), `${CA}.certificate`, { type: 'Secret', secretRef: { kind: 'Secret' } }),
    `${CA}.certificate.secretRef.name: must not be empty`,
  );
  const mi = assertAccepted<MeshIdentity>(
    withField(meshIdentityWithCa(), `${CA}.certificate`, { type: 'Secret', secretRef: { kind: 'Secret', name: 'ca-cert' } }),
  );
  assert.deepEqual(bundled(mi).ca?.certificate, { type: 'Secret', secretRef: { kind: 'Secret', name: 'ca-cert' } });
});

test('certificate expiry must be a valid, positive Go duration', () => {
  const path = 'spec.provider.bundled.certificateParameters.expiry';
  assertRejected(withField(meshIdentity(), path, '-1h'), `${path}: must not be negative`);
  assertRejected(withField(meshIdentity(), path, 'one day'), `${path}: must be a valid duration`);
  assertRejected(withField(meshIdentity(), path, '24'), `${path}: must be a valid duration`);
  assertRejected(withField(meshIdentity(), path, 3600), `${path}: must be a valid duration`);
  assertRejected(withField(meshIdentity(), path, '0s'), `${path}: must be greater than zero`);
  const mi = assertAccepted<MeshIdentity>(withField(meshIdentity(), path, '1h30m'));
  assert.deepEqual(bundled(mi).certificateParameters, { expiry: '1h30m', expiryMs: 5_400_000 });
});

test('certificate expiry longer than Go can hold is refused, naming the limit: its CA history time was an Invalid Date that stopped every identity computation', () => {
  const path = 'spec.provider.bundled.certificateParameters.expiry';
  for (const long of ['2562048h', '3000000000h']) {
    assertRejected(withField(meshIdentity(), path, long), `${path}: must be a valid duration of at most 2562047h47m16.854775807s (as in Go)`);
  }
  assert.equal(bundled(assertAccepted<MeshIdentity>(withField(meshIdentity(), path, '100000h'))).certificateParameters.expiryMs, 100000 * 3_600_000);
});

test('certificate expiry below 5s is refused: its leaves would be re-issued and pushed continuously', () => {
  const path = 'spec.provider.bundled.certificateParameters.expiry';
  for (const short of ['1ms', '999ms', '4.9s']) assertRejected(withField(meshIdentity(), path, short), `${path}: must be at least 5s (a leaf is re-issued at 80 % of its lifetime)`);
  assert.equal(bundled(assertAccepted<MeshIdentity>(withField(meshIdentity(), path, '5s'))).certificateParameters.expiryMs, 5000);
});

test('spire agent timeout must be a valid, non-negative duration', () => {
  const spire = (timeout: unknown) => withField(meshIdentity(), 'spec.provider', { type: 'Spire', spire: { agent: { timeout } } });
  assertRejected(spire('soon'), 'spec.provider.spire.agent.timeout: must be a valid duration');
  assertRejected(spire('-1s'), 'spec.provider.spire.agent.timeout: must not be negative');
  const mi = assertAccepted<MeshIdentity>(spire('500ms'));
  assert.deepEqual(mi.spec.provider, { type: 'Spire', spire: { agent: { timeout: '500ms', timeoutMs: 500 } } });
});

test('meshTrustCreation must be Enabled or Disabled', () => {
  assertRejected(
    withField(meshIdentity(), 'spec.provider.bundled.meshTrustCreation', 'Maybe'),
    'spec.provider.bundled.meshTrustCreation: must be one of Enabled, Disabled',
  );
  const mi = assertAccepted<MeshIdentity>(withField(meshIdentity(), 'spec.provider.bundled.meshTrustCreation', 'Disabled'));
  assert.equal(bundled(mi).meshTrustCreation, 'Disabled');
});

test('insecureAllowSelfSigned and autogenerate.enabled must be booleans', () => {
  assertRejected(
    withField(meshIdentity(), 'spec.provider.bundled.insecureAllowSelfSigned', 'yes'),
    'spec.provider.bundled.insecureAllowSelfSigned: must be a boolean',
  );
  assertRejected(
    withField(meshIdentity(), 'spec.provider.bundled.autogenerate.enabled', 'true'),
    'spec.provider.bundled.autogenerate.enabled: must be a boolean',
    'spec.provider.bundled: either ca or autogenerate.enabled: true must be defined',
  );
});

test('defaults: spiffeID templates, meshTrustCreation, insecureAllowSelfSigned, expiry', () => {
  const mi = assertAccepted<MeshIdentity>(meshIdentity());
  assert.deepEqual(mi.spec.spiffeID, {
    trustDomain: '{{ .Mesh }}.{{ .Zone }}.mesh.local',
    path: '/ns/{{ .Namespace }}/sa/{{ .ServiceAccount }}',
  });
  assert.deepEqual(bundled(mi), {
    meshTrustCreation: 'Enabled',
    insecureAllowSelfSigned: false,
    autogenerate: { enabled: true },
    certificateParameters: { expiry: '24h', expiryMs: 86_400_000 },
  });
  const spire = assertAccepted<MeshIdentity>(withField(meshIdentity(), 'spec.provider', { type: 'Spire', spire: {} }));
  assert.deepEqual(spire.spec.provider, { type: 'Spire', spire: { agent: { timeout: '1s', timeoutMs: 1000 } } });
  const empty = assertAccepted<MeshIdentity>(withField(meshIdentity(), 'spec.spiffeID', { trustDomain: '', path: '' }));
  assert.deepEqual(empty.spec.spiffeID, mi.spec.spiffeID, 'empty templates mean the defaults, as in Kuma');
});

test('selector: absent stays absent, absent dataplane stays absent, dataplane: {} matches all', () => {
  const none = assertAccepted<MeshIdentity>(withField(meshIdentity(), 'spec.selector', undefined));
  assert.equal(none.spec.selector, undefined);
  const noDp = assertAccepted<MeshIdentity>(withField(meshIdentity(), 'spec.selector', {}));
  assert.deepEqual(noDp.spec.selector, {});
  assert.equal(noDp.spec.selector?.dataplane, undefined);
  const all = assertAccepted<MeshIdentity>(withField(meshIdentity(), 'spec.selector', { dataplane: {} }));
  assert.deepEqual(all.spec.selector, { dataplane: { matchLabels: {} } });
  const some = assertAccepted<MeshIdentity>(meshIdentity());
  assert.deepEqual(some.spec.selector, { dataplane: { matchLabels: { app: 'web' } } });
});

test('matchLabels values must be strings', () => {
  assertRejected(
    withField(meshIdentity(), 'spec.selector.dataplane.matchLabels', { version: 1 }),
    'spec.selector.dataplane.matchLabels["version"]: must be a string',
  );
  assertRejected(
    withField(meshIdentity(), 'spec.selector.dataplane.matchExpressions', []),
    'spec.selector.dataplane.matchExpressions: unknown field',
  );
});

test('spiffeID path: unknown template variables are named', () => {
  assertRejected(withField(meshIdentity(), 'spec.spiffeID.path', '/ns/{{ .Foo }}'), 'spec.spiffeID.path: unknown template variable .Foo');
  for (const ok of [
    '/{{ .Mesh }}/{{ .Zone }}/{{ .TrustDomain }}/{{ .Namespace }}/{{ .ServiceAccount }}/{{ .Workload }}',
    '/team/{{ label "team" }}/{{.Workload}}',
    '/workload/{{- .Workload -}}',
    '/static/path',
  ]) {
    const mi = assertAccepted<MeshIdentity>(withField(meshIdentity(), 'spec.spiffeID.path', ok));
    assert.equal(mi.spec.spiffeID.path, ok);
  }
});

test('spiffeID trustDomain may use only .Mesh, .Zone and label', () => {
  assertRejected(
    withField(meshIdentity(), 'spec.spiffeID.trustDomain', '{{ .Namespace }}.mesh.local'),
    'spec.spiffeID.trustDomain: template variable .Namespace is not allowed here (allowed: .Mesh, .Zone, label)',
  );
  assertRejected(withField(meshIdentity(), 'spec.spiffeID.trustDomain', '{{ .Foo }}.local'), 'spec.spiffeID.trustDomain: unknown template variable .Foo');
  const perRegion = withField(meshIdentity(), 'spec.spiffeID.trustDomain', '{{ label "region" }}.{{ .Mesh }}.example.org');
  assertAccepted(withField(perRegion, 'spec.provider', { type: 'Spire', spire: {} }));
});

test('a trust domain that depends on a label is refused with the Bundled provider, naming why', () => {
  assertRejected(
    withField(meshIdentity(), 'spec.spiffeID.trustDomain', '{{ label "region" }}.{{ .Mesh }}.example.org'),
    'spec.spiffeID.trustDomain: a {{ label }} is not supported with the Bundled provider: one MeshIdentity issues for one trust domain (its CA and its MeshTrust); use one MeshIdentity per trust domain, selecting its dataplanes by that label',
  );
});

test('spiffeID templates must be syntactically valid', () => {
  assertRejected(withField(meshIdentity(), 'spec.spiffeID.path', '/ns/{{ .Namespace'), 'spec.spiffeID.path: invalid template: unclosed action');
  assertRejected(
    withField(meshIdentity(), 'spec.spiffeID.path', '/x/{{ printf "%s" .Mesh }}'),
    'spec.spiffeID.path: invalid template: unsupported action "{{ printf "%s" .Mesh }}"',
  );
  assertRejected(withField(meshIdentity(), 'spec.spiffeID.path', '/x/{{ label "" }}'), 'spec.spiffeID.path: invalid template: label key must not be empty');
});

test('a label key in a spiffeID template must not hold control characters (no label can have one, and the reason would carry them to terminals)', () => {
  assertRejected(
    withField(meshIdentity(), 'spec.spiffeID.path', '/x/{{ label "app\u001b]0;owned\u0007" }}'),
    'spec.spiffeID.path: invalid template: label key must not hold control characters (U+001B at 3)',
  );
  assertRejected(
    withField(meshIdentity(), 'spec.spiffeID.path', '/x/{{ label `a\u009b2J` }}'),
    'spec.spiffeID.path: invalid template: label key must not hold control characters (U+009B at 1)',
  );
});

test('spiffeID path must start with / and be a valid SPIFFE path when literal', () => {
  assertRejected(withField(meshIdentity(), 'spec.spiffeID.path', 'ns/default'), 'spec.spiffeID.path: must start with /');
  assertRejected(withField(meshIdentity(), 'spec.spiffeID.path', '{{ .Namespace }}/x'), 'spec.spiffeID.path: must start with /');
  assertRejected(withField(meshIdentity(), 'spec.spiffeID.path', '/ns//x'), 'spec.spiffeID.path: must not contain empty segments or end with /');
  assertRejected(withField(meshIdentity(), 'spec.spiffeID.path', '/ns/../x'), 'spec.spiffeID.path: must not contain . or .. segments');
});

test('a spiffeID path with variables is rejected when no value of them can make it a SPIFFE path', () => {
  // A variable or label renders to one non-empty segment part, so the literal text alone decides these.
  const problem = 'spec.spiffeID.path: must not contain empty segments or end with /';
  assertRejected(withField(meshIdentity(), 'spec.spiffeID.path', '/ns/{{ .Namespace }}/sa/{{ .ServiceAccount }}/'), problem);
  assertRejected(withField(meshIdentity(), 'spec.spiffeID.path', '/ns//{{ .Namespace }}'), problem);
  assertRejected(withField(meshIdentity(), 'spec.spiffeID.path', '/{{ label "app" }}/../x'), 'spec.spiffeID.path: must not contain . or .. segments');
  // A segment a value shares with literal text is the value's to make valid.
  assertAccepted(withField(meshIdentity(), 'spec.spiffeID.path', '/ns/{{ .Namespace }}./x.{{ .Workload }}'));
  assertAccepted(withField(meshIdentity(), 'spec.spiffeID.path', '/{{ .Namespace }}/{{ .Workload }}'));
});

test('a literal spiffeID trustDomain must be lowercase SPIFFE characters', () => {
  assertRejected(
    withField(meshIdentity(), 'spec.spiffeID.trustDomain', 'Internal.KongAir.com'),
    "spec.spiffeID.trustDomain: must contain only lowercase letters, digits, '.', '-' and '_'",
  );
  assertAccepted(withField(meshIdentity(), 'spec.spiffeID.trustDomain', 'internal.kongair.com'));
});

test('misspelled fields anywhere in the spec are unknown fields naming their path', () => {
  assertRejected(withField(meshIdentity(), 'spec.spiffeID.trustDomian', 'x.org'), 'spec.spiffeID.trustDomian: unknown field');
  assertRejected(withField(meshIdentity(), 'spec.selectr', {}), 'spec.selectr: unknown field');
  assertRejected(
    withField(meshIdentity(), 'spec.provider.bundled.certificateParameters.expiri', '1h'),
    'spec.provider.bundled.certificateParameters.expiri: unknown field',
  );
});

test('several problems in one document are all reported', () => {
  const obj = withField(
    withField(meshIdentity(), 'spec.spiffeID.path', '/{{ .Foo }}'),
    'spec.provider.bundled.certificateParameters.expiry',
    '-5m',
  );
  assertRejected(
    obj,
    'spec.spiffeID.path: unknown template variable .Foo',
    'spec.provider.bundled.certificateParameters.expiry: must not be negative',
  );
});

test('a literal trust domain is at most 253 characters, as a MeshTrust allows', () => {
  const td = (n: number) => `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(n - 192)}`;
  assertAccepted(withField(meshIdentity(), 'spec.spiffeID.trustDomain', td(253)));
  assertRejected(withField(meshIdentity(), 'spec.spiffeID.trustDomain', td(254)), 'spec.spiffeID.trustDomain: must not be longer than 253 characters');
  assertRejected(withField(meshIdentity(), 'spec.spiffeID.trustDomain', td(255)), 'spec.spiffeID.trustDomain: must not be longer than 253 characters');
});
