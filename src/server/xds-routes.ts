// The gRPC methods mesh-sds serves (SPEC §4), on its own HTTP/2 transport: SDS and ADS with the
// hand-written wire codecs of src/xds/wire.ts, and the standard health service (health-service.ts).
import { frameMessage } from './grpc-h2/framing.js';
import type { MethodCodec } from './grpc-h2/call.js';
import type { GrpcServer } from './grpc-h2/server.js';
import { registerHealth, type HealthService } from './health-service.js';
import { decodeDeltaDiscoveryRequest, decodeDiscoveryRequest, frameDeltaDiscoveryResponse, frameDiscoveryResponse, WireError, type FramedMessage } from '../xds/wire.js';
import type { DeltaDiscoveryResponse, DiscoveryResponse } from '../xds/messages.js';
import { admitCall, handleFetch, handleStream, type StreamDeps, type XdsRequest } from './xds-streams.js';

const SDS = '/envoy.service.secret.v3.SecretDiscoveryService';
const ADS = '/envoy.service.discovery.v3.AggregatedDiscoveryService';

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

export { HEALTH_CALLS_PER_CONNECTION } from './health-service.js';

/** Registers every method; the health service's handle says when the serving state changes. */
export function registerServices(server: GrpcServer, deps: StreamDeps, serving: () => boolean): HealthService {
  server.addBidi(`${SDS}/StreamSecrets`, sotw, (call) => handleStream(call, 'sotw', 'sotw', deps));
  server.addBidi(`${SDS}/DeltaSecrets`, delta, (call) => handleStream(call, 'delta', 'delta', deps));
  server.addSingleRequest(`${SDS}/FetchSecrets`, sotw, (call, request) => handleFetch(call, request, deps), (call) => admitCall(call, 'fetch', deps));
  server.addBidi(`${ADS}/StreamAggregatedResources`, sotw, (call) => handleStream(call, 'sotw', 'ads', deps));
  server.addBidi(`${ADS}/DeltaAggregatedResources`, delta, (call) => handleStream(call, 'delta', 'ads', deps));
  return registerHealth(server, [SDS.slice(1), ADS.slice(1)], serving);
}
