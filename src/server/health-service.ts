// grpc.health.v1.Health as grpc's health-checking protocol specifies it: the server ("") and each
// service it serves are known, any other name is NOT_FOUND (Check) or SERVICE_UNKNOWN (Watch); a
// Watch is sent the status again whenever it changes (NOT_SERVING as draining begins).
import { frameMessage } from './grpc-h2/framing.js';
import type { MethodCodec, ServerCall } from './grpc-h2/call.js';
import type { GrpcServer } from './grpc-h2/server.js';
import { countRefusedStream, markNotBusy } from './grpc-h2/sessions.js';
import { Status, type CallStatus } from './grpc-h2/status.js';

const HEALTH = '/grpc.health.v1.Health';

/** grpc.health.v1.HealthCheckResponse { status }, framed once: SERVING 1, NOT_SERVING 2, SERVICE_UNKNOWN 3. */
const healthFrame = (status: 1 | 2 | 3) => frameMessage(Buffer.from([0x08, status]));
const SERVING = healthFrame(1);
const NOT_SERVING = healthFrame(2);
const SERVICE_UNKNOWN = healthFrame(3);

/** A HealthCheckRequest as read: the service name, or undefined when the bytes are not one. */
type HealthRequest = { service: string } | undefined;

/** Reads HealthCheckRequest { string service = 1 }; other fields are skipped as protobuf allows. */
export function decodeHealthRequest(b: Buffer): HealthRequest {
  let service = '';
  let pos = 0;
  const varint = (): number | undefined => {
    let v = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (pos >= b.length) return undefined;
      const byte = b[pos++]!;
      v += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return v;
    }
    return undefined;
  };
  while (pos < b.length) {
    const tag = varint();
    if (tag === undefined) return undefined;
    const wire = tag & 7;
    if (wire === 0) {
      if (varint() === undefined) return undefined;
    } else if (wire === 2) {
      const len = varint();
      if (len === undefined || pos + len > b.length) return undefined;
      if (tag >>> 3 === 1) service = b.toString('utf8', pos, pos + len);
      pos += len;
    } else if (wire === 1 || wire === 5) {
      pos += wire === 1 ? 8 : 4;
      if (pos > b.length) return undefined;
    } else {
      return undefined;
    }
  }
  return { service };
}

/**
 * A HealthCheckRequest is a service name. Health calls need no token: with the server's 1 MiB
 * limit, 16 per connection on 4 connections held its whole 64 MiB of unfinished requests, and every
 * proxy request spanning two DATA frames (Envoy's node alone can) was refused meanwhile.
 */
const MAX_HEALTH_REQUEST_BYTES = 1024;
const codec: MethodCodec<HealthRequest, Buffer> = { decode: decodeHealthRequest, encodeFramed: (frame) => frame, maxMessageBytes: MAX_HEALTH_REQUEST_BYTES };

/**
 * Health calls are answered without a token (probes carry none), so what one connection may hold
 * of them is bounded: Watch stays open by design, and thousands of them with large headers on one
 * connection were memory any peer could take.
 */
export const HEALTH_CALLS_PER_CONNECTION = 16;
const openHealthCalls = new WeakMap<object, number>();

function admitHealth(call: ServerCall<HealthRequest, Buffer>): CallStatus | undefined {
  call.releaseHeaders(); // a probe's headers are never read
  const session = call.session;
  if (!session) return undefined;
  const open = openHealthCalls.get(session) ?? 0;
  if (open >= HEALTH_CALLS_PER_CONNECTION) {
    countRefusedStream(call.stream);
    return { code: Status.RESOURCE_EXHAUSTED, details: `more than ${HEALTH_CALLS_PER_CONNECTION} health calls open on one connection` };
  }
  // Any peer may make them, so they do not keep a connection open: a connection holding only
  // health Watches (16 each, no token) on every --max-connections place locked proxies out.
  markNotBusy(call.stream);
  openHealthCalls.set(session, open + 1);
  call.stream.once('close', () => openHealthCalls.set(session, (openHealthCalls.get(session) ?? 1) - 1));
  return undefined;
}

export interface HealthService {
  /** The serving state changed: every open Watch of a known service is sent it. */
  servingChanged(): void;
}

/** Registers Check and Watch; `services` are the full names of the services served ("" is the server). */
export function registerHealth(server: GrpcServer, services: readonly string[], serving: () => boolean): HealthService {
  const known = new Set(['', ...services]);
  const watches = new Set<ServerCall<HealthRequest, Buffer>>();
  const current = () => (serving() ? SERVING : NOT_SERVING);
  server.addSingleRequest(
    `${HEALTH}/Check`,
    codec,
    (call, request) => {
      if (!request) return call.end({ code: Status.INVALID_ARGUMENT, details: 'malformed HealthCheckRequest' });
      if (!known.has(request.service)) return call.end({ code: Status.NOT_FOUND, details: `unknown service ${JSON.stringify(request.service.slice(0, 256))}` });
      call.write(current());
      call.end();
    },
    admitHealth,
  );
  server.addSingleRequest(
    `${HEALTH}/Watch`,
    codec,
    (call, request) => {
      if (!request) return call.end({ code: Status.INVALID_ARGUMENT, details: 'malformed HealthCheckRequest' });
      // An unknown service is watched too (it may appear, says the spec): here it never does.
      if (!known.has(request.service)) return call.write(SERVICE_UNKNOWN);
      call.write(current());
      watches.add(call);
      call.listener = { onCancel: () => watches.delete(call) };
    },
    admitHealth,
  );
  return {
    servingChanged() {
      const frame = current();
      for (const call of watches) {
        if (call.active) call.write(frame);
        else watches.delete(call);
      }
    },
  };
}
