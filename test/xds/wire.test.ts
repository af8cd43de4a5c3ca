import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeMessage, lookupType } from '../../src/xds/protos.js';
import { encodeDeltaDiscoveryResponse, encodeDiscoveryResponse, preEncodeAny } from '../../src/xds/wire.js';
import { SECRET_TYPE_URL } from '../../src/xds/resource.js';

const secret = (name: string) => lookupType('envoy.extensions.transport_sockets.tls.v3.Secret').encode({ name }).finish();

test('a hand-encoded DiscoveryResponse decodes with the real descriptors to the same message', () => {
  const big = preEncodeAny(SECRET_TYPE_URL, Buffer.alloc(300, 7));
  const plain = { type_url: SECRET_TYPE_URL, value: Buffer.from(secret('default')) };
  const bytes = encodeDiscoveryResponse({ version_info: '12', resources: [big, plain], type_url: SECRET_TYPE_URL, nonce: 'n-1' });
  const msg = decodeMessage('envoy.service.discovery.v3.DiscoveryResponse', bytes) as any;
  assert.equal(msg.version_info, '12');
  assert.equal(msg.nonce, 'n-1');
  assert.equal(msg.type_url, SECRET_TYPE_URL);
  assert.equal(msg.resources.length, 2);
  assert.deepEqual(Buffer.from(msg.resources[0].value), Buffer.alloc(300, 7));
  assert.equal(decodeMessage('envoy.extensions.transport_sockets.tls.v3.Secret', msg.resources[1].value).name, 'default');
});

test('a hand-encoded DeltaDiscoveryResponse decodes with resources, versions, names and removals', () => {
  const any = preEncodeAny(SECRET_TYPE_URL, secret('ROOTCA'));
  const bytes = encodeDeltaDiscoveryResponse({
    system_version_info: '3',
    resources: [{ name: 'ROOTCA', version: 'abc', resource: any }],
    removed_resources: ['spiffe://gone.example', 'ünïcode'],
    type_url: SECRET_TYPE_URL,
    nonce: 'n',
  });
  const msg = decodeMessage('envoy.service.discovery.v3.DeltaDiscoveryResponse', bytes) as any;
  assert.equal(msg.system_version_info, '3');
  assert.deepEqual(msg.removed_resources, ['spiffe://gone.example', 'ünïcode']);
  assert.equal(msg.resources[0].name, 'ROOTCA');
  assert.equal(msg.resources[0].version, 'abc');
  assert.equal(msg.resources[0].resource.type_url, SECRET_TYPE_URL);
  assert.equal(decodeMessage('envoy.extensions.transport_sockets.tls.v3.Secret', msg.resources[0].resource.value).name, 'ROOTCA');
});

test('an empty response and a large (multi-byte length) one both round-trip', () => {
  const empty = decodeMessage('envoy.service.discovery.v3.DiscoveryResponse', encodeDiscoveryResponse({ version_info: '', resources: [], type_url: '', nonce: '' }));
  assert.deepEqual(empty.resources ?? [], []);
  const huge = preEncodeAny(SECRET_TYPE_URL, Buffer.alloc(70_000, 1));
  const msg = decodeMessage('envoy.service.discovery.v3.DiscoveryResponse', encodeDiscoveryResponse({ version_info: '1', resources: [huge], type_url: SECRET_TYPE_URL, nonce: 'x' })) as any;
  assert.equal(msg.resources[0].value.length, 70_000);
});

test('a pre-encoded Any owns an exact-size buffer, and its value is a view into it', () => {
  const a = preEncodeAny(SECRET_TYPE_URL, Buffer.alloc(10, 9));
  assert.equal(a.encoded.buffer.byteLength, a.encoded.length, 'not a slice of a shared pool slab');
  assert.equal(a.value.buffer, a.encoded.buffer);
  assert.deepEqual(Buffer.from(a.value), Buffer.alloc(10, 9));
});
