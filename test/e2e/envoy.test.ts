// Two real Envoy sidecars built from envoy-configs/sidecar.yaml, fed by a real mesh-sds process:
//   client -> frontend Envoy outbound (HTTP) -> mTLS -> backend Envoy inbound -> app (Node http)
// Sidecar -> sidecar mTLS, forced rotation and trust removal, observed through a request through
// both proxies, Envoy's admin API (/certs, /stats) and a direct TLS client.
// Needs ENVOY_BIN (path to an Envoy binary built with the SPIFFE validator, as the official builds
// are). Without it the scenario is skipped, and says so on stdout.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fetchOnce } from '../../src/client/sds-client.js';
import { decodeBootstrapStrict } from '../../src/xds/protos.js';
import { httpsGet } from './clients.js';
import { sidecarBootstrap, type SidecarSpec } from './envoy-bootstrap.js';
import { freePort, poll, sleep, startProc, type Proc } from './procs.js';
import { BACKEND, FRONTEND, startWorld, type Workload, type World } from './world.js';

const ENVOY_BIN = process.env['ENVOY_BIN'];
const SKIP = 'ENVOY_BIN not set: the real-Envoy scenario needs an Envoy binary, none is available on this machine';

const samplePorts = { admin: 1, sds: 2, inbound: 3, outbound: 4, app: 5, peerInbound: 6 };

it('the bootstraps the real-Envoy scenario derives from sidecar.yaml decode strictly (also without ENVOY_BIN)', () => {
  for (const w of [FRONTEND, BACKEND]) {
    const boot = sidecarBootstrap({ nodeId: `default.${w.node}`, nodeCluster: w.app, token: 'aaa.bbb.ccc', kri: w.kri, peerSpiffeId: BACKEND.spiffeId, ports: samplePorts });
    const { value } = decodeBootstrapStrict(boot);
    assert.equal((value['node'] as { id: string }).id, `default.${w.node}`);
    const text = JSON.stringify(boot);
    assert.ok(!text.includes('kuma-system_identity_') && !text.includes('default.default.mesh.local'), 'every example value replaced');
    assert.ok(!text.includes('0.0.0.0') && !text.includes('${'), 'loopback only, no placeholder left');
  }
});

interface Sidecar {
  w: Workload;
  proc: Proc;
  admin: number;
  inbound: number;
  outbound: number;
}

interface Reply {
  status: number;
  body: string;
}

function httpGet(port: number, timeoutMs = 5000): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent: false, headers: { connection: 'close' }, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

async function adminGet(s: Sidecar, path: string): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${s.admin}${path}`);
  if (r.status !== 200) throw new Error(`${s.w.name} Envoy admin ${path}: HTTP ${r.status}`);
  return r.text();
}

/** Serial numbers of the certificates an Envoy serves (admin /certs, cert_chain entries). */
async function servedSerials(s: Sidecar): Promise<Set<string>> {
  const doc = JSON.parse(await adminGet(s, '/certs')) as { certificates?: { cert_chain?: { serial_number?: string }[] }[] };
  return new Set((doc.certificates ?? []).flatMap((c) => (c.cert_chain ?? []).map((x) => x.serial_number ?? '')).filter(Boolean));
}

/** Sum of every counter whose name ends in `suffix` (admin /stats, text format `name: value`). */
async function statSum(s: Sidecar, suffix: string): Promise<number> {
  return (await adminGet(s, '/stats'))
    .split('\n')
    .map((l) => /^(\S+): (\d+)$/.exec(l))
    .filter((m): m is RegExpExecArray => !!m && m[1]!.endsWith(suffix))
    .reduce((sum, m) => sum + Number(m[2]), 0);
}

describe('real Envoy sidecars with envoy-configs/sidecar.yaml', { timeout: 180_000 }, () => {
  if (!ENVOY_BIN) {
    it('sidecar -> sidecar mTLS, trust removal and rotation through two real Envoys', (t) => {
      t.skip(SKIP);
    });
    return;
  }
  let world: World | undefined;
  let app: Server | undefined;
  let frontend: Sidecar;
  let backend: Sidecar;
  /** frontend's SVID and trust, for a direct TLS client to the backend Envoy. */
  let direct: { cert: string; key: string; ca: string };

  async function startSidecar(w: Workload, appPort: number, peerInbound: (self: number) => number): Promise<Sidecar> {
    const ports = { admin: await freePort(), inbound: await freePort(), outbound: await freePort() };
    const spec: SidecarSpec = {
      nodeId: `default.${w.node}`,
      nodeCluster: w.app,
      token: await world!.token(w),
      kri: w.kri,
      peerSpiffeId: BACKEND.spiffeId,
      ports: { ...ports, sds: world!.sdsPort, app: appPort, peerInbound: peerInbound(ports.inbound) },
    };
    const file = join(world!.root, `envoy-${w.name}.json`);
    writeFileSync(file, JSON.stringify(sidecarBootstrap(spec), null, 2), { mode: 0o600 }); // holds the token
    const proc = startProc(`envoy ${w.name}`, ENVOY_BIN!, ['-c', file, '--disable-hot-restart', '--concurrency', '1', '--log-level', 'warn', '--drain-time-s', '1']);
    world!.track(proc);
    const s: Sidecar = { w, proc, ...ports };
    // LIVE once its listeners warmed, i.e. once the SVID and the trust bundle arrived over SDS.
    await poll(`${w.name} Envoy /ready`, 30_000, async () => {
      if (proc.child.exitCode !== null) throw new Error(`Envoy exited: ${proc.stderr().slice(-2000)}`);
      return (await fetch(`http://127.0.0.1:${ports.admin}/ready`)).status === 200 ? true : undefined;
    }, 200);
    return s;
  }

  const throughBoth = () => httpGet(frontend.outbound);
  const directToBackend = () => httpsGet(backend.inbound, direct.ca, BACKEND.spiffeId, { cert: direct.cert, key: direct.key });

  before(async () => {
    world = await startWorld('envoy');
    app = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ xfcc: req.headers['x-forwarded-client-cert'] ?? null }));
    });
    await new Promise<void>((r) => app!.listen(0, '127.0.0.1', r));
    const appPort = (app.address() as AddressInfo).port;
    // backend's outbound cluster points at its own inbound (as in sidecar.yaml); frontend's at backend's.
    backend = await startSidecar(BACKEND, appPort, (self) => self);
    frontend = await startSidecar(FRONTEND, appPort, () => backend.inbound);
    const { secrets } = await fetchOnce({ server: world.sds, node: `default.${FRONTEND.node}`, token: await world.token(FRONTEND), names: [FRONTEND.kri, 'ALL'], timeoutMs: 15_000 });
    const [id, trust] = secrets;
    assert.ok(id?.kind === 'tls_certificate' && trust?.kind === 'spiffe');
    direct = { cert: id.certChainPem, key: id.keyPem, ca: trust.trustDomains.find((t) => t.name === BACKEND.trustDomain)!.pem };
  });

  after(async () => {
    await world?.close(); // stops the Envoys too (tracked)
    await new Promise<void>((r) => (app ? app.close(() => r()) : r()));
  });

  it('a request goes frontend Envoy -> mTLS -> backend Envoy -> app, and the app learns frontend\'s SPIFFE ID', async () => {
    const r = await poll('a request through both Envoys', 15_000, async () => {
      const x = await throughBoth();
      return x.status === 200 ? x : undefined;
    });
    const { xfcc } = JSON.parse(r.body) as { xfcc: string | null };
    assert.ok(xfcc, 'backend Envoy set x-forwarded-client-cert');
    assert.ok(xfcc.includes(`URI=${FRONTEND.spiffeId}`), xfcc);
    assert.ok(xfcc.includes(`By=${BACKEND.spiffeId}`), xfcc);
    // Each Envoy serves its own SVID, from mesh-sds.
    for (const s of [frontend, backend]) {
      const certs = await adminGet(s, '/certs');
      assert.ok(certs.includes(s.w.spiffeId), `${s.w.name} /certs shows ${s.w.spiffeId}`);
    }
  });

  it('removing frontend\'s trust domain makes new frontend connections fail at the backend Envoy; adding it back restores them', async () => {
    const w = world!;
    const failsBefore = await statSum(backend, 'ssl.fail_verify_error');
    w.setIdentity(FRONTEND, { meshTrustCreation: 'Disabled' });
    const refused = await poll('the backend Envoy to refuse frontend', 15_000, async () => {
      const x = await throughBoth();
      return x.status === 503 ? x : undefined;
    });
    assert.match(refused.body, /upstream connect error|reset|TLS|certificate/i);
    assert.ok((await statSum(backend, 'ssl.fail_verify_error')) > failsBefore, 'backend Envoy counted a failed client verification');
    await assert.rejects(directToBackend(), 'a direct TLS client with frontend\'s SVID is refused too');

    w.setIdentity(FRONTEND, { meshTrustCreation: 'Enabled' });
    await poll('the backend Envoy to accept frontend again', 15_000, async () => ((await throughBoth()).status === 200 ? true : undefined));
    assert.equal((await directToBackend()).status, 200);
  });

  it('a forced rotation gives the backend Envoy new certificates (new serials seen by a client) with no failed request', async () => {
    const w = world!;
    const adminSerials = new Set(await servedSerials(backend));
    const clientSerials = new Set<string>([(await directToBackend()).serverSerial]);
    // An 8 s expiry forces an immediate reissue, then the rotation timer fires at ~80 % of 8 s.
    w.setIdentity(BACKEND, { expiry: '8s' });
    const failures: string[] = [];
    let requests = 0;
    const started = Date.now();
    while (Date.now() - started < 14_000 && clientSerials.size < 3) {
      requests++;
      try {
        const through = await throughBoth();
        if (through.status !== 200) failures.push(`through both: HTTP ${through.status} ${through.body.slice(0, 200)}`);
        const d = await directToBackend();
        if (d.status !== 200) failures.push(`direct: HTTP ${d.status}`);
        clientSerials.add(d.serverSerial);
        for (const s of await servedSerials(backend)) adminSerials.add(s);
      } catch (e) {
        failures.push((e as Error).message);
      }
      await sleep(100);
    }
    w.setIdentity(BACKEND, { expiry: '24h' });
    assert.deepEqual(failures, [], `failures among ${requests} rounds`);
    assert.ok(clientSerials.size >= 3, `client saw serials ${[...clientSerials].join(', ')}`);
    // Envoy's admin API shows the same rotations (it prints serials in lower-case hex).
    const norm = (s: string) => s.toLowerCase().replace(/^0+/, '');
    const admin = new Set([...adminSerials].map(norm));
    for (const s of clientSerials) assert.ok(admin.has(norm(s)), `serial ${s} not in backend /certs (${[...admin].join(', ')})`);
  });
});

// Visible in the test output, not only as a skip reason.
if (!ENVOY_BIN) console.log(SKIP);
