import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { parseResources } from '../../src/api/parse.js';
import { meshIdentityKri } from '../../src/api/types.js';
import { ProtoJsonError, decodeBootstrapStrict, fromAny, type DecodedMessage } from '../../src/xds/protos.js';
import { classifySecretName } from '../../src/xds/names.js';
import { parseSpiffeId } from '../../src/identity/spiffe-id.js';
import { dataplaneNodeName } from '../../src/identity/proxy-index.js';

const DIR = 'envoy-configs';
const QUICKSTART = 'examples/quickstart';
/** Placeholders the configs may contain, each documented in envoy-configs/README.md. */
const PLACEHOLDERS: Record<string, string> = { MESH_SDS_TOKEN: 'dummy-token' };
/** Fallback when examples/quickstart has no MeshIdentity yet: the README's example identity
 * (MeshIdentity `identity`, namespace `kuma-system`, mesh `default`, zone `default`). */
const FALLBACK_KRI = 'kri_mid_default_default_kuma-system_identity_';
const ZONE = 'default'; // mesh-sds --zone default, as `npm start` runs it

/** The peer every outbound cluster calls: quickstart Dataplane backend-1 under MeshIdentity
 * `identity` with the default templates (trust domain {{ .Mesh }}.{{ .Zone }}.mesh.local, path
 * /ns/{{ .Namespace }}/sa/{{ .ServiceAccount }}); checked against the Dataplane's labels below. */
const PEER = 'default.backend-1.shop';
const PEER_SPIFFE_ID = 'spiffe://default.default.mesh.local/ns/shop/sa/backend';

/** The example mesh each config is written for: its own zone's resources (node.id and identities
 * are checked there) and the peer its outbound clusters call (possibly in another zone). */
interface Example { dir: string; zone: string; peer: string; peerDir: string; peerZone: string; peerSpiffeId: string }
const QUICKSTART_EXAMPLE: Example = { dir: QUICKSTART, zone: ZONE, peer: PEER, peerDir: QUICKSTART, peerZone: ZONE, peerSpiffeId: PEER_SPIFFE_ID };
/** federation-zone-a.yaml: frontend-1 of examples/federation/zone-a (mesh-sds --zone zone-a) calls
 * backend-1 of zone-b, whose trust domain zone-a trusts only through federation. */
const FEDERATION = 'examples/federation';
const FEDERATION_ZONE_A: Example = {
  dir: `${FEDERATION}/zone-a`, zone: 'zone-a', peer: 'default.backend-1.shop',
  peerDir: `${FEDERATION}/zone-b`, peerZone: 'zone-b', peerSpiffeId: 'spiffe://default.zone-b.mesh.local/ns/shop/sa/backend',
};
const exampleOf = (file: string): Example => (file.startsWith('federation-') ? FEDERATION_ZONE_A : QUICKSTART_EXAMPLE);

const SDS_CONFIG = 'envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig';
const HPO_URL = 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml')).sort();

function substitute(text: string): string {
  return text.replace(/\$\{([A-Z0-9_]+)\}/g, (m, name: string) => {
    const v = PLACEHOLDERS[name];
    assert.ok(v !== undefined, `undocumented placeholder ${m}`);
    return v;
  });
}

function load(file: string) {
  return decodeBootstrapStrict(parse(substitute(readFileSync(join(DIR, file), 'utf8'))));
}

/** MeshIdentities and Dataplanes of an example folder (examples/quickstart by default) served with
 * `--zone zone`, read with mesh-sds' own parser. */
function quickstart(dir = QUICKSTART, zone = ZONE): { kris: string[]; dataplanes: Map<string, Readonly<Record<string, string>>> } {
  const kris: string[] = [];
  const dataplanes = new Map<string, Readonly<Record<string, string>>>();
  // The configs are checked against the example: without it they would be checked against nothing.
  assert.ok(existsSync(dir), `${dir} is missing`);
  for (const f of readdirSync(dir).filter((n) => /\.(ya?ml|json)$/.test(n))) {
    for (const r of parseResources(readFileSync(join(dir, f), 'utf8'), f).resources) {
      if (r.kind === 'MeshIdentity') kris.push(meshIdentityKri(r, zone));
      // By the node id it is served as (a token names it so): `<mesh>.<name>.<namespace>` when namespaced.
      if (r.kind === 'Dataplane') dataplanes.set(`${r.mesh}.${dataplaneNodeName(r)}`, r.labels);
    }
  }
  return { kris, dataplanes };
}

const of = (messages: DecodedMessage[], type: string) => messages.filter((m) => m.type === type);

test('the five documented configs are present and README.md documents each', () => {
  assert.deepEqual(files, ['federation-zone-a.yaml', 'gateway.yaml', 'sidecar-unix-socket.yaml', 'sidecar.yaml', 'spire-compatible.yaml']);
  const readme = readFileSync(join(DIR, 'README.md'), 'utf8');
  for (const f of files) assert.ok(readme.includes(f), `README.md does not mention ${f}`);
  for (const p of Object.keys(PLACEHOLDERS)) assert.ok(readme.includes(`\${${p}}`), `README.md does not document \${${p}}`);
});

for (const file of files) {
  const example = exampleOf(file);
  // The quickstart may lack resources (then the README's example identity is the fallback); the
  // federation example must have them, or the new config would be checked against nothing.
  const strict = example !== QUICKSTART_EXAMPLE;

  test(`${file} decodes strictly into envoy.config.bootstrap.v3.Bootstrap`, () => {
    const { value, messages } = load(file);
    const node = value['node'] as { id: string; cluster: string };
    assert.match(node.id, /^[a-z0-9-]+\.[a-z0-9.-]+$/, 'node.id is <mesh>.<dataplane-name>');
    assert.ok(node.cluster, 'node.cluster is required for xDS');
    assert.ok(messages.length > 50, 'walked the whole tree');
    const { dataplanes } = quickstart(example.dir, example.zone);
    if (strict) assert.ok(dataplanes.size > 0, `${example.dir} has no Dataplane`);
    if (dataplanes.size > 0) assert.ok(dataplanes.has(node.id), `node.id ${node.id} is not a Dataplane of ${example.dir}`);
  });

  test(`${file}: every sds_config uses the first, static, HTTP/2 cluster with the token`, () => {
    const { value, messages } = load(file);
    const clusters = (value['static_resources'] as any).clusters as any[];
    const sds = of(messages, SDS_CONFIG);
    assert.ok(sds.length >= 2, 'identity and trust secrets come from SDS');
    for (const m of sds) {
      const cfg = m.value['sds_config'] as any;
      assert.equal(cfg.resource_api_version, 'V3', m.path);
      const api = cfg.api_config_source;
      assert.deepEqual([api.api_type, api.transport_api_version, api.set_node_on_first_message_only], ['GRPC', 'V3', true], m.path);
      assert.equal(api.grpc_services.length, 1, m.path);
      const svc = api.grpc_services[0];
      const idx = clusters.findIndex((c) => c.name === svc.envoy_grpc.cluster_name);
      assert.equal(idx, 0, `${m.path}: SDS cluster ${svc.envoy_grpc.cluster_name} must exist and be listed first`);
      assert.deepEqual(svc.initial_metadata, [{ key: 'authorization', value: 'Bearer dummy-token' }], m.path);
    }
    const sdsCluster = clusters[0];
    assert.equal(sdsCluster.type, 'STATIC');
    const opts = sdsCluster.typed_extension_protocol_options as Array<{ key: string; value: { type_url: string; value: Buffer } }>;
    const hpo = opts.find((o) => o.key === 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions');
    assert.ok(hpo && hpo.value.type_url === HPO_URL, 'HttpProtocolOptions present');
    assert.ok((fromAny(hpo.value).value as any).explicit_http_config?.http2_protocol_options, 'explicit HTTP/2');
  });

  test(`${file}: every secret name is one mesh-sds serves, identities are MeshIdentities of ${example.dir}`, () => {
    const { value, messages } = load(file);
    const { kris } = quickstart(example.dir, example.zone);
    if (strict) assert.ok(kris.length > 0, `${example.dir} has no MeshIdentity`);
    const expectedKris = kris.length > 0 ? kris : [FALLBACK_KRI];
    const mesh = (value['node'] as { id: string }).id.split('.')[0];
    for (const m of of(messages, SDS_CONFIG)) {
      const name = m.value['name'] as string;
      const ref = classifySecretName(name);
      assert.notEqual(ref.kind, 'invalid', `${m.path}: ${name}: ${ref.kind === 'invalid' ? ref.reason : ''}`);
      if (ref.kind === 'identity') {
        assert.ok(expectedKris.includes(name), `${m.path}: ${name} is not the KRI of a MeshIdentity in ${example.dir} (${expectedKris.join(', ')})`);
        assert.equal(ref.kri.zone, example.zone, `${m.path}: identity of the proxy's own zone`);
        assert.equal(ref.kri.mesh, mesh, 'identity of the proxy\'s own mesh');
      }
      // Certificates go where certificates are expected and trust where trust is.
      const isCert = ref.kind === 'identity' || ref.kind === 'default' || ref.kind === 'svid';
      assert.equal(isCert, /tls_certificate_sds_secret_configs\[\d+\]$/.test(m.path), `${m.path}: ${name} in the wrong place`);
    }
  });

  test(`${file}: mTLS is enforced on mesh listeners and peers are pinned by SPIFFE ID`, () => {
    const { messages } = load(file);
    const downstream = of(messages, 'envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext');
    const mesh = downstream.filter((d) => (d.value['common_tls_context'] as any).validation_context_sds_secret_config);
    for (const d of mesh) assert.deepEqual(d.value['require_client_certificate'], { value: true }, d.path);
    const upstream = of(messages, 'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext');
    assert.ok(upstream.length >= 1);
    for (const u of upstream) {
      const combined = (u.value['common_tls_context'] as any).combined_validation_context;
      assert.ok(combined, `${u.path}: combined_validation_context`);
      const sans = combined.default_validation_context.match_typed_subject_alt_names as any[];
      assert.ok(sans.length > 0, `${u.path}: SAN matcher`);
      for (const s of sans) {
        assert.equal(s.san_type, 'URI');
        const id = parseSpiffeId(s.matcher.exact);
        assert.ok(!('error' in id) && id.path !== '', `${u.path}: ${s.matcher.exact} is a workload SPIFFE ID`);
        assert.equal(s.matcher.exact, example.peerSpiffeId, `${u.path}: pins the peer ${example.peer} of ${example.peerDir}`);
      }
    }
    if (file.startsWith('sidecar') || file.startsWith('spire')) assert.equal(mesh.length, 1, 'one inbound mTLS listener');
  });

  test(`${file}: every route points at a defined cluster`, () => {
    const { value, messages } = load(file);
    const names = new Set(((value['static_resources'] as any).clusters as any[]).map((c) => c.name));
    const routes = of(messages, 'envoy.config.route.v3.RouteAction');
    assert.ok(routes.length > 0);
    for (const r of routes) assert.ok(names.has(r.value['cluster']), `${r.path}: unknown cluster ${String(r.value['cluster'])}`);
  });
}

for (const example of [QUICKSTART_EXAMPLE, FEDERATION_ZONE_A]) {
  test(`the pinned peer SPIFFE ID is what Dataplane ${example.peer} of ${example.peerDir} gets`, () => {
    const labels = quickstart(example.peerDir, example.peerZone).dataplanes.get(example.peer);
    assert.ok(labels, `${example.peerDir} has no Dataplane ${example.peer}`);
    const [mesh] = example.peer.split('.');
    assert.equal(example.peerSpiffeId, `spiffe://${mesh}.${example.peerZone}.mesh.local/ns/${labels['k8s.kuma.io/namespace']}/sa/${labels['k8s.kuma.io/service-account']}`);
  });
}

test('federation-zone-a.yaml trusts zone B only through what zone A federates (system_trust_bundle)', () => {
  const { messages } = load('federation-zone-a.yaml');
  const peerTd = parseSpiffeId(FEDERATION_ZONE_A.peerSpiffeId);
  assert.ok(!('error' in peerTd));
  // The peer is in another trust domain than this proxy's own identity: only federation makes it trusted.
  assert.notEqual(peerTd.trustDomain, `default.${FEDERATION_ZONE_A.zone}.mesh.local`);
  // examples/federation/federate.sh gives zone-a a ClusterFederatedTrustDomain for the peer's zone,
  // whose trust domain is default.<zone>.mesh.local (the same template as the SVIDs).
  const script = readFileSync(join(FEDERATION, 'federate.sh'), 'utf8');
  assert.match(script, new RegExp(`^federate ${FEDERATION_ZONE_A.zone} ${FEDERATION_ZONE_A.peerZone} `, 'm'));
  assert.match(script, /td="default\.\$2\.mesh\.local"/);
  assert.equal(peerTd.trustDomain, `default.${FEDERATION_ZONE_A.peerZone}.mesh.local`);
  // Every validation context is the all-trust-domains bundle (which carries federated domains),
  // never ROOTCA or spiffe://<own td>, which would leave zone B out.
  const trust = of(messages, SDS_CONFIG).filter((m) => !/tls_certificate_sds_secret_configs\[\d+\]$/.test(m.path));
  assert.equal(trust.length, 2, 'outbound (combined) and inbound validation contexts');
  for (const m of trust) assert.equal(m.value['name'], 'system_trust_bundle', m.path);
});

test('sidecar-unix-socket.yaml reaches mesh-sds through a pipe address', () => {
  const { value } = load('sidecar-unix-socket.yaml');
  const sds = ((value['static_resources'] as any).clusters as any[])[0];
  const addr = sds.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address;
  assert.ok(addr.pipe?.path?.startsWith('/'), 'absolute socket path');
});

test('spire-compatible.yaml uses only SPIRE agent names', () => {
  const names = of(load('spire-compatible.yaml').messages, SDS_CONFIG).map((m) => m.value['name']);
  assert.deepEqual([...new Set(names)].sort(), ['ALL', 'ROOTCA', 'default']);
});

function mutated(file: string, from: string | RegExp, to: string) {
  const text = readFileSync(join(DIR, file), 'utf8');
  const next = text.replace(from, to);
  assert.notEqual(next, text, `mutation ${String(from)} applied`);
  return () => decodeBootstrapStrict(parse(substitute(next)));
}

function failsAt(fn: () => unknown, path: RegExp, reason: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ProtoJsonError, String(e));
    assert.match(e.path, path);
    assert.match(e.message, reason);
    return true;
  });
}

test('the checker rejects a misspelled field in a real config, naming its path', () => {
  failsAt(
    mutated('sidecar.yaml', 'tls_certificate_sds_secret_configs:', 'tls_certificate_sds_secret_config:'),
    /^static_resources\.clusters\[1\]\.transport_socket\.typed_config\.common_tls_context\.tls_certificate_sds_secret_config$/,
    /unknown field "tls_certificate_sds_secret_config" in envoy\.extensions\.transport_sockets\.tls\.v3\.CommonTlsContext/,
  );
  failsAt(mutated('gateway.yaml', /^ {2}clusters:/m, '  clustrs:'), /^static_resources\.clustrs$/, /unknown field "clustrs"/);
  failsAt(mutated('sidecar.yaml', 'set_node_on_first_message_only', 'set_node_on_first_message'), /api_config_source\.set_node_on_first_message$/, /unknown field/);
});

test('the checker rejects an unknown @type in a real config', () => {
  failsAt(
    mutated('sidecar.yaml', 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router', 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Routr'),
    /^static_resources\.listeners\[0\]\.filter_chains\[0\]\.filters\[0\]\.typed_config\.http_filters\[0\]\.typed_config\.@type$/,
    /unknown @type "type\.googleapis\.com\/envoy\.extensions\.filters\.http\.router\.v3\.Routr"/,
  );
});

test('the checker rejects a misspelled enum value in a real config', () => {
  failsAt(mutated('spire-compatible.yaml', 'api_type: GRPC', 'api_type: GRCP'), /api_config_source\.api_type$/, /unknown value "GRCP"/);
});
