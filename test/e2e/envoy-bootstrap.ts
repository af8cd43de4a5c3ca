// Turns envoy-configs/sidecar.yaml into the bootstrap of one sidecar of the e2e world: the
// documented placeholder (${MESH_SDS_TOKEN}) is substituted as the README says, and the literal
// example values the README tells users to edit (node, KRI secret name, pinned peer SPIFFE ID,
// addresses) are edited, all on loopback. One test-only addition: the outbound cluster opens a new
// connection per request, because a trust change applies to new TLS connections only and the
// scenario must observe it on the next request.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { REPO } from './world.js';

/** Literal example values in sidecar.yaml (see envoy-configs/README.md, "The example mesh"). */
export const EXAMPLE_KRI = 'kri_mid_default_default_kuma-system_identity_';
export const EXAMPLE_PEER_ID = 'spiffe://default.default.mesh.local/ns/shop/sa/backend';

export interface SidecarSpec {
  /** node.id, `<mesh>.<dataplane>`, and node.cluster. */
  nodeId: string;
  nodeCluster: string;
  token: string;
  /** This proxy's identity secret (its MeshIdentity's KRI). */
  kri: string;
  /** SPIFFE ID the outbound cluster pins. */
  peerSpiffeId: string;
  ports: { admin: number; sds: number; inbound: number; outbound: number; app: number; peerInbound: number };
}

type Json = Record<string, unknown>;

function socketAddress(port: number): Json {
  return { socket_address: { address: '127.0.0.1', port_value: port } };
}

function setEndpoint(cluster: Json, port: number): void {
  const la = cluster['load_assignment'] as { endpoints: { lb_endpoints: { endpoint: { address: Json } }[] }[] };
  const ep = la.endpoints[0]?.lb_endpoints[0]?.endpoint;
  if (!ep) throw new Error(`cluster ${String(cluster['name'])} has no endpoint to retarget`);
  ep.address = socketAddress(port);
}

/** Replaces every string equal to `from`; returns how many. */
function replaceStrings(node: unknown, from: string, to: string): number {
  let n = 0;
  const walk = (v: unknown): unknown => {
    if (v === from) {
      n++;
      return to;
    }
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === 'object') {
      for (const [k, val] of Object.entries(v)) (v as Json)[k] = walk(val);
    }
    return v;
  };
  walk(node);
  return n;
}

export function sidecarBootstrap(spec: SidecarSpec, template = readFileSync(join(REPO, 'envoy-configs', 'sidecar.yaml'), 'utf8')): Json {
  if (!template.includes('${MESH_SDS_TOKEN}')) throw new Error('sidecar.yaml no longer has the ${MESH_SDS_TOKEN} placeholder');
  // The token is base64url: safe inside the YAML double-quoted string it replaces into.
  const text = template.replaceAll('${MESH_SDS_TOKEN}', spec.token);
  // JSON round trip: YAML aliases (*mesh_sds) become independent copies.
  const boot = JSON.parse(JSON.stringify(parse(text))) as Json;

  boot['node'] = { id: spec.nodeId, cluster: spec.nodeCluster };
  (boot['admin'] as Json)['address'] = socketAddress(spec.ports.admin);

  const sr = boot['static_resources'] as { clusters: Json[]; listeners: Json[] };
  const cluster = (name: string) => {
    const c = sr.clusters.find((x) => x['name'] === name);
    if (!c) throw new Error(`sidecar.yaml has no cluster ${name}`);
    return c;
  };
  const listener = (name: string) => {
    const l = sr.listeners.find((x) => x['name'] === name);
    if (!l) throw new Error(`sidecar.yaml has no listener ${name}`);
    return l;
  };
  setEndpoint(cluster('mesh_sds'), spec.ports.sds);
  setEndpoint(cluster('local_app'), spec.ports.app);
  const peer = cluster('backend');
  setEndpoint(peer, spec.ports.peerInbound);
  peer['typed_extension_protocol_options'] = {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
      '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
      common_http_protocol_options: { max_requests_per_connection: 1 },
      explicit_http_config: { http_protocol_options: {} },
    },
  };
  listener('inbound')['address'] = socketAddress(spec.ports.inbound);
  listener('outbound')['address'] = socketAddress(spec.ports.outbound);

  const kris = replaceStrings(boot, EXAMPLE_KRI, spec.kri);
  if (kris < 2) throw new Error(`expected the example KRI ${EXAMPLE_KRI} in sidecar.yaml (inbound and outbound), found ${kris}`);
  const pins = replaceStrings(boot, EXAMPLE_PEER_ID, spec.peerSpiffeId);
  if (pins < 1) throw new Error(`expected the pinned peer ${EXAMPLE_PEER_ID} in sidecar.yaml`);
  return boot;
}
