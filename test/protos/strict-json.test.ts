import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProtoJsonError, decodeBootstrapStrict, decodeMessage, decodeStrict } from '../../src/xds/protos.js';

const HPO = 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

function cluster(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'mesh_sds', type: 'STATIC', connect_timeout: '1.5s', ...extra };
}

function rejects(obj: unknown, path: string, reason: RegExp): void {
  assert.throws(
    () => decodeBootstrapStrict(obj),
    (e: unknown) => {
      assert.ok(e instanceof ProtoJsonError, String(e));
      assert.equal(e.path, path);
      assert.match(e.message, reason);
      return true;
    },
  );
}

test('snake_case and lowerCamel field names decode to the same message', () => {
  const a = decodeBootstrapStrict({ node: { id: 'm.n', cluster: 'c' }, static_resources: { clusters: [cluster()] } });
  const b = decodeBootstrapStrict({ node: { id: 'm.n', cluster: 'c' }, staticResources: { clusters: [{ name: 'mesh_sds', type: 'STATIC', connectTimeout: '1.5s' }] } });
  assert.ok(a.bytes.equals(b.bytes));
  const back = decodeMessage('envoy.config.bootstrap.v3.Bootstrap', a.bytes) as any;
  assert.deepEqual(back.static_resources.clusters[0].connect_timeout, { seconds: '1', nanos: 500000000 });
  assert.equal(back.static_resources.clusters[0].type, 'STATIC');
});

test('typed_config Anys are resolved by @type, recursively, and listed with their type', () => {
  const r = decodeBootstrapStrict({
    static_resources: {
      clusters: [
        cluster({
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': { '@type': HPO, explicit_http_config: { http2_protocol_options: {} } },
          },
        }),
      ],
    },
  });
  const hpo = r.messages.find((m) => m.type === 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions');
  assert.ok(hpo);
  assert.equal(hpo.path, 'static_resources.clusters[0].typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]');
  assert.ok(r.messages.some((m) => m.type === 'envoy.config.core.v3.Http2ProtocolOptions'));
  // The Any made it into the encoded bytes.
  const back = decodeMessage('envoy.config.bootstrap.v3.Bootstrap', r.bytes) as any;
  assert.equal(back.static_resources.clusters[0].typed_extension_protocol_options[0].value.type_url, HPO);
});

test('an unknown field fails with its full path and the message type', () => {
  rejects({ static_resources: { clustrs: [] } }, 'static_resources.clustrs', /unknown field "clustrs" in envoy\.config\.bootstrap\.v3\.Bootstrap\.StaticResources/);
  rejects({ static_resources: { clusters: [cluster(), cluster({ conect_timeout: '1s' })] } }, 'static_resources.clusters[1].conect_timeout', /unknown field/);
});

test('an unknown field inside an Any fails with its path', () => {
  rejects(
    { static_resources: { clusters: [cluster({ typed_extension_protocol_options: { x: { '@type': HPO, explicit_http_config: { http3_protocol_optons: {} } } } })] } },
    'static_resources.clusters[0].typed_extension_protocol_options["x"].explicit_http_config.http3_protocol_optons',
    /unknown field/,
  );
});

test('an unknown or missing @type fails', () => {
  rejects(
    { static_resources: { clusters: [cluster({ typed_extension_protocol_options: { x: { '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOption' } } })] } },
    'static_resources.clusters[0].typed_extension_protocol_options["x"].@type',
    /unknown @type/,
  );
  rejects({ static_resources: { clusters: [cluster({ typed_extension_protocol_options: { x: { explicit_http_config: {} } } })] } }, 'static_resources.clusters[0].typed_extension_protocol_options["x"].@type', /type URL/);
});

test('wrong value types, bad enum names, bad durations and two oneof members fail', () => {
  rejects({ static_resources: { clusters: [cluster({ type: 'STATC' })] } }, 'static_resources.clusters[0].type', /unknown value "STATC"/);
  rejects({ static_resources: { clusters: [cluster({ connect_timeout: '1' })] } }, 'static_resources.clusters[0].connect_timeout', /duration/);
  rejects({ static_resources: { clusters: [cluster({ name: 5 })] } }, 'static_resources.clusters[0].name', /expected a string/);
  rejects({ static_resources: { clusters: {} } }, 'static_resources.clusters', /expected a list/);
  rejects({ node: 'x' }, 'node', /expected an object/);
  rejects(
    { static_resources: { clusters: [cluster({ type: 'STATIC', cluster_type: { name: 'x' } })] } },
    'static_resources.clusters[0].cluster_type',
    /only one of oneof "cluster_discovery_type"/,
  );
  rejects(
    { admin: { address: { socket_address: { address: '127.0.0.1', port_value: -1 } } } },
    'admin.address.socket_address.port_value',
    /an integer in \[0, 4294967295\]/,
  );
});

test('well-known types use their JSON forms (wrappers, Struct, bytes, 64-bit ints)', () => {
  const r = decodeStrict('envoy.config.core.v3.Node', { id: 'a.b', cluster: 'c', metadata: { team: 'x', n: 1, nested: { ok: true, l: [1, 'two', null] } } });
  const back = decodeMessage('envoy.config.core.v3.Node', r.bytes) as any;
  // Descriptor-built types model maps as lists of {key, value} entries.
  const get = (struct: any, key: string) => struct.fields.find((e: any) => e.key === key).value;
  assert.equal(get(back.metadata, 'team').string_value, 'x');
  assert.equal(get(back.metadata, 'n').number_value, 1);
  assert.equal(get(get(back.metadata, 'nested').struct_value, 'l').list_value.values[1].string_value, 'two');
  const c = decodeStrict('envoy.config.cluster.v3.Cluster', { name: 'x', per_connection_buffer_limit_bytes: 32768, max_requests_per_connection: '7' });
  const cb = decodeMessage('envoy.config.cluster.v3.Cluster', c.bytes) as any;
  assert.deepEqual([cb.per_connection_buffer_limit_bytes, cb.max_requests_per_connection], [{ value: 32768 }, { value: 7 }]);
  const ds = decodeStrict('envoy.config.core.v3.DataSource', { inline_bytes: Buffer.from('pem').toString('base64') });
  assert.equal(Buffer.from((decodeMessage('envoy.config.core.v3.DataSource', ds.bytes) as any).inline_bytes).toString(), 'pem');
});
