// The client's protocol behaviour against a scripted fake SDS server that records every request.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { DiscoveryRequest, DiscoveryResponse } from '../../src/xds/messages.js';
import { loadProtos, SECRET_TYPE_URL } from '../../src/xds/protos.js';
import { spiffeValidatorSecret, tlsCertificateSecret } from '../../src/xds/secrets.js';
import { Backoff, fetchOnce, openSecretStream, SdsError } from '../../src/client/sds-client.js';
import type { DecodedSecret } from '../../src/client/decode.js';
import { makeCa, openssl, type TestCa } from '../helpers/openssl.js';

/** A server certificate for 127.0.0.1 signed by `ca`. */
function serverCert(ca: TestCa): { certPem: string; keyPem: string } {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-tls-'));
  try {
    writeFileSync(join(dir, 'ca.crt'), ca.certPem);
    writeFileSync(join(dir, 'ca.key'), ca.keyPem);
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', join(dir, 's.key')]);
    const csr = openssl(['req', '-new', '-key', join(dir, 's.key'), '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1']);
    const certPem = openssl(['x509', '-req', '-CA', join(dir, 'ca.crt'), '-CAkey', join(dir, 'ca.key'), '-copy_extensions', 'copy', '-days', '1', '-set_serial', '7'], csr);
    return { certPem, keyPem: readFileSync(join(dir, 's.key'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

type Call = grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>;

/** A server whose StreamSecrets handler is swapped per test; records requests per stream. */
class FakeSds {
  server = new grpc.Server();
  address = '';
  streams: { requests: DiscoveryRequest[]; metadata: grpc.Metadata; call: Call }[] = [];
  onStream: (call: Call, index: number) => void = () => undefined;
  onRequest: (req: DiscoveryRequest, call: Call, index: number) => void = () => undefined;

  async start(target = '127.0.0.1:0', creds = grpc.ServerCredentials.createInsecure()): Promise<void> {
    this.server.addService(loadProtos().SecretDiscoveryService, {
      StreamSecrets: (call: Call) => {
        const index = this.streams.length;
        const rec = { requests: [] as DiscoveryRequest[], metadata: call.metadata, call };
        this.streams.push(rec);
        call.on('data', (req: DiscoveryRequest) => {
          rec.requests.push(req);
          this.onRequest(req, call, index);
        });
        call.on('error', () => undefined);
        this.onStream(call, index);
      },
      DeltaSecrets: () => undefined,
      FetchSecrets: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => cb({ code: grpc.status.UNIMPLEMENTED }),
    });
    const port = await new Promise<number>((res, rej) =>
      this.server.bindAsync(target, creds, (e, p) => (e ? rej(e) : res(p))),
    );
    this.address = target.startsWith('unix:') ? target : `127.0.0.1:${port}`;
  }

  reset(): void {
    this.streams = [];
    this.onStream = () => undefined;
    this.onRequest = () => undefined;
  }

  async waitFor(pred: () => boolean, what: string, ms = 5000): Promise<void> {
    const end = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

function response(version: string, nonce: string, resources: { any: { type_url: string; value: Buffer } }[]): DiscoveryResponse {
  return { version_info: version, nonce, type_url: SECRET_TYPE_URL, resources: resources.map((r) => r.any) };
}

describe('SDS client (against a scripted server)', () => {
  const fake = new FakeSds();
  let a: TestCa;
  let b: TestCa;
  before(async () => {
    await fake.start();
    a = makeCa('A', { trustDomain: 'a.example' });
    b = makeCa('B', { trustDomain: 'b.example' });
  });
  after(() => fake.server.forceShutdown());

  it('sends node (id and cluster) and the token on the first request only, then ACKs with version_info and response_nonce', async () => {
    fake.reset();
    fake.onRequest = (req, call) => {
      if (req.response_nonce === '') call.write(response('v1', 'n1', [tlsCertificateSecret('default', a.certPem, a.keyPem, 'serial-a')]));
      else if (req.response_nonce === 'n1') call.write(response('v2', 'n2', [spiffeValidatorSecret('ALL', [{ trustDomain: 'b.example', pem: b.certPem }])]));
    };
    const seen: { names: string[]; version: string; all: string[] }[] = [];
    const s = openSecretStream({ server: fake.address, node: 'default.web', token: 'tok-123', names: ['default', 'ALL'] }, (secrets, version, all) => {
      seen.push({ names: secrets.map((x) => x.name), version, all: [...all.keys()].sort() });
    });
    await fake.waitFor(() => (fake.streams[0]?.requests.length ?? 0) >= 3, 'two ACKs');
    s.close();
    await s.done;
    const [first, ack1, ack2] = fake.streams[0]!.requests;
    assert.equal(first!.node?.id, 'default.web');
    assert.equal(first!.node?.cluster, 'web');
    assert.deepEqual(first!.resource_names, ['default', 'ALL']);
    assert.equal(first!.type_url, SECRET_TYPE_URL);
    assert.equal(ack1!.node ?? undefined, undefined, 'node only on the first request');
    assert.equal(ack1!.version_info, 'v1');
    assert.equal(ack1!.response_nonce, 'n1');
    assert.equal(ack1!.error_detail ?? undefined, undefined);
    assert.equal(ack2!.version_info, 'v2');
    assert.equal(ack2!.response_nonce, 'n2');
    assert.deepEqual(fake.streams[0]!.metadata.get('authorization'), ['Bearer tok-123']);
    assert.deepEqual(seen, [
      { names: ['default'], version: 'v1', all: ['default'] },
      { names: ['ALL'], version: 'v2', all: ['ALL', 'default'] },
    ]);
  });

  it('NACKs (error_detail, last accepted version) when the callback throws, and keeps the previous state', async () => {
    fake.reset();
    fake.onRequest = (req, call) => {
      if (req.response_nonce === '') call.write(response('v1', 'n1', [tlsCertificateSecret('default', a.certPem, a.keyPem, 'serial-a')]));
      else if (req.response_nonce === 'n1') call.write(response('v2', 'n2', [tlsCertificateSecret('default', b.certPem, b.keyPem, 'serial-b')]));
      else if (req.response_nonce === 'n2') call.write(response('v3', 'n3', [tlsCertificateSecret('default', a.certPem, a.keyPem, 'serial-a')]));
    };
    const errors: SdsError[] = [];
    const alls: DecodedSecret[] = [];
    const s = openSecretStream(
      { server: fake.address, node: 'default.web', names: ['default'], onError: (e) => errors.push(e) },
      (_secrets, version, all) => {
        if (version === 'v2') throw new Error('refusing v2');
        alls.push(all.get('default')!);
      },
    );
    await fake.waitFor(() => (fake.streams[0]?.requests.length ?? 0) >= 4, 'ACK, NACK, ACK');
    s.close();
    await s.done;
    const nack = fake.streams[0]!.requests[2]!;
    assert.equal(nack.response_nonce, 'n2');
    assert.equal(nack.version_info, 'v1', 'a NACK carries the last accepted version');
    assert.match(nack.error_detail?.message ?? '', /refusing v2/);
    assert.equal(fake.streams[0]!.requests[3]!.version_info, 'v3');
    assert.equal(fake.streams[0]!.requests[3]!.error_detail ?? undefined, undefined);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.fatal, false);
    assert.equal(alls.length, 2);
  });

  it('NACKs a secret whose private key does not match its certificate, without calling back', async () => {
    fake.reset();
    fake.onRequest = (req, call) => {
      if (req.response_nonce === '') call.write(response('v1', 'n1', [tlsCertificateSecret('default', a.certPem, b.keyPem, 'serial-a')]));
    };
    let calls = 0;
    const s = openSecretStream({ server: fake.address, node: 'default.web', names: ['default'] }, () => {
      calls++;
    });
    await fake.waitFor(() => (fake.streams[0]?.requests.length ?? 0) >= 2, 'NACK');
    s.close();
    await s.done;
    const nack = fake.streams[0]!.requests[1]!;
    assert.match(nack.error_detail?.message ?? '', /private_key does not match/);
    assert.doesNotMatch(nack.error_detail?.message ?? '', /PRIVATE KEY/);
    assert.equal(calls, 0);
  });

  it('ignores secrets for names it never asked for, as Envoy does, even one it would refuse: the names asked for are accepted', async () => {
    fake.reset();
    fake.onRequest = (req, call) => {
      if (req.response_nonce !== '') return;
      call.write(response('v1', 'n1', [tlsCertificateSecret('default', a.certPem, a.keyPem, 'serial-a'), tlsCertificateSecret('someone-else', a.certPem, b.keyPem, 'serial-x'), tlsCertificateSecret('spiffe://b.example/other', b.certPem, b.keyPem, 'serial-b')]));
    };
    const seen: { names: string[]; all: string[] }[] = [];
    const s = openSecretStream({ server: fake.address, node: 'default.web', names: ['default'] }, (secrets, _version, all) => {
      seen.push({ names: secrets.map((x) => x.name), all: [...all.keys()] });
    });
    await fake.waitFor(() => (fake.streams[0]?.requests.length ?? 0) >= 2, 'the answer to v1');
    s.close();
    await s.done;
    const answer = fake.streams[0]!.requests[1]!;
    assert.equal(answer.error_detail ?? undefined, undefined, `NACKed: ${answer.error_detail?.message}`);
    assert.equal(answer.version_info, 'v1');
    // Not kept either: a server sending ever new names would otherwise grow the client's state without end.
    assert.deepEqual(seen, [{ names: ['default'], all: ['default'] }]);
  });

  it('NACKs a response that carries a name asked for twice, as Envoy does, without calling back: which one is meant cannot be told', async () => {
    fake.reset();
    fake.onRequest = (req, call) => {
      if (req.response_nonce !== '') return;
      call.write(response('v1', 'n1', [tlsCertificateSecret('default', a.certPem, a.keyPem, 'serial-a'), tlsCertificateSecret('default', b.certPem, b.keyPem, 'serial-b')]));
    };
    let calls = 0;
    const s = openSecretStream({ server: fake.address, node: 'default.web', names: ['default'], onError: () => undefined }, () => {
      calls++;
    });
    await fake.waitFor(() => (fake.streams[0]?.requests.length ?? 0) >= 2, 'the answer to v1');
    s.close();
    await s.done;
    const answer = fake.streams[0]!.requests[1]!;
    assert.match(answer.error_detail?.message ?? '', /secret "default" comes more than once in the response/);
    assert.equal(answer.version_info, '');
    assert.equal(calls, 0);
  });

  it('reads one response at a time: a server pushing 1 MiB responses faster than they are handled is held back by flow control, and none is lost', { timeout: 60_000 }, async () => {
    fake.reset();
    const n = 64;
    // 1 MiB each: text around the PEM block is allowed (and dropped), and cheap to decode.
    const big = tlsCertificateSecret('default', `${a.certPem}${'#'.repeat(1 << 20)}\n`, a.keyPem, 'serial-a').any;
    let flushed = 0;
    fake.onStream = (call) => {
      for (let i = 0; i < n; i++) call.write(response(`v${i}`, `n${i}`, [{ any: big }]), () => flushed++);
    };
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const versions: string[] = [];
    const s = openSecretStream({ server: fake.address, node: 'default.web', names: ['default'] }, async (_secrets, version) => {
      versions.push(version);
      if (versions.length === 1) await held;
    });
    try {
      // Read without end while the first is handled, all of them would be in this process by now.
      await fake.waitFor(() => flushed === n, 'every response sent', 5000).catch(() => undefined);
      assert.ok(flushed < n, `all ${n} responses (${n} MiB) were taken in while the first was still being handled`);
      release();
      await fake.waitFor(() => versions.length === n, 'every response handled', 40_000);
      assert.deepEqual(versions, Array.from({ length: n }, (_v, i) => `v${i}`));
    } finally {
      release();
      s.close();
      await s.done;
    }
  });

  it('reconnects after UNAVAILABLE, sending node again and the last accepted version', async () => {
    fake.reset();
    fake.onRequest = (req, call, index) => {
      if (index === 0 && req.response_nonce === '') call.write(response('v1', 'n1', [tlsCertificateSecret('default', a.certPem, a.keyPem, 'serial-a')]));
      else if (index === 0 && req.response_nonce === 'n1') call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'going away' });
    };
    const errors: { err: SdsError; retry?: number }[] = [];
    const s = openSecretStream(
      { server: fake.address, node: 'default.web', names: ['default'], backoff: { initialMs: 20, maxMs: 40 }, onError: (err, retry) => errors.push({ err, retry }) },
      () => undefined,
    );
    await fake.waitFor(() => (fake.streams[1]?.requests.length ?? 0) >= 1, 'a second stream');
    s.close();
    await s.done;
    const again = fake.streams[1]!.requests[0]!;
    assert.equal(again.node?.id, 'default.web');
    assert.equal(again.version_info, 'v1');
    assert.equal(again.response_nonce, '');
    assert.equal(errors[0]!.err.code, grpc.status.UNAVAILABLE);
    assert.ok(errors[0]!.retry !== undefined && errors[0]!.retry < 20);
  });

  it('a server that ends the stream without an error is said to have closed it (not "OK: OK"), and is reconnected to', async () => {
    fake.reset();
    fake.onRequest = (_req, call, index) => {
      if (index === 0) call.end();
    };
    const errors: SdsError[] = [];
    const s = openSecretStream({ server: fake.address, node: 'default.web', names: ['default'], backoff: { initialMs: 20, maxMs: 40 }, onError: (err) => errors.push(err) }, () => undefined);
    await fake.waitFor(() => (fake.streams[1]?.requests.length ?? 0) >= 1, 'a second stream');
    s.close();
    await s.done;
    assert.equal(errors[0]?.message, 'OK: the server closed the stream');
  });

  for (const code of [grpc.status.UNAUTHENTICATED, grpc.status.INVALID_ARGUMENT]) {
    it(`ends (does not retry) on ${grpc.status[code]}`, async () => {
      fake.reset();
      fake.onRequest = (_req, call) => call.emit('error', { code, details: 'no way' });
      const s = openSecretStream({ server: fake.address, node: 'default.web', names: ['default'], backoff: { initialMs: 1, maxMs: 1 } }, () => undefined);
      await assert.rejects(s.done, (e: unknown) => e instanceof SdsError && e.code === code && e.fatal && /no way/.test(e.message));
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(fake.streams.length, 1);
    });
  }

  it('fetchOnce waits until every name has arrived, ACKs, and returns them in request order', async () => {
    fake.reset();
    fake.onRequest = (req, call) => {
      if (req.response_nonce === '') call.write(response('v1', 'n1', [spiffeValidatorSecret('ALL', [{ trustDomain: 'b.example', pem: b.certPem }])]));
      else if (req.response_nonce === 'n1') setTimeout(() => call.write(response('v2', 'n2', [tlsCertificateSecret('default', a.certPem, a.keyPem, 'serial-a')])), 30);
    };
    const r = await fetchOnce({ server: fake.address, node: 'default.web', names: ['default', 'ALL'], timeoutMs: 3000 });
    assert.deepEqual(r.secrets.map((s) => `${s.name}:${s.kind}`), ['default:tls_certificate', 'ALL:spiffe']);
    assert.equal(r.versionInfo, 'v2');
    const all = r.secrets[1]!;
    assert.ok(all.kind === 'spiffe' && all.trustDomains[0]!.name === 'b.example' && all.trustDomains[0]!.pem.includes('BEGIN CERTIFICATE'));
    await fake.waitFor(() => fake.streams[0]!.requests.some((q) => q.response_nonce === 'n2'), 'ACK of n2');
  });

  it('fetchOnce times out naming the secrets that never came', async () => {
    fake.reset();
    fake.onRequest = (req, call) => {
      if (req.response_nonce === '') call.write(response('v1', 'n1', [tlsCertificateSecret('default', a.certPem, a.keyPem, 'serial-a')]));
    };
    await assert.rejects(
      fetchOnce({ server: fake.address, node: 'default.web', names: ['default', 'ALL'], timeoutMs: 300 }),
      (e: unknown) => e instanceof SdsError && e.code === grpc.status.DEADLINE_EXCEEDED && /"ALL"/.test(e.message) && !/"default"/.test(e.message),
    );
  });
});

describe('SDS client transports', () => {
  let a: TestCa;
  let dir: string;
  before(() => {
    a = makeCa('A', { trustDomain: 'a.example' });
    dir = mkdtempSync(join(tmpdir(), 'mesh-sds-transport-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const serveDefault = (fake: FakeSds) => {
    fake.onRequest = (req, call) => {
      if (req.response_nonce === '') call.write(response('v1', 'n1', [tlsCertificateSecret('default', a.certPem, a.keyPem, 'serial-a')]));
    };
  };
  /** A fake SDS server on TLS (a certificate of its own CA) answering `default`. */
  const startTlsFake = async (): Promise<{ serverCa: TestCa; fake: FakeSds }> => {
    const serverCa = makeCa('Server CA');
    const { certPem, keyPem } = serverCert(serverCa);
    const fake = new FakeSds();
    await fake.start('127.0.0.1:0', grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(certPem), private_key: Buffer.from(keyPem) }], false));
    serveDefault(fake);
    return { serverCa, fake };
  };

  it('connects to a unix:///path socket', async () => {
    const fake = new FakeSds();
    await fake.start(`unix://${join(dir, 'sds.sock')}`);
    serveDefault(fake);
    try {
      const r = await fetchOnce({ server: fake.address, node: 'default.web', names: ['default'], timeoutMs: 3000 });
      assert.equal(r.secrets[0]!.kind, 'tls_certificate');
    } finally {
      fake.server.forceShutdown();
    }
  });

  it('speaks TLS, verifying the server against the given CA, and refuses a server the CA did not sign', async () => {
    const { serverCa, fake } = await startTlsFake();
    try {
      const r = await fetchOnce({ server: fake.address, node: 'default.web', names: ['default'], tls: { ca: serverCa.certPem }, timeoutMs: 3000 });
      assert.equal(r.secrets[0]!.name, 'default');
      // Verification is real: the wrong CA never gets an answer.
      await assert.rejects(fetchOnce({ server: fake.address, node: 'default.web', names: ['default'], tls: { ca: a.certPem }, timeoutMs: 700, backoff: { initialMs: 50 } }), /DEADLINE_EXCEEDED.*UNAVAILABLE/);
    } finally {
      fake.server.forceShutdown();
    }
  });

  it('reads a tls.ca path as --ca-file is read: a CA file (or a link to one) is used; a FIFO, /dev/zero or a 2 MiB file is refused at once, naming it', { timeout: 10_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-client-ca-'));
    const { serverCa, fake } = await startTlsFake();
    try {
      writeFileSync(join(dir, 'ca.pem'), serverCa.certPem);
      symlinkSync(join(dir, 'ca.pem'), join(dir, 'ca-link.pem'));
      const r = await fetchOnce({ server: fake.address, node: 'default.web', names: ['default'], tls: { ca: join(dir, 'ca-link.pem') }, timeoutMs: 3000 });
      assert.equal(r.secrets[0]!.name, 'default');
      execFileSync('mkfifo', [join(dir, 'fifo')]);
      writeFileSync(join(dir, 'big'), Buffer.alloc(2 * 1024 * 1024, 'a'));
      const refused: [string, string][] = [
        [join(dir, 'fifo'), 'is a FIFO, not a regular file'],
        ['/dev/zero', 'is a character device, not a regular file'],
        [join(dir, 'big'), 'is larger than 1 MiB: not read'],
      ];
      for (const [path, problem] of refused) {
        await assert.rejects(fetchOnce({ server: fake.address, node: 'default.web', names: ['default'], tls: { ca: path }, timeoutMs: 3000 }), { message: `cannot read tls.ca ${path}: ${problem}` });
      }
    } finally {
      fake.server.forceShutdown();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Backoff (Envoy jittered exponential)', () => {
  it('draws uniformly below an interval that starts at 500 ms, doubles to 30 s, and resets', () => {
    const top = new Backoff(500, 30_000, () => 0.999999);
    const seq = Array.from({ length: 9 }, () => top.next());
    assert.deepEqual(seq, [499, 999, 1999, 3999, 7999, 15999, 29999, 29999, 29999]);
    top.reset();
    assert.equal(top.next(), 499);
    assert.equal(new Backoff(500, 30_000, () => 0).next(), 0);
  });
});
