// SPIFFE ID templates: the Go-template subset Kuma accepts, and rendering with labels and variables.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_PATH_TEMPLATE,
  DEFAULT_TRUST_DOMAIN_TEMPLATE,
  parseSpiffeTemplate,
  renderSpiffeTemplate,
  spiffePathProblem,
  trustDomainProblem,
  TRUST_DOMAIN_VARIABLES,
} from '../../src/api/template.js';
import { callInWorker } from '../helpers/in-worker.js';

const render = (tpl: string, vars: Record<string, string>, labels: Record<string, string> = {}) => {
  const p = parseSpiffeTemplate(tpl);
  assert.equal(p.error, undefined);
  return renderSpiffeTemplate(p.parts, { vars, labels });
};

test('renders the default templates', () => {
  assert.deepEqual(render(DEFAULT_TRUST_DOMAIN_TEMPLATE, { Mesh: 'default', Zone: 'zone-1' }), { value: 'default.zone-1.mesh.local' });
  assert.deepEqual(render(DEFAULT_PATH_TEMPLATE, { Namespace: 'shop', ServiceAccount: 'web' }), { value: '/ns/shop/sa/web' });
});

test('renders labels, spacing variants and trim markers', () => {
  assert.deepEqual(render('/{{label "app"}}/{{ label `kuma.io/zone` }}', {}, { app: 'web', 'kuma.io/zone': 'z1' }), { value: '/web/z1' });
  assert.deepEqual(render('/a/ {{- .Workload -}} /b', { Workload: 'w' }), { value: '/a/w/b' });
  assert.deepEqual(render('/{{.Mesh}}', { Mesh: 'm' }), { value: '/m' });
});

test('a missing label or variable is an error naming it', () => {
  assert.deepEqual(render('/{{ label "team" }}', {}, {}), { error: 'label "team" not found' });
  assert.deepEqual(render('/{{ .Workload }}', {}), { error: 'template variable .Workload has no value for this dataplane' });
});

test('parse errors name the problem', () => {
  assert.equal(parseSpiffeTemplate('/{{ .Foo }}').error, 'unknown template variable .Foo');
  assert.equal(parseSpiffeTemplate('/{{ .Mesh.Name }}').error, 'invalid template: unsupported action "{{ .Mesh.Name }}"');
  assert.equal(parseSpiffeTemplate('/{{ . }}').error, 'invalid template: unsupported action "{{ . }}"');
  assert.equal(parseSpiffeTemplate('/{{ .Mesh').error, 'invalid template: unclosed action');
  assert.equal(parseSpiffeTemplate('{{ .Workload }}.x', TRUST_DOMAIN_VARIABLES).error, 'template variable .Workload is not allowed here (allowed: .Mesh, .Zone, label)');
  assert.deepEqual(parseSpiffeTemplate('/plain/}}text').parts, [{ kind: 'text', text: '/plain/}}text' }]);
});

test('an action or a label key holding control characters is named with them escaped: the resource\'s text must not act on the terminal that prints the error', () => {
  assert.equal(parseSpiffeTemplate('/{{ .Foo\x1b]0;pwned\x07 }}').error, 'invalid template: unsupported action "{{ .Foo\\u001b]0;pwned\\u0007 }}"');
  // No label key holds one, so such a key is refused when the template is read, naming the character.
  assert.equal(parseSpiffeTemplate('/{{ label "t\x1b[2J" }}').error, 'invalid template: label key must not hold control characters (U+001B at 1)');
});

test('a label named like an Object property (constructor, toString, __proto__) that the dataplane lacks is "not found", not a TypeError', () => {
  for (const key of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
    assert.deepEqual(render(`/{{ label "${key}" }}`, {}, { app: 'a' }), { error: `label "${key}" not found` }, key);
  }
  assert.deepEqual(render('/{{ label "constructor" }}', {}, JSON.parse('{"constructor":"c"}') as Record<string, string>), { value: '/c' });
});

test('SPIFFE trust domain and path rules', () => {
  assert.equal(trustDomainProblem('example.org'), undefined);
  assert.equal(trustDomainProblem('Example.org'), "must contain only lowercase letters, digits, '.', '-' and '_'");
  assert.equal(trustDomainProblem(''), 'must not be empty');
  assert.equal(spiffePathProblem('/ns/default/sa/web'), undefined);
  assert.equal(spiffePathProblem('/a/'), 'must not contain empty segments or end with /');
  assert.equal(spiffePathProblem('/a/./b'), 'must not contain . or .. segments');
  assert.equal(spiffePathProblem('/a b'), "must contain only letters, digits, '.', '-', '_' and '/'");
});

// `/\s+$/` on text with whitespace not at its end is quadratic in V8: 80 KB of spaces before a
// `{{-` took 2.8 s, 1 MB minutes, in validation (apply, a directory reload) of one MeshIdentity.
test('a `{{-` trim marker after a megabyte of inner whitespace is parsed in one pass', async () => {
  const p = (await callInWorker(new URL('../../src/api/template.ts', import.meta.url), 'parseSpiffeTemplate', ['/a' + ' '.repeat(1_000_000) + 'x {{- .Mesh }}'])) as ReturnType<typeof parseSpiffeTemplate>;
  assert.equal(p.error, undefined);
  assert.deepEqual(p.parts.at(-1), { kind: 'var', name: 'Mesh' });
  assert.equal((p.parts[0] as { text: string }).text.length, 1_000_003);
});
