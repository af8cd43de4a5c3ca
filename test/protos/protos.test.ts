import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';
import descriptor from 'protobufjs/ext/descriptor/index.js';
import {
  SECRET_TYPE_URL,
  decodeMessage,
  decodeSecret,
  encodeSecret,
  ensureDescriptors,
  fromAny,
  loadProtos,
  packSpiffeValidatorConfig,
  toAny,
} from '../../src/xds/protos.js';

const PEM_A = '-----BEGIN CERTIFICATE-----\nMIIBdomainA\n-----END CERTIFICATE-----\n';
const PEM_B = '-----BEGIN CERTIFICATE-----\nMIIBdomainB\n-----END CERTIFICATE-----\n';

test('loads the descriptor set and reports how long parsing took', () => {
  const started = performance.now();
  const protos = loadProtos();
  console.log(`descriptor parse ${protos.loadMs.toFixed(0)} ms, loadProtos() incl. any build ${(performance.now() - started).toFixed(0)} ms`);
  assert.equal(loadProtos(), protos, 'cached');
});

test('SDS and ADS service definitions have the xDS v3 methods and streaming shapes', () => {
  const { SecretDiscoveryService: sds, AggregatedDiscoveryService: ads, HealthService: health } = loadProtos();
  const shape = (svc: typeof sds) =>
    Object.fromEntries(Object.entries(svc).map(([m, d]) => [m, [d.path, d.requestStream, d.responseStream]]));
  assert.deepEqual(shape(sds), {
    StreamSecrets: ['/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets', true, true],
    DeltaSecrets: ['/envoy.service.secret.v3.SecretDiscoveryService/DeltaSecrets', true, true],
    FetchSecrets: ['/envoy.service.secret.v3.SecretDiscoveryService/FetchSecrets', false, false],
  });
  assert.deepEqual(shape(ads), {
    StreamAggregatedResources: ['/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources', true, true],
    DeltaAggregatedResources: ['/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources', true, true],
  });
  assert.deepEqual(Object.keys(health).sort(), ['Check', 'Watch']);
});

test('the descriptor set is self-contained: every import of every file is in it', () => {
  const set = descriptor.FileDescriptorSet.toObject(descriptor.FileDescriptorSet.decode(readFileSync(ensureDescriptors()))) as {
    file: Array<{ name: string; dependency?: string[] }>;
  };
  const names = new Set(set.file.map((f) => f.name));
  for (const f of set.file) for (const dep of f.dependency ?? []) assert.ok(names.has(dep), `${f.name} imports missing ${dep}`);
  for (const needed of ['envoy/config/bootstrap/v3/bootstrap.proto', 'google/rpc/status.proto', 'grpc/health/v1/health.proto']) {
    assert.ok(names.has(needed), needed);
  }
});

test('a SPIFFE validator Secret round-trips through encode/decode, nested Any included', () => {
  const typed = packSpiffeValidatorConfig([
    { name: 'a.mesh.local', pem: PEM_A },
    { name: 'b.mesh.local', pem: Buffer.from(PEM_B) },
  ]);
  assert.equal(typed.type_url, 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig');
  const secret = {
    name: 'system_trust_bundle',
    validation_context: { custom_validator_config: { name: 'envoy.tls.cert_validator.spiffe', typed_config: typed } },
  };
  const decoded = decodeSecret(encodeSecret(secret)) as any;
  assert.equal(decoded.name, 'system_trust_bundle');
  assert.equal(decoded.type, 'validation_context', 'oneofs: true names the set member');
  const cvc = decoded.validation_context.custom_validator_config;
  assert.equal(cvc.name, 'envoy.tls.cert_validator.spiffe');
  const inner = fromAny(cvc.typed_config);
  assert.equal(inner.typeName, 'envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig');
  const tds = (inner.value as any).trust_domains;
  assert.deepEqual(
    tds.map((t: any) => [t.name, Buffer.from(t.trust_bundle.inline_bytes).toString()]),
    [
      ['a.mesh.local', PEM_A],
      ['b.mesh.local', PEM_B],
    ],
  );
});

test('a tls_certificate Secret keeps its chain and key bytes exactly', () => {
  const chain = Buffer.from('chain\n\x00\xff');
  const key = Buffer.from('key-bytes');
  const d = decodeSecret(
    encodeSecret({ name: 'default', tls_certificate: { certificate_chain: { inline_bytes: chain }, private_key: { inline_bytes: key } } }),
  ) as any;
  assert.equal(d.type, 'tls_certificate');
  assert.ok(Buffer.from(d.tls_certificate.certificate_chain.inline_bytes).equals(chain));
  assert.ok(Buffer.from(d.tls_certificate.private_key.inline_bytes).equals(key));
});

test('bytes encoded with the protobufjs Root are what the grpc-js serializers read, and back', () => {
  const { packageDefinition } = loadProtos();
  const resp = packageDefinition['envoy.service.discovery.v3.DiscoveryResponse'] as any;
  const secretAny = toAny('envoy.extensions.transport_sockets.tls.v3.Secret', { name: 'ROOTCA', validation_context: { trusted_ca: { inline_bytes: Buffer.from(PEM_A) } } });
  assert.equal(secretAny.type_url, SECRET_TYPE_URL);
  // Serialize with the proto-loader definition (what the server sends) ...
  const wire: Buffer = resp.serialize({ version_info: '1', nonce: 'n1', type_url: SECRET_TYPE_URL, resources: [secretAny] });
  // ... decode with the Root (what a client or test sees).
  const back = decodeMessage('envoy.service.discovery.v3.DiscoveryResponse', wire) as any;
  assert.equal(back.version_info, '1');
  assert.equal(back.nonce, 'n1');
  const s = decodeSecret(back.resources[0].value) as any;
  assert.equal(Buffer.from(s.validation_context.trusted_ca.inline_bytes).toString(), PEM_A);
  // And the other way: a DiscoveryRequest with an error_detail (NACK) built by the Root.
  const req = packageDefinition['envoy.service.discovery.v3.DiscoveryRequest'] as any;
  const root = loadProtos().root;
  const Req = root.lookupType('envoy.service.discovery.v3.DiscoveryRequest');
  const nack = Req.encode(
    Req.fromObject({ response_nonce: 'n1', resource_names: ['ROOTCA'], node: { id: 'default.backend-1', cluster: 'backend' }, error_detail: { code: 3, message: 'bad' } }),
  ).finish();
  const r = req.deserialize(Buffer.from(nack));
  assert.deepEqual([r.response_nonce, r.resource_names, r.node.id, r.error_detail.code, r.error_detail.message], ['n1', ['ROOTCA'], 'default.backend-1', 3, 'bad']);
  assert.ok(root instanceof protobuf.Root);
});
