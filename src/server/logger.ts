// Structured JSON logging. Redaction is configured here, once, so that a careless
// `log.info({ svid }, ...)` anywhere in the code base still cannot leak a key or a token.
import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;

export const REDACTED = '[REDACTED]';

/** Field names whose values are secret wherever they appear (top level or one level down). */
const SECRET_FIELDS = ['key', 'keyPem', 'privateKey', 'privateKeyPem', 'token', 'authorization', 'password'];

export const REDACT_PATHS: readonly string[] = [
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((f) => `*.${f}`),
  // Two levels deep covers shapes like { svid: { issued: { keyPem } } } and { req: { headers: { authorization } } }.
  ...SECRET_FIELDS.map((f) => `*.*.${f}`),
  'metadata.authorization',
];

export interface LoggerOptions {
  /** Where JSON lines go; stdout when absent. Tests pass a capturing stream. */
  destination?: DestinationStream;
  /** Extra bindings added to every line (e.g. `{ component: 'sds' }`). */
  base?: Record<string, unknown>;
}

/** Duck type of @grpc/grpc-js Metadata, which otherwise serialises as `{}` and hides what was sent. */
interface MetadataLike {
  getMap(): Record<string, unknown>;
}

function isMetadataLike(v: unknown): v is MetadataLike {
  return typeof v === 'object' && v !== null && typeof (v as { getMap?: unknown }).getMap === 'function';
}

/** gRPC metadata becomes a plain object (binary values as a byte count) so `metadata.authorization` redaction applies. */
function serializeMetadata(v: unknown): unknown {
  if (!isMetadataLike(v)) return v;
  const out: Record<string, unknown> = {};
  for (const [k, val] of Object.entries(v.getMap())) {
    out[k] = Buffer.isBuffer(val) ? `<${val.length} bytes>` : val;
  }
  return out;
}

export function createLogger(level: string, opts: LoggerOptions = {}): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { name: 'mesh-sds', ...opts.base },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: [...REDACT_PATHS], censor: REDACTED },
    serializers: { err: pino.stdSerializers.err, metadata: serializeMetadata },
    formatters: { level: (label) => ({ level: label }) },
  };
  return opts.destination ? pino(options, opts.destination) : pino(options);
}
