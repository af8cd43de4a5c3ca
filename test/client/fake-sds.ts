// A scripted SDS server for agent tests: the test holds each stream and writes responses when it wants.
import * as grpc from '@grpc/grpc-js';
import type { DiscoveryRequest, DiscoveryResponse } from '../../src/xds/messages.js';
import { loadProtos, SECRET_TYPE_URL } from '../../src/xds/protos.js';

export type SdsCall = grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>;

export class ScriptedSds {
  private server = new grpc.Server();
  address = '';
  streams: { call: SdsCall; requests: DiscoveryRequest[]; metadata: grpc.Metadata }[] = [];
  /** Called for each new stream (e.g. to end it with a status at once). */
  onStream: (call: SdsCall, index: number) => void = () => undefined;

  /** `port` 0: any free one (a test restarting a server passes the port it had). */
  async start(port = 0): Promise<this> {
    this.server.addService(loadProtos().SecretDiscoveryService, {
      StreamSecrets: (call: SdsCall) => {
        const rec = { call, requests: [] as DiscoveryRequest[], metadata: call.metadata };
        this.streams.push(rec);
        call.on('data', (req: DiscoveryRequest) => rec.requests.push(req));
        call.on('error', () => undefined);
        this.onStream(call, this.streams.length - 1);
      },
      DeltaSecrets: () => undefined,
      FetchSecrets: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => cb({ code: grpc.status.UNIMPLEMENTED }),
    });
    const bound = await new Promise<number>((res, rej) => this.server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
    this.address = `127.0.0.1:${bound}`;
    return this;
  }

  /** Sends a response on the newest stream. */
  push(version: string, resources: { any: { type_url: string; value: Buffer } }[]): void {
    this.streams.at(-1)!.call.write({ version_info: version, nonce: `n-${version}`, type_url: SECRET_TYPE_URL, resources: resources.map((r) => r.any) });
  }

  /** The request answering a response of `version` (ACK or NACK), if it came. */
  answerTo(version: string): DiscoveryRequest | undefined {
    return this.streams.flatMap((s) => s.requests).find((r) => r.response_nonce === `n-${version}`);
  }

  close(): void {
    this.server.forceShutdown();
  }
}

export async function waitFor(pred: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
