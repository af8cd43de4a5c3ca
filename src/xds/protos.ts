// Loads the Envoy/xDS descriptor set built by scripts/build-protos.ts, for @grpc/grpc-js (services)
// and protobufjs (encoding secrets once, strict checks of Envoy bootstrap configs).
import { readFileSync, statSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { loadFileDescriptorSetFromBuffer, type PackageDefinition } from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import descriptor from 'protobufjs/ext/descriptor/index.js';
import { buildProtos, DESCRIPTOR_INPUTS, DESCRIPTOR_PATH } from '../../scripts/build-protos.js';

export const TYPE_URL_PREFIX = 'type.googleapis.com/';
export const SECRET_TYPE = 'envoy.extensions.transport_sockets.tls.v3.Secret';
export const SECRET_TYPE_URL = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';
export const SPIFFE_VALIDATOR_TYPE = 'envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig';
export const SPIFFE_VALIDATOR_NAME = 'envoy.tls.cert_validator.spiffe';
export const BOOTSTRAP_TYPE = 'envoy.config.bootstrap.v3.Bootstrap';

/** The options the whole server uses for messages going through @grpc/grpc-js. */
export const PROTO_LOADER_OPTIONS = { keepCase: true, longs: String, enums: String, defaults: false, oneofs: true };
const TO_OBJECT_OPTIONS: protobuf.IConversionOptions = { longs: String, enums: String, defaults: false, oneofs: true };

export interface AnyMessage {
  type_url: string;
  value: Buffer;
}

export interface Protos {
  packageDefinition: PackageDefinition;
  grpcObject: grpc.GrpcObject;
  SecretDiscoveryService: grpc.ServiceDefinition;
  AggregatedDiscoveryService: grpc.ServiceDefinition;
  HealthService: grpc.ServiceDefinition;
  /** protobufjs Root; field names are the proto (snake_case) names, as with keepCase. */
  root: protobuf.Root;
  /** Time spent reading and parsing the descriptor set (excludes any build). */
  loadMs: number;
}

function mtime(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}

/** Returns the descriptor set path, building it first (synchronously, ~0.3 s) when it is missing
 * or older than its inputs, so no npm lifecycle script is needed. */
export function ensureDescriptors(): string {
  const built = mtime(DESCRIPTOR_PATH);
  if (built < 0 || DESCRIPTOR_INPUTS.some((p) => mtime(p) > built)) buildProtos();
  return DESCRIPTOR_PATH;
}

let cached: Protos | undefined;

export function loadProtos(): Protos {
  if (cached) return cached;
  const bytes = readFileSync(ensureDescriptors());
  const started = performance.now();
  const fromDescriptor = (protobuf.Root as unknown as { fromDescriptor(d: protobuf.Message): protobuf.Root }).fromDescriptor;
  const root = fromDescriptor(descriptor.FileDescriptorSet.decode(bytes));
  root.resolveAll();
  // The gRPC service definitions are a second full build of every type (proto-loader's own):
  // made on first use, so a server that only encodes secrets does not pay for it at start-up.
  let packageDefinition: PackageDefinition | undefined;
  let grpcObject: grpc.GrpcObject | undefined;
  const definitions = (): PackageDefinition => (packageDefinition ??= loadFileDescriptorSetFromBuffer(bytes, PROTO_LOADER_OPTIONS));
  const service = (name: string): grpc.ServiceDefinition => {
    const def = definitions()[name];
    if (!def) throw new Error(`${name} is missing from ${DESCRIPTOR_PATH}`);
    return def as unknown as grpc.ServiceDefinition;
  };
  cached = {
    get packageDefinition() {
      return definitions();
    },
    get grpcObject() {
      return (grpcObject ??= grpc.loadPackageDefinition(definitions()));
    },
    get SecretDiscoveryService() {
      return service('envoy.service.secret.v3.SecretDiscoveryService');
    },
    get AggregatedDiscoveryService() {
      return service('envoy.service.discovery.v3.AggregatedDiscoveryService');
    },
    get HealthService() {
      return service('grpc.health.v1.Health');
    },
    root,
    loadMs: performance.now() - started,
  };
  return cached;
}

const types = new Map<string, protobuf.Type>();

/** A message type by name; looked up once (every secret encode needs the Secret type). */
export function lookupType(typeName: string): protobuf.Type {
  let t = types.get(typeName);
  if (!t) types.set(typeName, (t = loadProtos().root.lookupType(typeName.startsWith('.') ? typeName : `.${typeName}`)));
  return t;
}

/** Encodes a plain object (snake_case names, Anys as `{type_url, value}`) as `typeName`. */
export function encodeMessage(typeName: string, obj: object): Buffer {
  const type = lookupType(typeName);
  return toBuffer(type.encode(type.fromObject(obj as Record<string, unknown>)).finish());
}

/** Decodes with the same conventions as the proto-loader options (bytes stay Buffers). */
export function decodeMessage(typeName: string, bytes: Uint8Array): Record<string, unknown> {
  const type = lookupType(typeName);
  return type.toObject(type.decode(bytes), TO_OBJECT_OPTIONS);
}

export function encodeSecret(secret: object): Buffer {
  return encodeMessage(SECRET_TYPE, secret);
}

export function decodeSecret(bytes: Uint8Array): Record<string, unknown> {
  return decodeMessage(SECRET_TYPE, bytes);
}

export function typeNameOfUrl(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
}

export function encodeAny(typeUrl: string, obj: object): AnyMessage {
  return { type_url: typeUrl, value: encodeMessage(typeNameOfUrl(typeUrl), obj) };
}

export function toAny(typeName: string, obj: object): AnyMessage {
  return encodeAny(TYPE_URL_PREFIX + typeName, obj);
}

/** Unpacks an Any whose type is in the descriptor set. */
export function fromAny(any: { type_url: string; value: Uint8Array }): { typeName: string; value: Record<string, unknown> } {
  const typeName = typeNameOfUrl(any.type_url);
  return { typeName, value: decodeMessage(typeName, any.value) };
}

/** `SPIFFECertValidatorConfig` as an Any: one entry per trust domain (name without spiffe://). */
export function packSpiffeValidatorConfig(trustDomains: ReadonlyArray<{ name: string; pem: string | Uint8Array }>): AnyMessage {
  return toAny(SPIFFE_VALIDATOR_TYPE, {
    trust_domains: trustDomains.map((td) => ({
      name: td.name,
      trust_bundle: { inline_bytes: typeof td.pem === 'string' ? Buffer.from(td.pem) : td.pem },
    })),
  });
}

function toBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

// ---------------------------------------------------------------------------------------------
// Strict proto3-JSON decoding, as Envoy reads a YAML bootstrap. protobufjs' fromObject silently
// drops unknown fields, so the object is walked against the descriptors here.

export class ProtoJsonError extends Error {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`${path || '<root>'}: ${reason}`);
    this.name = 'ProtoJsonError';
  }
}

export interface DecodedMessage {
  /** Path in the input, e.g. `static_resources.clusters[0].transport_socket.typed_config`. */
  path: string;
  /** Full message type name without a leading dot. */
  type: string;
  /** The decoded value: proto (snake_case) field names, Anys as `{type_url, value}`. */
  value: Record<string, unknown>;
}

export interface StrictDecodeResult {
  value: Record<string, unknown>;
  bytes: Buffer;
  /** Every message in the tree, Any contents included, in document order. */
  messages: DecodedMessage[];
}

const INT32 = new Set(['int32', 'sint32', 'sfixed32']);
const UINT32 = new Set(['uint32', 'fixed32']);
const INT64 = new Set(['int64', 'sint64', 'sfixed64', 'uint64', 'fixed64']);
const WRAPPERS: Record<string, string> = {
  '.google.protobuf.DoubleValue': 'double',
  '.google.protobuf.FloatValue': 'float',
  '.google.protobuf.Int64Value': 'int64',
  '.google.protobuf.UInt64Value': 'uint64',
  '.google.protobuf.Int32Value': 'int32',
  '.google.protobuf.UInt32Value': 'uint32',
  '.google.protobuf.BoolValue': 'bool',
  '.google.protobuf.StringValue': 'string',
  '.google.protobuf.BytesValue': 'bytes',
};

function camel(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

function describe(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v);
}

const fieldIndexCache = new WeakMap<protobuf.Type, Map<string, protobuf.Field>>();

/** Both the proto name and its lowerCamel JSON name resolve to the field, as in Envoy. */
function fieldIndex(type: protobuf.Type): Map<string, protobuf.Field> {
  let idx = fieldIndexCache.get(type);
  if (!idx) {
    idx = new Map();
    for (const f of type.fieldsArray) {
      idx.set(f.name, f);
      idx.set(camel(f.name), f);
    }
    fieldIndexCache.set(type, idx);
  }
  return idx;
}

/** Types built from descriptors model a map as a repeated nested `<Field>Entry {key, value}`.
 * (The `map_entry` option cannot be trusted: protobufjs' fromDescriptor also sets it on the
 * parent type.) */
function isMapEntry(field: protobuf.Field, entry: protobuf.Type): boolean {
  const pascal = field.name.replace(/(?:^|_)([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
  return entry.parent === field.parent && entry.name === `${pascal}Entry` && entry.fields['key']?.id === 1 && entry.fields['value']?.id === 2 && entry.fieldsArray.length === 2;
}

class StrictDecoder {
  readonly messages: DecodedMessage[] = [];

  message(type: protobuf.Type, v: unknown, path: string): unknown {
    const wk = this.wellKnown(type, v, path);
    if (wk !== undefined) return wk;
    if (!isPlainObject(v)) throw new ProtoJsonError(path, `expected an object for ${type.fullName.slice(1)}, got ${describe(v)}`);
    const out: Record<string, unknown> = {};
    const record: DecodedMessage = { path, type: type.fullName.slice(1), value: out };
    this.messages.push(record);
    const idx = fieldIndex(type);
    const oneofSet = new Map<string, string>();
    for (const [key, raw] of Object.entries(v)) {
      const p = path ? `${path}.${key}` : key;
      const field = idx.get(key);
      if (!field) throw new ProtoJsonError(p, `unknown field "${key}" in ${type.fullName.slice(1)}`);
      if (field.name in out) throw new ProtoJsonError(p, `field "${field.name}" is set twice`);
      if (raw === null && field.resolvedType?.fullName !== '.google.protobuf.Value') continue; // null = unset
      const oneof = field.partOf;
      if (oneof && !oneof.name.startsWith('_')) {
        const other = oneofSet.get(oneof.name);
        if (other) throw new ProtoJsonError(p, `"${key}" and "${other}" are both set, but only one of oneof "${oneof.name}" may be`);
        oneofSet.set(oneof.name, key);
      }
      out[field.name] = this.field(field, raw, p);
    }
    return out;
  }

  private field(field: protobuf.Field, v: unknown, path: string): unknown {
    const entry = field.resolvedType;
    if (field.repeated && entry instanceof protobuf.Type && isMapEntry(field, entry)) {
      if (!isPlainObject(v)) throw new ProtoJsonError(path, `expected an object (map), got ${describe(v)}`);
      const keyField = entry.fields['key'];
      const valueField = entry.fields['value'];
      if (!keyField || !valueField) throw new ProtoJsonError(path, `malformed map entry ${entry.fullName}`);
      return Object.entries(v).map(([k, item]) => {
        const p = `${path}[${JSON.stringify(k)}]`;
        return { key: this.scalar(keyField.type, undefined, k, p, true), value: this.single(valueField, item, p) };
      });
    }
    if (field.repeated) {
      if (!Array.isArray(v)) throw new ProtoJsonError(path, `expected a list, got ${describe(v)}`);
      return v.map((item, i) => this.single(field, item, `${path}[${i}]`));
    }
    return this.single(field, v, path);
  }

  private single(field: protobuf.Field, v: unknown, path: string): unknown {
    const rt = field.resolvedType;
    if (rt instanceof protobuf.Type) return this.message(rt, v, path);
    return this.scalar(field.type, rt instanceof protobuf.Enum ? rt : undefined, v, path, false);
  }

  private scalar(kind: string, en: protobuf.Enum | undefined, v: unknown, path: string, mapKey: boolean): unknown {
    const bad = (want: string): never => {
      throw new ProtoJsonError(path, `expected ${want}, got ${describe(v)}`);
    };
    if (en) {
      if (typeof v === 'string') {
        if (!(v in en.values)) throw new ProtoJsonError(path, `unknown value "${v}" of enum ${en.fullName.slice(1)} (one of ${Object.keys(en.values).join(', ')})`);
        return v;
      }
      if (typeof v === 'number' && Number.isInteger(v)) return v;
      return bad(`a name of enum ${en.fullName.slice(1)}`);
    }
    const integer = (min: number, max: number): number => {
      const n = typeof v === 'number' ? v : typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : NaN;
      if (!Number.isInteger(n) || n < min || n > max) bad(`an integer in [${min}, ${max}]`);
      return n;
    };
    if (INT32.has(kind)) return integer(-2147483648, 2147483647);
    if (UINT32.has(kind)) return integer(0, 4294967295);
    if (INT64.has(kind)) {
      const s = typeof v === 'number' && Number.isSafeInteger(v) ? String(v) : typeof v === 'string' ? v : bad('a 64-bit integer');
      if (!/^-?\d+$/.test(s) || (kind.startsWith('u') || kind.startsWith('fixed')) && s.startsWith('-')) bad('a 64-bit integer');
      return s;
    }
    switch (kind) {
      case 'bool':
        if (typeof v === 'boolean') return v;
        if (mapKey && (v === 'true' || v === 'false')) return v === 'true';
        return bad('true or false');
      case 'string':
        return typeof v === 'string' ? v : bad('a string');
      case 'double':
      case 'float':
        if (typeof v === 'number') return v;
        if (typeof v === 'string' && (/^(NaN|-?Infinity)$/.test(v) || (v.trim() !== '' && Number.isFinite(Number(v))))) return Number(v);
        return bad('a number');
      case 'bytes':
        if (typeof v !== 'string' || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(v.replace(/\s+/g, ''))) bad('base64 bytes');
        return Buffer.from(v as string, 'base64');
      default:
        throw new ProtoJsonError(path, `unsupported field type ${kind}`);
    }
  }

  /** proto3 JSON special forms; undefined when `type` is an ordinary message. */
  private wellKnown(type: protobuf.Type, v: unknown, path: string): unknown {
    const name = type.fullName;
    const wrapped = WRAPPERS[name];
    if (wrapped) return { value: this.scalar(wrapped, undefined, v, path, false) };
    switch (name) {
      case '.google.protobuf.Any':
        return this.any(v, path);
      case '.google.protobuf.Duration':
      case '.google.protobuf.Timestamp': {
        const secs = name.endsWith('Duration') ? parseDuration(v) : parseTimestamp(v);
        if (!secs) throw new ProtoJsonError(path, `expected a ${name.endsWith('Duration') ? 'duration like "1.5s"' : 'RFC 3339 timestamp'}, got ${describe(v)}`);
        return secs;
      }
      case '.google.protobuf.Struct':
        if (!isPlainObject(v)) throw new ProtoJsonError(path, `expected an object, got ${describe(v)}`);
        return jsonStruct(v);
      case '.google.protobuf.Value':
        return jsonValue(v);
      case '.google.protobuf.ListValue':
        if (!Array.isArray(v)) throw new ProtoJsonError(path, `expected a list, got ${describe(v)}`);
        return { values: v.map(jsonValue) };
      case '.google.protobuf.FieldMask':
        if (typeof v !== 'string') throw new ProtoJsonError(path, `expected a field mask string, got ${describe(v)}`);
        return { paths: v === '' ? [] : v.split(',').map((p) => p.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)) };
      default:
        return undefined;
    }
  }

  private any(v: unknown, path: string): AnyMessage {
    if (!isPlainObject(v)) throw new ProtoJsonError(path, `expected an object with "@type", got ${describe(v)}`);
    const typeUrl = v['@type'];
    if (typeof typeUrl !== 'string' || !typeUrl.includes('/')) throw new ProtoJsonError(`${path}.@type`, `expected a type URL like "type.googleapis.com/<message>", got ${describe(typeUrl)}`);
    const typeName = typeNameOfUrl(typeUrl);
    let inner: protobuf.Type;
    try {
      inner = lookupType(typeName);
    } catch {
      throw new ProtoJsonError(`${path}.@type`, `unknown @type "${typeUrl}" (not in the descriptor set built by scripts/build-protos.ts)`);
    }
    const rest = Object.fromEntries(Object.entries(v).filter(([k]) => k !== '@type'));
    // A well-known type inside an Any carries its JSON form in "value".
    const special = inner.fullName in WRAPPERS || /^\.google\.protobuf\.(Duration|Timestamp|Struct|Value|ListValue|FieldMask|Any)$/.test(inner.fullName);
    let decoded: unknown;
    if (special) {
      const extra = Object.keys(rest).find((k) => k !== 'value');
      if (extra) throw new ProtoJsonError(`${path}.${extra}`, `unknown field "${extra}" in Any of ${typeName} (only "value")`);
      decoded = this.message(inner, rest['value'], `${path}.value`);
    } else {
      decoded = this.message(inner, rest, path);
    }
    return { type_url: typeUrl, value: toBuffer(inner.encode(inner.fromObject(decoded as Record<string, unknown>)).finish()) };
  }
}

function parseDuration(v: unknown): { seconds: string; nanos: number } | undefined {
  const m = typeof v === 'string' ? /^(-)?(\d+)(?:\.(\d{1,9}))?s$/.exec(v) : null;
  if (!m) return undefined;
  const sign = m[1] ? -1 : 1;
  const nanos = Number((m[3] ?? '').padEnd(9, '0'));
  return { seconds: `${m[1] ?? ''}${m[2]}`, nanos: nanos === 0 ? 0 : sign * nanos };
}

function parseTimestamp(v: unknown): { seconds: string; nanos: number } | undefined {
  if (typeof v !== 'string' || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$/.test(v)) return undefined;
  const ms = Date.parse(v);
  if (Number.isNaN(ms)) return undefined;
  const frac = /\.(\d+)/.exec(v)?.[1] ?? '';
  return { seconds: String(Math.floor(ms / 1000)), nanos: Number(frac.padEnd(9, '0')) };
}

// Struct.fields is a map, so (see isMapEntry) a list of {key, value} entries here.
function jsonStruct(v: object): Record<string, unknown> {
  return { fields: Object.entries(v).map(([key, x]) => ({ key, value: jsonValue(x) })) };
}

function jsonValue(v: unknown): Record<string, unknown> {
  if (v === null || v === undefined) return { null_value: 'NULL_VALUE' };
  if (typeof v === 'number') return { number_value: v };
  if (typeof v === 'string') return { string_value: v };
  if (typeof v === 'boolean') return { bool_value: v };
  if (Array.isArray(v)) return { list_value: { values: v.map(jsonValue) } };
  return { struct_value: jsonStruct(v as object) };
}

/** Maps a parsed YAML/JSON object onto `typeName` by proto3 JSON rules (snake_case or lowerCamel
 * names, Anys resolved by `@type`), failing with the path of any unknown field, unknown `@type`,
 * wrongly typed value or conflicting oneof member. */
export function decodeStrict(typeName: string, obj: unknown): StrictDecodeResult {
  const type = lookupType(typeName);
  const decoder = new StrictDecoder();
  const value = decoder.message(type, obj, '') as Record<string, unknown>;
  const bytes = toBuffer(type.encode(type.fromObject(value)).finish());
  return { value, bytes, messages: decoder.messages };
}

export function decodeBootstrapStrict(obj: unknown): StrictDecodeResult {
  return decodeStrict(BOOTSTRAP_TYPE, obj);
}
