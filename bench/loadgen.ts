// Load generator (a separate process forked by bench/run.ts): holds many SotW StreamSecrets streams
// over a few HTTP/2 connections and behaves like Envoy — node on the first request only, one stream
// per proxy subscribing to both names, every response ACKed with its version_info and nonce.
// It records when each stream got what a phase waits for and reports to the parent over IPC.
import { decodeMessage, decodeSecret, SECRET_TYPE_URL } from '../src/xds/protos.js';
import { RawGrpcConnection, type RawStream } from './h2-grpc.js';
import { ackEncoder, firstRequestEncoder, readDiscoveryResponse, type LeanResponse } from './lean-wire.js';
import { epochNow, type FromLoadgen, type LoadgenConfig, type Phase, type PhaseReport, type ToLoadgen } from './protocol.js';

const STREAM_SECRETS = '/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets';

interface Proxy {
  call?: RawStream;
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
let encodeAck: ((version: string, nonce: string) => Buffer) | undefined;
let encodeFirst: ((nodeId: string, cluster: string) => Buffer) | undefined;
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
  };
  phase = undefined;
  send(r);
}

function finishOne(p: Proxy, at: number): void {
  if (p.done !== null) return;
  p.done = at;
  if (--remaining === 0) report();
}

function onResponse(p: Proxy, res: LeanResponse): void {
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
  p.call!.write(encodeAck!(res.version_info, res.nonce));
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
  switch (phase) {
    case 'storm':
      if (p.cert && p.trust) finishOne(p, acked);
      break;
    case 'trust':
      if (certChanged && p.baseline) sideChanges++;
      if (trust && p.baseline && !trust.equals(p.baseline)) finishOne(p, acked);
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

function openStream(i: number, p: Proxy): void {
  const id = config!.from + i;
  p.call = clients[i % clients.length]!.openStream(STREAM_SECRETS, {
    onMessage: (msg) => onResponse(p, readDiscoveryResponse(msg)),
    onEnd: (status, message) => {
      if (status !== 0 && status !== 1 && streamErrors.length < 100) streamErrors.push(`dp-${id}: ${status} ${message}`);
    },
  });
  p.call.write(encodeFirst!(`default.dp-${id}`, `dp-${id}`));
}

/** The hand encoders must produce what protobufjs reads back: checked once per generator. */
function checkEncoders(names: string[]): void {
  const first = decodeMessage('envoy.service.discovery.v3.DiscoveryRequest', encodeFirst!('default.dp-0', 'dp-0')) as Record<string, any>;
  const ack = decodeMessage('envoy.service.discovery.v3.DiscoveryRequest', encodeAck!('7', 'nonce-1')) as Record<string, any>;
  const ok =
    first.node?.id === 'default.dp-0' && first.node?.cluster === 'dp-0' && JSON.stringify(first.resource_names) === JSON.stringify(names) &&
    first.type_url === SECRET_TYPE_URL && ack.version_info === '7' && ack.response_nonce === 'nonce-1' && JSON.stringify(ack.resource_names) === JSON.stringify(names);
  if (!ok) send({ type: 'fatal', message: `request encoder mismatch: ${JSON.stringify({ first, ack })}` });
}

async function configure(c: LoadgenConfig): Promise<void> {
  config = c;
  encodeAck = ackEncoder(c.names, SECRET_TYPE_URL);
  encodeFirst = firstRequestEncoder(c.names, SECRET_TYPE_URL);
  checkEncoders(c.names);
  clients = await Promise.all(Array.from({ length: c.channels }, () => RawGrpcConnection.connect(c.target)));
  for (let i = c.from; i < c.to; i++) proxies.push({ hadIdentity: false, done: null, firstNew: null });
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
  for (const p of proxies) {
    p.done = null;
    p.firstNew = null;
    p.baseline = next === 'trust' ? p.trust : next === 'rotation' ? p.cert : undefined;
    // A stream without a baseline (it never got served) cannot complete; it stays null.
    if (next === 'storm' || p.baseline) remaining++;
  }
  deadline = setTimeout(report, deadlineMs);
  send({ type: 'armed', phase: next });
  if (next === 'storm') proxies.forEach((p, i) => openStream(i, p));
  if (remaining === 0) report();
}

function stop(): never {
  for (const p of proxies) p.call?.cancel();
  for (const c of clients) c.close();
  process.exit(0);
}

process.on('message', (m: ToLoadgen) => {
  try {
    if (m.type === 'config') configure(m.config).catch((e: Error) => send({ type: 'fatal', message: `connect failed: ${e.message}` }));
    else if (m.type === 'arm') arm(m.phase, m.deadlineMs);
    else if (m.type === 'stop') stop();
  } catch (e) {
    send({ type: 'fatal', message: (e as Error).stack ?? String(e) });
  }
});
// Never outlive the parent, and never run unbounded.
process.on('disconnect', () => stop());
setTimeout(() => stop(), 15 * 60_000).unref();
