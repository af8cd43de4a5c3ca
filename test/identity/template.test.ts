import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderTemplate, TemplateError } from '../../src/identity/template.js';
import { computeSpiffeId, identityTrustDomain } from '../../src/identity/spiffe.js';
import { meshIdentity } from '../helpers/resources.js';

const labels = { 'k8s.kuma.io/namespace': 'shop', 'k8s.kuma.io/service-account': 'cart', app: 'cart', 'kuma.io/workload': 'cart-wl' };
const ctx = { mesh: 'default', zone: 'east', labels };

test('template variables and label lookups render in place', () => {
  const cases: [string, string][] = [
    ['{{ .Mesh }}.{{ .Zone }}.mesh.local', 'default.east.mesh.local'],
    ['{{.Mesh}}', 'default'],
    ['/ns/{{ .Namespace }}/sa/{{ .ServiceAccount }}', '/ns/shop/sa/cart'],
    ['/app/{{ label "app" }}', '/app/cart'],
    ['/workload/{{ .Workload }}', '/workload/cart-wl'],
    ['/static', '/static'],
  ];
  for (const [tpl, want] of cases) assert.equal(renderTemplate(tpl, ctx), want, tpl);
});

test('the workload claim of a token takes precedence over the label', () => {
  assert.equal(renderTemplate('/w/{{ .Workload }}', { ...ctx, workload: 'from-token' }), '/w/from-token');
});

test('a missing label is an error naming the label, never an empty segment', () => {
  assert.throws(() => renderTemplate('/{{ label "tier" }}', ctx), (e: Error) => e instanceof TemplateError && e.message === 'label "tier" not found');
  assert.throws(() => renderTemplate('/{{ .Workload }}', { ...ctx, labels: {} }), /workload not found/);
  assert.throws(() => renderTemplate('/{{ .Namespace }}', { ...ctx, labels: {} }), /label "k8s.kuma.io\/namespace" not found/);
});

test('a value with "/" is an error naming it: one value never adds path segments of its choosing', () => {
  assert.throws(
    () => renderTemplate('/team/{{ label "team" }}/app', { ...ctx, labels: { ...labels, team: 'billing/admin' } }),
    (e: Error) => e instanceof TemplateError && /^label "team" value "billing\/admin" contains "\/"/.test(e.message),
  );
  assert.throws(() => renderTemplate('/w/{{ .Workload }}', { ...ctx, workload: 'a/b' }), /\.Workload value "a\/b" contains "\/"/);
  assert.throws(() => renderTemplate('/sa/{{ .ServiceAccount }}', { ...ctx, labels: { ...labels, 'k8s.kuma.io/service-account': '../admin' } }), /contains "\/"/);
});

test('unknown variables and actions are rejected', () => {
  assert.throws(() => renderTemplate('{{ .Foo }}', ctx), /unknown template variable \.Foo/);
  assert.throws(() => renderTemplate('{{ printf "x" }}', ctx), /unsupported action/);
  assert.throws(() => renderTemplate('/a/{{ .Mesh', ctx), /unclosed action/);
});

test('computeSpiffeId applies the default templates and validates the result', () => {
  const r = computeSpiffeId(meshIdentity('id'), { mesh: 'default', labels }, 'east');
  assert.deepEqual(r, { ok: true, spiffeId: 'spiffe://default.east.mesh.local/ns/shop/sa/cart', trustDomain: 'default.east.mesh.local' });
});

test('computeSpiffeId rejects a proxy lacking a label the template needs', () => {
  const r = computeSpiffeId(meshIdentity('id', { path: '/x/{{ label "version" }}' }), { mesh: 'default', labels }, 'east');
  assert.deepEqual(r, { ok: false, reason: 'label "version" not found' });
});

test('computeSpiffeId rejects a result that is not a valid SPIFFE ID', () => {
  const upper = computeSpiffeId(meshIdentity('id', { trustDomain: 'Example.COM' }), { mesh: 'default', labels }, 'east');
  assert.equal(upper.ok, false);
  const dots = computeSpiffeId(meshIdentity('id', { path: '/a/../b' }), { mesh: 'default', labels }, 'east');
  assert.equal(dots.ok, false);
});

test('a rendered trust domain is at most 253 characters, as a MeshTrust allows', () => {
  // Literal text of n - 8 characters, then ".default" (the rendered .Mesh): n characters in all.
  const tpl = (n: number) => `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(n - 192 - 8)}.{{ .Mesh }}`;
  const mi = (n: number) => meshIdentity('id', { trustDomain: tpl(n) });
  assert.equal(computeSpiffeId(mi(253), { mesh: 'default', labels }, 'east').ok, true);
  assert.equal(identityTrustDomain(mi(253), 'east').ok, true);
  for (const n of [254, 255]) {
    const r = computeSpiffeId(mi(n), { mesh: 'default', labels }, 'east');
    assert.equal(r.ok, false, `${n}`);
    assert.match(r.ok ? '' : r.reason, /longer than 253 characters/);
    const t = identityTrustDomain(mi(n), 'east');
    assert.match(t.ok ? '' : t.reason, /longer than 253 characters/);
  }
});

test('{{ label "kuma.io/mesh" }} renders the mesh', () => {
  assert.equal(renderTemplate('/mesh/{{ label "kuma.io/mesh" }}/sa/{{ .ServiceAccount }}', ctx), '/mesh/default/sa/cart');
});
