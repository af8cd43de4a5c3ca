import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fetchResponse } from '../../src/xds/fetch.js';
import { TYPE, World } from './fixtures.js';

describe('FetchSecrets response', () => {
  it('returns the requested secrets with no version_info and no nonce (SPIRE semantics)', () => {
    const w = new World();
    const a = w.put('default', 'v1');
    w.put('ROOTCA', 'r1');
    const r = fetchResponse({ type_url: TYPE, resource_names: ['default'] }, w.resolve);
    assert.ok(r.type === 'response');
    assert.deepEqual(r.response, { version_info: '', resources: [a.any], type_url: TYPE, nonce: '' });
    assert.deepEqual(r.held, []);
  });

  it('returns everything for an empty name list', () => {
    const w = new World();
    w.put('default', 'v1');
    w.put('ROOTCA', 'r1');
    const r = fetchResponse({ resource_names: [] }, w.resolve);
    assert.ok(r.type === 'response');
    assert.deepEqual(r.resources.map((x) => x.name), ['ROOTCA', 'default']);
  });

  it('reports valid names that are not resolvable yet as held', () => {
    const w = new World();
    w.put('default', 'v1');
    const r = fetchResponse({ resource_names: ['default', 'ROOTCA'] }, w.resolve);
    assert.ok(r.type === 'response');
    assert.deepEqual(r.held, ['ROOTCA']);
    assert.equal(r.response.resources.length, 1);
  });

  it('fails with INVALID_ARGUMENT for a name that can never exist or another type', () => {
    const w = new World();
    const bad = fetchResponse({ resource_names: ['bogus'] }, w.resolve);
    assert.ok(bad.type === 'fail' && bad.code === 'INVALID_ARGUMENT' && bad.message.includes('"bogus"'));
    const other = fetchResponse({ type_url: 'type.googleapis.com/x.Y', resource_names: ['default'] }, w.resolve);
    assert.ok(other.type === 'fail' && other.message.includes('x.Y'));
  });
});
