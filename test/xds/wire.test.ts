import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeMessage, lookupType } from '../../src/xds/protos.js';
import {
  WireError,
  decodeDeltaDiscoveryRequest,
  decodeDiscoveryRequest,
  encodeDeltaDiscoveryResponse,
  encodeDiscoveryResponse,
  frameDeltaDiscoveryResponse,
  frameDiscoveryResponse,
  preEncodeAny,
  tlsCertificateSecretAny,
  type FramedMessage,
} from '../../src/xds/wire.js';
import { SECRET_TYPE_URL } from '../../src/xds/resource.js';
import { frameMessage } from '../../src/server/grpc-h2/framing.js';

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

const joined = (f: FramedMessage) => (Buffer.isBuffer(f) ? f : Buffer.concat(f));

test('a framed response is the gRPC frame of the plain encoding, its large secrets sent by reference', () => {
  const bundle = preEncodeAny(SECRET_TYPE_URL, Buffer.alloc(3000, 5));
  const cert = preEncodeAny(SECRET_TYPE_URL, Buffer.alloc(2000, 6));
  const small = preEncodeAny(SECRET_TYPE_URL, Buffer.alloc(20, 7));
  const sotw = { version_info: '7', resources: [bundle, small, cert], type_url: SECRET_TYPE_URL, nonce: 'abc' };
  const framed = frameDiscoveryResponse(sotw);
  assert.deepEqual(joined(framed), frameMessage(encodeDiscoveryResponse(sotw)));
  assert.ok(!Buffer.isBuffer(framed), 'chunks, not one copied buffer');
  assert.ok(framed.includes(bundle.encoded) && framed.includes(cert.encoded), 'the cached bytes themselves are sent');
  assert.ok(!framed.includes(small.encoded), 'a short secret is copied: a chunk of its own would cost more');

  const delta = {
    system_version_info: '2',
    resources: [
      { name: 'a', version: 'v1', resource: bundle },
      { name: 'b', version: 'v2', resource: small },
    ],
    removed_resources: ['gone'],
    type_url: SECRET_TYPE_URL,
    nonce: 'n',
  };
  const framedDelta = frameDeltaDiscoveryResponse(delta);
  assert.deepEqual(joined(framedDelta), frameMessage(encodeDeltaDiscoveryResponse(delta)));
  assert.ok(!Buffer.isBuffer(framedDelta) && framedDelta.includes(bundle.encoded));
});

test('a framed response with only short secrets is one buffer', () => {
  const r = { version_info: '1', resources: [preEncodeAny(SECRET_TYPE_URL, Buffer.alloc(30, 1))], type_url: SECRET_TYPE_URL, nonce: 'x' };
  const framed = frameDiscoveryResponse(r);
  assert.ok(Buffer.isBuffer(framed));
  assert.deepEqual(framed, frameMessage(encodeDiscoveryResponse(r)));
});

test('a pre-encoded Any owns an exact-size buffer, and its value is a view into it', () => {
  const a = preEncodeAny(SECRET_TYPE_URL, Buffer.alloc(10, 9));
  assert.equal(a.encoded.buffer.byteLength, a.encoded.length, 'not a slice of a shared pool slab');
  assert.equal(a.value.buffer, a.encoded.buffer);
  assert.deepEqual(Buffer.from(a.value), Buffer.alloc(10, 9));
});

const encodeRequest = (type: string, obj: object) => {
  const t = lookupType(type);
  return Buffer.from(t.encode(t.fromObject(obj)).finish());
};

test('a hand-written tls_certificate Secret is byte for byte what protobufjs encodes, at every length size', () => {
  const Secret = lookupType('envoy.extensions.transport_sockets.tls.v3.Secret');
  // Chains across the 1-, 2- and 3-byte length boundaries (127/128, 16383/16384 bytes).
  for (const [name, chainLength, keyLength] of [['default', 600, 241], ['spiffe://td/ns/a/sa/b', 127, 128], ['', 16_384, 16_383], ['x', 100_000, 1]] as const) {
    const chain = `-----BEGIN CERTIFICATE-----\n${'A'.repeat(chainLength)}`;
    const key = `-----BEGIN PRIVATE KEY-----\n${'k'.repeat(keyLength)}`;
    const fields: Record<string, unknown> = { tls_certificate: { certificate_chain: { inline_bytes: Buffer.from(chain) }, private_key: { inline_bytes: Buffer.from(key) } } };
    if (name !== '') fields.name = name;
    const expected = preEncodeAny(SECRET_TYPE_URL, Secret.encode(fields).finish());
    const got = tlsCertificateSecretAny(SECRET_TYPE_URL, name, chain, key);
    assert.deepEqual(got.encoded, expected.encoded, `name ${JSON.stringify(name)}, chain ${chainLength}`);
    assert.deepEqual(Buffer.from(got.value), Buffer.from(expected.value));
    assert.equal(got.encoded.buffer.byteLength, got.encoded.length, 'an exact-size buffer of its own');
    const back = decodeMessage('envoy.extensions.transport_sockets.tls.v3.Secret', got.value) as any;
    assert.equal(Buffer.from(back.tls_certificate.certificate_chain.inline_bytes).toString(), chain);
    assert.equal(Buffer.from(back.tls_certificate.private_key.inline_bytes).toString(), key);
  }
});

test('a DiscoveryRequest decodes by hand exactly as protobufjs encodes it, unknown fields skipped', () => {
  const bytes = encodeRequest('envoy.service.discovery.v3.DiscoveryRequest', {
    version_info: '4',
    node: { id: 'default.web', cluster: 'web', user_agent_name: 'envoy', metadata: { fields: [{ key: 'a', value: { string_value: 'b' } }] }, locality: { zone: 'z' } },
    resource_names: ['default', 'system_trust_bundle'],
    type_url: SECRET_TYPE_URL,
    response_nonce: 'n-9',
    error_detail: { code: 3, message: 'bad secret' },
  });
  assert.deepEqual(decodeDiscoveryRequest(bytes), {
    version_info: '4',
    node: { id: 'default.web', cluster: 'web', user_agent_name: 'envoy' },
    resource_names: ['default', 'system_trust_bundle'],
    type_url: SECRET_TYPE_URL,
    response_nonce: 'n-9',
    error_detail: { code: 3, message: 'bad secret' },
  });
});

test('a DeltaDiscoveryRequest decodes with its initial_resource_versions map', () => {
  const bytes = encodeRequest('envoy.service.discovery.v3.DeltaDiscoveryRequest', {
    node: { id: 'default.web', cluster: 'web' },
    type_url: SECRET_TYPE_URL,
    resource_names_subscribe: ['default', 'ROOTCA'],
    resource_names_unsubscribe: ['ALL'],
    // The descriptor-built Root represents a proto map as its wire form: repeated entries.
    initial_resource_versions: [
      { key: 'default', value: 'v1' },
      { key: 'ROOTCA', value: 'v2' },
    ],
    response_nonce: 'n',
  });
  assert.deepEqual(decodeDeltaDiscoveryRequest(bytes), {
    node: { id: 'default.web', cluster: 'web' },
    type_url: SECRET_TYPE_URL,
    resource_names_subscribe: ['default', 'ROOTCA'],
    resource_names_unsubscribe: ['ALL'],
    initial_resource_versions: { default: 'v1', ROOTCA: 'v2' },
    response_nonce: 'n',
  });
});

test('truncated or malformed requests are refused, never half-read', () => {
  const good = encodeRequest('envoy.service.discovery.v3.DiscoveryRequest', { resource_names: ['default'], type_url: SECRET_TYPE_URL });
  assert.throws(() => decodeDiscoveryRequest(good.subarray(0, good.length - 3)), WireError);
  assert.throws(() => decodeDiscoveryRequest(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])), WireError);
  assert.throws(() => decodeDiscoveryRequest(Buffer.from([0x0b])), WireError, 'wire type 3 (groups) is refused');
  assert.throws(() => decodeDeltaDiscoveryRequest(Buffer.from([0x1a, 0x05, 0x61])), WireError);
});
