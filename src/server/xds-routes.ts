// The gRPC methods mesh-sds serves (SPEC §4), on its own HTTP/2 transport: SDS and ADS with the
// hand-written wire codecs of src/xds/wire.ts, and the standard health service.
import { frameMessage } from './grpc-h2/framing.js';
import type { MethodCodec, ServerCall } from './grpc-h2/call.js';
import { Status, type CallStatus } from './grpc-h2/status.js';
import type { GrpcServer } from './grpc-h2/server.js';
import { countRefusedStream } from './grpc-h2/sessions.js';
import { decodeDeltaDiscoveryRequest, decodeDiscoveryRequest, frameDeltaDiscoveryResponse, frameDiscoveryResponse, WireError, type FramedMessage } from '../xds/wire.js';
import type { DeltaDiscoveryResponse, DiscoveryResponse } from '../xds/messages.js';
import { admitCall, handleFetch, handleStream, type StreamDeps, type XdsRequest } from './xds-streams.js';

const SDS = '/envoy.service.secret.v3.SecretDiscoveryService';
const ADS = '/envoy.service.discovery.v3.AggregatedDiscoveryService';
const HEALTH = '/grpc.health.v1.Health';

/**
 * Requests are read field by field; a malformed one reaches the handler as such, so the client
 * learns what is wrong (INVALID_ARGUMENT with the reason) instead of an opaque INTERNAL.
 * Responses are encoded straight into a gRPC frame whose secrets' pre-encoded bytes are sent by
 * reference, not copied (see wire.ts).
 */
function xdsCodec<Res>(decode: (b: Buffer) => unknown, frame: (r: Res) => FramedMessage): MethodCodec<XdsRequest, Res | Buffer> {
  return {
    decode(message) {
      try {
        return decode(message) as XdsRequest;
      } catch (e) {
        if (e instanceof WireError) return { malformed: e.message } as XdsRequest;
        throw e;
      }
    },
    encodeFramed: (r) => (Buffer.isBuffer(r) ? frameMessage(r) : frame(r)),
  };
}
const sotw = xdsCodec<DiscoveryResponse>(decodeDiscoveryRequest, frameDiscoveryResponse);
const delta = xdsCodec<DeltaDiscoveryResponse>(decodeDeltaDiscoveryRequest, frameDeltaDiscoveryResponse);

/** grpc.health.v1.HealthCheckResponse { status = 1 }, framed once: SERVING is 1, NOT_SERVING 2. */
const healthFrame = (status: 1 | 2) => frameMessage(Buffer.from([0x08, status]));
const SERVING = healthFrame(1);
const NOT_SERVING = healthFrame(2);
/** The request names a service; this server has one status for all, so it is not read. */
const health: MethodCodec<Buffer, Buffer> = { decode: (b) => b, encodeFramed: (frame) => frame };

/**
 * Health calls are answered without a token (probes carry none), so what one connection may hold
 * of them is bounded: Watch stays open by design, and thousands of them with large headers on one
 * connection were memory any peer could take.
 */
export const HEALTH_CALLS_PER_CONNECTION = 16;
const openHealthCalls = new WeakMap<object, number>();

function admitHealth(call: ServerCall<Buffer, Buffer>): CallStatus | undefined {
  call.releaseHeaders(); // a probe's headers are never read
  const session = call.session;
  if (!session) return undefined;
  const open = openHealthCalls.get(session) ?? 0;
  if (open >= HEALTH_CALLS_PER_CONNECTION) {
    countRefusedStream(session);
    return { code: Status.RESOURCE_EXHAUSTED, details: `more than ${HEALTH_CALLS_PER_CONNECTION} health calls open on one connection` };
  }
  openHealthCalls.set(session, open + 1);
  call.stream.once('close', () => openHealthCalls.set(session, (openHealthCalls.get(session) ?? 1) - 1));
  return undefined;
}

export function registerServices(server: GrpcServer, deps: StreamDeps, serving: () => boolean): void {
  server.addBidi(`${SDS}/StreamSecrets`, sotw, (call) => handleStream(call, 'sotw', 'sotw', deps));
  server.addBidi(`${SDS}/DeltaSecrets`, delta, (call) => handleStream(call, 'delta', 'delta', deps));
  server.addSingleRequest(`${SDS}/FetchSecrets`, sotw, (call, request) => handleFetch(call, request, deps), (call) => admitCall(call, 'fetch', deps));
  server.addBidi(`${ADS}/StreamAggregatedResources`, sotw, (call) => handleStream(call, 'sotw', 'ads', deps));
  server.addBidi(`${ADS}/DeltaAggregatedResources`, delta, (call) => handleStream(call, 'delta', 'ads', deps));
  server.addSingleRequest(
    `${HEALTH}/Check`,
    health,
    (call) => {
      call.write(serving() ? SERVING : NOT_SERVING);
      call.end();
    },
    admitHealth,
  );
  // Watch sends the status once and stays open, as before.
  server.addSingleRequest(`${HEALTH}/Watch`, health, (call) => call.write(serving() ? SERVING : NOT_SERVING), admitHealth);
}
