// Text a proxy chose — resource names, type_url, node id, a NACK's detail — reaches log lines and
// /debug/proxies: a key or a token in it must not (SPEC §5: a private key or token never appears
// in any output). A real token-authenticated server, its own logger captured, raw HTTP/2 peers,
// and the suites' leak scan over everything logged or shown.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { startServer } from '../../src/server/serve.js';
import { createLogger } from '../../src/server/logger.js';
import { PATHS, SECRET_TYPE, discoveryRequest, field, grpcFrame, rawCall, rawConnect } from '../helpers/raw-grpc.js';
import { LeakScan } from '../helpers/leak-scan.js';
import { meshIdentityYaml } from '../helpers/yaml.js';

const root = await mkdtemp(join(tmpdir(), 'mesh-sds-peer-text-'));
after(() => rm(root, { recursive: true, force: true }));

const lines: string[] = [];
const logger = createLogger('debug', { destination: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(...c.toString('utf8').split('\n').filter(Boolean)), cb()) }) });

/** A private key a confused proxy (or a hostile one) puts where a name goes. */
const keyPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
const keyDerB64 = keyPem.replace(/-----[A-Z ]+-----|\s/g, '');
const keyOnOneLine = `-----BEGIN PRIVATE KEY-----${keyDerB64}`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a key or a token in a resource name, a type_url, a node id or a NACK detail is scrubbed from every log line and from /debug/proxies; the rest of the text stays', async () => {
  const resourcesDir = join(root, 'resources');
  await cp('examples/quickstart', resourcesDir, { recursive: true });
  const s = await startServer({ resourcesDir, stateDir: join(root, 'state'), listen: '127.0.0.1:0', auth: 'token', zone: 'default', admin: '127.0.0.1:0', logger });
  const session = rawConnect(s.address);
  const scan = new LeakScan();
  try {
    await s.ready;
    const token = await s.tokens!.generate({ mesh: 'default', name: 'backend-1.shop', validForMs: 3_600_000 });
    const otherToken = await s.tokens!.generate({ mesh: 'default', name: 'frontend-1.shop', validForMs: 3_600_000 });
    scan.addToken(token);
    scan.addToken(otherToken);
    scan.addKeyPem(keyPem);
    const headers = { authorization: `Bearer ${token}` };
    const stream = (req: Parameters<typeof discoveryRequest>[0]) => rawCall(session, PATHS.StreamSecrets, { headers, body: [grpcFrame(discoveryRequest({ typeUrl: SECRET_TYPE, node: 'default.backend-1.shop', ...req }))] });

    // Each is refused (INVALID_ARGUMENT or UNAUTHENTICATED), logged with a reason quoting it.
    for (const req of [{ names: [keyOnOneLine] }, { names: [otherToken] }, { names: ['default'], typeUrl: otherToken }, { node: `default.${otherToken}`, names: ['default'] }]) {
      const end = await stream(req).ended;
      assert.ok(end.code === 3 || end.code === 16, `refused: ${end.code} ${end.message.slice(0, 80)}`);
    }

    // A NACK whose detail holds a token, a key block and the key's bytes bare.
    const c = stream({ names: ['system_trust_bundle'] });
    await c.waitForMessages(1, 5000);
    const nonce = [...s.registry.streams.values()].find((x) => x.info.proxy === 'default.backend-1.shop')!.info.lastSent!.nonce;
    const detail = `x509 error: bad bundle; Bearer ${otherToken} ${keyPem.trim()} raw ${keyDerB64} tok ${otherToken} end`;
    c.stream.write(grpcFrame(Buffer.concat([discoveryRequest({ typeUrl: SECRET_TYPE, names: ['system_trust_bundle'], nonce }), field(6, Buffer.concat([Buffer.from([0x08, 0x03]), field(2, detail)]))])));
    const nack = async () => lines.find((l) => l.includes('proxy rejected a secret (NACK)'));
    for (let i = 0; i < 100 && !(await nack()); i++) await sleep(20);
    const debug = await (await fetch(`${s.admin!.url}/debug/proxies`)).text();
    c.stream.close();
    await sleep(100);

    for (const l of lines) scan.addText('log', l);
    scan.addText('/debug/proxies', debug);
    assert.deepEqual(await scan.findings(), []);

    // Scrubbed, not dropped: what surrounds a credential is still there to read.
    const reasons = lines.filter((l) => l.includes('"msg":"stream closed"')).map((l) => (JSON.parse(l) as { reason?: string }).reason);
    assert.equal(reasons.filter((r) => /^unknown resource name "\[REDACTED\]"\.\.\. \(\d+ more characters\): no such secret can exist/.test(r ?? '')).length, 2, reasons.join('\n'));
    assert.ok(reasons.some((r) => /^unsupported type_url "\[REDACTED\]"\.\.\. \(\d+ more characters\): this stream serves only/.test(r ?? '')), reasons.join('\n'));
    const authFailed = JSON.parse(lines.find((l) => l.includes('"msg":"stream authentication failed"'))!) as { node: string };
    assert.equal(authFailed.node, 'default.[REDACTED]');
    const nackLine = JSON.parse((await nack())!) as { detail: string };
    assert.equal(nackLine.detail, 'x509 error: bad bundle; Bearer [REDACTED] [REDACTED] raw [REDACTED] tok [REDACTED] end');
    const shown = (JSON.parse(debug) as { proxy: string; streams: { lastNack?: { detail: string } }[] }[]).find((p) => p.proxy === 'default.backend-1.shop')!.streams.find((x) => x.lastNack)!;
    assert.equal(shown.lastNack!.detail, nackLine.detail);
  } finally {
    session.close();
    await s.close();
  }
});

test('/debug/identities shows a condition that only names a key (a CA certificate file holding a PRIVATE KEY) instead of dropping it', async () => {
  const resourcesDir = join(root, 'identities');
  await cp('examples/quickstart', resourcesDir, { recursive: true });
  // The CA's certificate and key files swapped by mistake: both are the key.
  const keyFile = join(root, 'ca.key');
  await writeFile(keyFile, keyPem);
  const provider = { type: 'Bundled', bundled: { ca: { certificate: { type: 'File', file: { path: keyFile } }, privateKey: { type: 'File', file: { path: keyFile } } } } };
  await writeFile(join(resourcesDir, 'swapped.yaml'), meshIdentityYaml('swapped', { namespace: 'kuma-system', matchLabels: { app: 'nothing' }, provider }));
  const s = await startServer({ resourcesDir, stateDir: join(root, 'identities-state'), listen: '127.0.0.1:0', auth: 'none', zone: 'default', admin: '127.0.0.1:0', logger: createLogger('silent') });
  try {
    await s.ready;
    const body = await (await fetch(`${s.admin!.url}/debug/identities`)).text();
    const swapped = (JSON.parse(body) as { name: string; conditions: { type: string; message?: string }[] }[]).find((i) => i.name === 'swapped')!;
    const ready = swapped.conditions.find((x) => x.type === 'Ready')!;
    assert.match(ready.message ?? '(no message)', /PEM block 1 is a PRIVATE KEY, not a CERTIFICATE/);
    assert.ok(!body.includes(keyDerB64.slice(20, 60)), 'the key itself is not shown');
  } finally {
    await s.close();
  }
});

test('a proxy repeating a request with a stale nonce writes one "request ignored" line at debug level per window, not one per request', async () => {
  const resourcesDir = join(root, 'stale');
  await cp('examples/quickstart', resourcesDir, { recursive: true });
  const s = await startServer({ resourcesDir, stateDir: join(root, 'stale-state'), listen: '127.0.0.1:0', auth: 'none', zone: 'default', admin: '127.0.0.1:0', logger });
  const session = rawConnect(s.address);
  try {
    await s.ready;
    const c = rawCall(session, PATHS.StreamSecrets, { body: [grpcFrame(discoveryRequest({ typeUrl: SECRET_TYPE, node: 'default.stale-1.shop', names: ['system_trust_bundle'] }))] });
    await c.waitForMessages(1, 5000);
    const before = lines.length;
    for (let i = 0; i < 300; i++) c.stream.write(grpcFrame(discoveryRequest({ typeUrl: SECRET_TYPE, names: ['system_trust_bundle'], nonce: 'stale-nonce' })));
    const ignored = () => lines.slice(before).filter((l) => l.includes('"msg":"request ignored"')).length;
    for (let i = 0; i < 100 && ignored() === 0; i++) await sleep(20);
    await sleep(300); // every request has been read by now
    assert.equal(ignored(), 1, lines.slice(before).join('\n').slice(0, 2000));
    c.stream.close();
  } finally {
    session.close();
    await s.close();
  }
});

test('a requested name shaped like a token, held because it is not available, is scrubbed from /debug/proxies (names and held, by the admin API\'s scrubbing of every view); the rest of the name stays', async () => {
  const resourcesDir = join(root, 'resources-held');
  await cp('examples/quickstart', resourcesDir, { recursive: true });
  const s = await startServer({ resourcesDir, stateDir: join(root, 'state-held'), listen: '127.0.0.1:0', auth: 'token', zone: 'default', admin: '127.0.0.1:0', logger });
  const session = rawConnect(s.address);
  const scan = new LeakScan();
  try {
    await s.ready;
    const token = await s.tokens!.generate({ mesh: 'default', name: 'backend-1.shop', validForMs: 3_600_000 });
    const otherToken = await s.tokens!.generate({ mesh: 'default', name: 'frontend-1.shop', validForMs: 3_600_000 });
    scan.addToken(token);
    scan.addToken(otherToken);
    // A well-formed SPIFFE ID (a JWT is made of path-segment characters) that is not this proxy's: held, not refused.
    const held = `spiffe://default/ns/${otherToken}`;
    const c = rawCall(session, PATHS.StreamSecrets, { headers: { authorization: `Bearer ${token}` }, body: [grpcFrame(discoveryRequest({ typeUrl: SECRET_TYPE, node: 'default.backend-1.shop', names: ['system_trust_bundle', held] }))] });
    await c.waitForMessages(1, 5000);
    const debug = await (await fetch(`${s.admin!.url}/debug/proxies`)).text();
    c.stream.close();
    const shown = (JSON.parse(debug) as { proxy: string; streams: { names: string[]; held: string[] }[] }[]).find((p) => p.proxy === 'default.backend-1.shop')!.streams[0]!;
    assert.deepEqual(shown.held, ['spiffe://default/ns/[REDACTED]']);
    assert.deepEqual([...shown.names].sort(), ['spiffe://default/ns/[REDACTED]', 'system_trust_bundle']);
    scan.addText('/debug/proxies', debug);
    assert.deepEqual(await scan.findings(), []);
  } finally {
    session.close();
    await s.close();
  }
});
