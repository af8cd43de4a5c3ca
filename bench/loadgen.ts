// Load generator (a separate process forked by bench/run.ts): holds many SotW StreamSecrets streams
// and behaves like Envoy — node on the first request only, every response ACKed with its
// version_info and nonce. Two shapes: `multiplexed` (one stream per proxy asking for both names,
// over a few shared connections) and `realistic` (as Envoy without ADS: per proxy its own HTTP/2
// connection with its token, one stream per name). It records when each proxy got what a phase
// waits for and reports to the parent over IPC.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { decodeMessage, decodeSecret, SECRET_TYPE_URL } from '../src/xds/protos.js';
import { RawGrpcConnection, type RawStream } from './h2-grpc.js';
import { ackEncoder, firstRequestEncoder, readDiscoveryResponse, type LeanResponse } from './lean-wire.js';
import { epochNow, type FromLoadgen, type LoadgenConfig, type Phase, type PhaseReport, type ToLoadgen } from './protocol.js';

const STREAM_SECRETS = '/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets';

interface Proxy {
  calls: RawStream[];
  conn?: RawGrpcConnection;
  /** Responses during the armed phase. */
  touched: boolean;
  cert?: Buffer;
  trust?: Buffer;
  hadIdentity: boolean;
  /** Baseline of the armed phase: the trust (trust phase) or certificate (rotation) to see replaced. */
  baseline?: Buffer;
  done: number | null;
  firstNew: number | null;
}

const IDENTITY = 'default';
const TRUST = 'system_trust_bundle';
const send = (m: FromLoadgen): void => void process.send?.(m);

/** Name and kind of an encoded envoy...tls.v3.Secret without a full decode: field 1 is `name`,
 * 2 `tls_certificate`, 4 `validation_context` (checked against protobufjs on the first response). */
function peekSecret(buf: Buffer): { name: string; kind: 'tls' | 'vc' | 'other' } {
  let pos = 0;
  let name = '';
  let kind: 'tls' | 'vc' | 'other' = 'other';
  const varint = (): number => {
    let v = 0;
    let shift = 0;
    for (;;) {
      const b = buf[pos++]!;
      v += (b & 0x7f) * 2 ** shift;
      if (b < 0x80 || pos >= buf.length) return v;
      shift += 7;
    }
  };
  while (pos < buf.length) {
    const tag = varint();
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (wire === 2) {
      const len = varint();
      if (field === 1) name = buf.toString('utf8', pos, pos + len);
      else if (field === 2) kind = 'tls';
      else if (field === 4) kind = 'vc';
      pos += len;
    } else if (wire === 0) varint();
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else break;
  }
  return { name, kind };
}

let config: LoadgenConfig | undefined;
/** Per stream kind (both names, or one name each in the realistic shape): its request encoders. */
interface Encoders {
  ack: (version: string, nonce: string) => Buffer;
  first: (nodeId: string, cluster: string) => Buffer;
}
let streamKinds: Encoders[] = [];
let tokens: string[] = [];
let connectErrors = 0;
let reconnects = 0;
let clients: RawGrpcConnection[] = [];
const proxies: Proxy[] = [];
let phase: Phase | undefined;
let remaining = 0;
let gaps = 0;
let responses = 0;
let sideChanges = 0;
let streamErrors: string[] = [];
let deadline: NodeJS.Timeout | undefined;
let checkedParser = false;
let cpuAtArm = process.cpuUsage();

function checkParser(value: Buffer): void {
  checkedParser = true;
  const fast = peekSecret(value);
  const full = decodeSecret(value);
  const kind = full['tls_certificate'] ? 'tls' : full['validation_context'] ? 'vc' : 'other';
  if (full['name'] !== fast.name || kind !== fast.kind) {
    send({ type: 'fatal', message: `secret parser mismatch: fast ${JSON.stringify(fast)} vs protobufjs ${String(full['name'])}/${kind}` });
  }
}

function report(): void {
  if (!phase) return;
  clearTimeout(deadline);
  const r: PhaseReport = {
    type: 'report',
    phase,
    doneAt: proxies.map((p) => p.done),
    firstNewAt: proxies.map((p) => p.firstNew),
    gaps,
    responses,
    sideChanges,
    streamErrors: streamErrors.slice(0, 20),
    cpuMs: ((u) => Math.round((u.user + u.system) / 1000))(process.cpuUsage(cpuAtArm)),
    touched: proxies.flatMap((p, i) => (p.touched ? [config!.from + i] : [])),
    // Distinct trust bundles held (replicas: one CA means one bundle everywhere).
    trustDigests: [...new Set(proxies.flatMap((p) => (p.trust ? [p.trust] : [])).map((t) => t.toString('latin1')))].map((t) => createHash('sha256').update(t, 'latin1').digest('hex').slice(0, 16)),
    connectErrors,
    reconnects,
  };
  phase = undefined;
  send(r);
}

function finishOne(p: Proxy, at: number): void {
  if (p.done !== null) return;
  p.done = at;
  if (--remaining === 0) report();
}

function onResponse(p: Proxy, call: RawStream, enc: Encoders, res: LeanResponse): void {
  const received = epochNow();
  let cert: Buffer | undefined;
  let trust: Buffer | undefined;
  for (const any of res.resources ?? []) {
    if (!checkedParser) checkParser(any.value);
    const { name } = peekSecret(any.value);
    if (name === IDENTITY) cert = any.value;
    else if (name === TRUST) trust = any.value;
  }
  // ACK exactly as Envoy does: the version and nonce of what it accepted, names unchanged.
  call.write(enc.ack(res.version_info, res.nonce));
  const acked = epochNow();
  if (p.hadIdentity && !cert) gaps++;
  const certChanged = cert !== undefined && (p.cert === undefined || !cert.equals(p.cert));
  const trustChanged = trust !== undefined && (p.trust === undefined || !trust.equals(p.trust));
  if (cert) {
    p.cert = cert;
    p.hadIdentity = true;
  }
  if (trust) p.trust = trust;
  if (!phase) return;
  responses++;
  p.touched = true;
  switch (phase) {
    case 'storm':
      if (p.cert && p.trust) finishOne(p, acked);
      break;
    case 'trust':
      if (certChanged && p.baseline) sideChanges++;
      if (trust && p.baseline && !trust.equals(p.baseline)) finishOne(p, acked);
      break;
    case 'churn':
      if (cert && p.baseline && !cert.equals(p.baseline)) p.firstNew ??= received;
      break;
    case 'rotation':
      if (trustChanged) sideChanges++;
      if (cert && p.baseline && !cert.equals(p.baseline)) {
        p.firstNew ??= received;
        finishOne(p, acked);
      }
      break;
  }
}

function openStreams(i: number, p: Proxy, conn: RawGrpcConnection): void {
  const id = config!.from + i;
  const headers: Record<string, string> = tokens[id] ? { authorization: `Bearer ${tokens[id]}` } : {};
  p.calls = streamKinds.map((enc) => {
    const call: RawStream = conn.openStream(
      STREAM_SECRETS,
      {
        onMessage: (msg) => onResponse(p, call, enc, readDiscoveryResponse(msg)),
        onEnd: (status, message) => {
          if (status !== 0 && status !== 1 && streamErrors.length < 100) streamErrors.push(`dp-${id}: ${status} ${message}`);
        },
      },
      headers,
    );
    // Dataplane dp-i of namespace bench, by its full node id (a token names it so).
    call.write(enc.first(`default.dp-${id}.bench`, `dp-${id}`));
    return call;
  });
}

/** Realistic storm: every proxy opens its own connection (at most `connectConcurrency` being set up at once), then its streams. */
function connectAll(): void {
  const c = config!;
  const addrs = c.localAddresses?.length ? c.localAddresses : [undefined];
  let next = 0;
  const start = (i: number, attempt: number): void => {
    RawGrpcConnection.connect(c.target, { localAddress: addrs[i % addrs.length], windowBytes: 1 << 20, waitForSettings: true }).then(
      (conn) => {
        const p = proxies[i]!;
        p.conn = conn;
        openStreams(i, p, conn);
        // Like Envoy, a proxy whose connection drops before it was served connects again.
        conn.onClose(() => {
          if (phase !== 'storm' || p.done !== null || p.conn !== conn || attempt >= 5) return;
          reconnects++;
          for (const call of p.calls) call.cancel();
          setTimeout(() => start(i, attempt + 1), 50 * (attempt + 1));
        });
        launch();
      },
      (e: Error) => {
        if (attempt < 5) return void setTimeout(() => start(i, attempt + 1), 50 * (attempt + 1));
        connectErrors++;
        if (streamErrors.length < 100) streamErrors.push(`dp-${c.from + i}: connect: ${e.message}`);
        launch();
      },
    );
  };
  const launch = () => {
    if (next < proxies.length) start(next++, 0);
  };
  for (let k = 0; k < (c.connectConcurrency ?? 200); k++) launch();
}

/** The hand encoders must produce what protobufjs reads back: checked once per generator. */
function checkEncoders(enc: Encoders, names: string[]): void {
  const first = decodeMessage('envoy.service.discovery.v3.DiscoveryRequest', enc.first('default.dp-0.bench', 'dp-0')) as Record<string, any>;
  const ack = decodeMessage('envoy.service.discovery.v3.DiscoveryRequest', enc.ack('7', 'nonce-1')) as Record<string, any>;
  const ok =
    first.node?.id === 'default.dp-0.bench' && first.node?.cluster === 'dp-0' && JSON.stringify(first.resource_names) === JSON.stringify(names) &&
    first.type_url === SECRET_TYPE_URL && ack.version_info === '7' && ack.response_nonce === 'nonce-1' && JSON.stringify(ack.resource_names) === JSON.stringify(names);
  if (!ok) send({ type: 'fatal', message: `request encoder mismatch: ${JSON.stringify({ first, ack })}` });
}

async function configure(c: LoadgenConfig): Promise<void> {
  config = c;
  const nameSets = c.shape === 'realistic' ? c.names.map((n) => [n]) : [c.names];
  streamKinds = nameSets.map((names) => {
    const enc = { ack: ackEncoder(names, SECRET_TYPE_URL), first: firstRequestEncoder(names, SECRET_TYPE_URL) };
    checkEncoders(enc, names);
    return enc;
  });
  if (c.tokensFile) tokens = readFileSync(c.tokensFile, 'utf8').split('\n');
  if (c.shape === 'multiplexed') clients = await Promise.all(Array.from({ length: c.channels }, () => RawGrpcConnection.connect(c.target)));
  for (let i = c.from; i < c.to; i++) proxies.push({ calls: [], touched: false, hadIdentity: false, done: null, firstNew: null });
  send({ type: 'ready', channels: clients.length });
}

function arm(next: Phase, deadlineMs: number): void {
  phase = next;
  cpuAtArm = process.cpuUsage();
  gaps = 0;
  responses = 0;
  sideChanges = 0;
  streamErrors = [];
  remaining = 0;
  connectErrors = 0;
  reconnects = 0;
  for (const p of proxies) {
    p.done = null;
    p.firstNew = null;
    p.touched = false;
    p.baseline = next === 'trust' ? p.trust : next === 'rotation' || next === 'churn' ? p.cert : undefined;
    // A stream without a baseline (it never got served) cannot complete; it stays null.
    if (next === 'storm' || (next !== 'churn' && p.baseline)) remaining++;
  }
  deadline = setTimeout(report, deadlineMs);
  send({ type: 'armed', phase: next });
  if (next === 'storm') {
    if (config!.shape === 'realistic') connectAll();
    else proxies.forEach((p, i) => openStreams(i, p, clients[i % clients.length]!));
  }
  // Churn ends when the parent says so.
  if (remaining === 0 && next !== 'churn') report();
}

function stop(): never {
  for (const p of proxies) {
    for (const call of p.calls) call.cancel();
    p.conn?.destroy();
  }
  for (const c of clients) c.close();
  process.exit(0);
}

process.on('message', (m: ToLoadgen) => {
  try {
    if (m.type === 'config') configure(m.config).catch((e: Error) => send({ type: 'fatal', message: `connect failed: ${e.message}` }));
    else if (m.type === 'arm') arm(m.phase, m.deadlineMs);
    else if (m.type === 'end') report();
    else if (m.type === 'stop') stop();
  } catch (e) {
    send({ type: 'fatal', message: (e as Error).stack ?? String(e) });
  }
});
// Never outlive the parent, and never run unbounded.
process.on('disconnect', () => stop());
setTimeout(() => stop(), 15 * 60_000).unref();
