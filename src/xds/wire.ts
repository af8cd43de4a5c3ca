// Hand-written protobuf encoding of the two xDS responses mesh-sds sends. Each secret's Any is
// encoded once (exact-size buffer, shared by every stream); a response is then one small allocation
// holding a few varints and the short strings, sent together with those pre-encoded Anys by
// reference (see BY_REFERENCE_BYTES). Going through proto-loader instead re-encodes every secret
// for every stream. Field numbers are those of envoy.service.discovery.v3 (test/xds/wire.test.ts
// decodes the output with the real descriptors).
import type { Any, DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Node, Status } from './messages.js';

const LEN = 2;

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/** Bytes of gRPC's message prefix (compressed flag, 4-byte length), reserved by framed encodes. */
const GRPC_PREFIX = 5;

/**
 * Pre-encoded payloads at least this long are sent by reference (a chunk of their own in the
 * framed response) instead of being copied into it: a trust bundle pushed to 10,000 streams would
 * otherwise be copied 10,000 times into fresh memory (the page faults alone cost more than the
 * copies). Shorter ones are cheaper to copy than to pass as another chunk.
 */
const BY_REFERENCE_BYTES = 512;
const passedByReference = (payload: Buffer): boolean => payload.length >= BY_REFERENCE_BYTES;

class Writer {
  /** Set when payloads may be passed by reference: the chunks written so far. */
  private readonly chunks: Buffer[] | undefined;
  /** Where the bytes not yet handed to `chunks` start in `buf`. */
  private segmentStart = 0;

  constructor(
    readonly buf: Buffer,
    private pos = 0,
    byReference = false,
  ) {
    this.chunks = byReference ? [] : undefined;
  }

  varint(n: number): void {
    while (n >= 0x80) {
      this.buf[this.pos++] = (n & 0x7f) | 0x80;
      n = Math.floor(n / 128);
    }
    this.buf[this.pos++] = n;
  }

  tag(field: number): void {
    this.varint((field << 3) | LEN);
  }

  bytes(field: number, b: Buffer): void {
    this.tag(field);
    this.varint(b.length);
    if (this.chunks && passedByReference(b)) {
      this.chunks.push(this.buf.subarray(this.segmentStart, this.pos), b);
      this.segmentStart = this.pos;
    } else this.pos += b.copy(this.buf, this.pos);
  }

  string(field: number, s: string): void {
    this.tag(field);
    const n = Buffer.byteLength(s);
    this.varint(n);
    this.pos += this.buf.write(s, this.pos);
  }

  /** Bytes written into `buf` (payloads passed by reference not included). */
  get length(): number {
    return this.pos;
  }

  /** What was written: the buffer's bytes, or the chunks to send one after the other. */
  result(): Buffer | Buffer[] {
    // Every buffer is allocated at its exact size: anything else is a wrong size computation.
    if (this.pos !== this.buf.length) throw new Error(`wire: wrote ${this.pos} of ${this.buf.length} bytes`);
    if (!this.chunks || this.chunks.length === 0) return this.buf;
    if (this.pos > this.segmentStart) this.chunks.push(this.buf.subarray(this.segmentStart, this.pos));
    return this.chunks;
  }
}

/** Size on the wire of a length-delimited field with a small field number (< 16). */
const fieldSize = (payload: number) => 1 + varintSize(payload) + payload;
const stringSize = (s: string) => (s === '' ? 0 : fieldSize(Buffer.byteLength(s)));

/** An Any whose wire bytes are already known; `value` is a view into `encoded`. */
export interface PreEncodedAny extends Any {
  readonly encoded: Buffer;
}

/**
 * google.protobuf.Any → bytes, in a buffer of its own: a cached secret then holds exactly its
 * bytes, not a slice of a shared pool slab (which would keep the whole slab alive).
 */
export function preEncodeAny(typeUrl: string, value: Uint8Array): PreEncodedAny {
  const size = fieldSize(Buffer.byteLength(typeUrl)) + fieldSize(value.length);
  const w = new Writer(Buffer.allocUnsafeSlow(size));
  w.string(1, typeUrl);
  w.bytes(2, Buffer.from(value.buffer, value.byteOffset, value.byteLength));
  return { type_url: typeUrl, value: w.buf.subarray(size - value.length), encoded: w.buf };
}

/**
 * The Any of a `tls_certificate` Secret (name = 1, tls_certificate = 2 { certificate_chain = 1,
 * private_key = 2, each a DataSource with inline_bytes = 2 }), written straight into one
 * exact-size buffer: an SVID is encoded on every issuance, and the generic encoder builds the
 * message objects and two intermediate buffers first.
 */
export function tlsCertificateSecretAny(typeUrl: string, name: string, certChainPem: string, keyPem: string): PreEncodedAny {
  const chain = fieldSize(Buffer.byteLength(certChainPem));
  const key = fieldSize(Buffer.byteLength(keyPem));
  const tls = fieldSize(chain) + fieldSize(key);
  const secret = stringSize(name) + fieldSize(tls);
  const size = fieldSize(Buffer.byteLength(typeUrl)) + fieldSize(secret);
  const w = new Writer(Buffer.allocUnsafeSlow(size));
  w.string(1, typeUrl);
  w.tag(2);
  w.varint(secret);
  const valueStart = w.length;
  if (name !== '') w.string(1, name);
  w.tag(2);
  w.varint(tls);
  w.tag(1);
  w.varint(chain);
  w.string(2, certChainPem);
  w.tag(2);
  w.varint(key);
  w.string(2, keyPem);
  if (w.length !== size) throw new Error(`tls_certificate Any: wrote ${w.length} of ${size} bytes`);
  return { type_url: typeUrl, value: w.buf.subarray(valueStart), encoded: w.buf };
}

/** Encoded Anys keyed by the Any object, for resources built without pre-encoded bytes. */
const encodedAnys = new WeakMap<Any, Buffer>();

export function anyBytes(any: Any & { encoded?: Buffer }): Buffer {
  if (any.encoded) return any.encoded;
  let b = encodedAnys.get(any);
  if (!b) encodedAnys.set(any, (b = preEncodeAny(any.type_url, any.value).encoded));
  return b;
}

/**
 * Responses live only until the transport has written them to the socket, so they are carved out
 * of large slabs: one allocation per many responses instead of one per response (responses over
 * 2 KiB would each miss Node's small-buffer pool). A slab is freed once all its slices are.
 */
const SLAB_SIZE = 512 * 1024;
let slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
let slabUsed = 0;
function transient(size: number): Buffer {
  if (size > SLAB_SIZE / 8) return Buffer.allocUnsafe(size);
  if (slabUsed + size > SLAB_SIZE) {
    slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
    slabUsed = 0;
  }
  const b = slab.subarray(slabUsed, slabUsed + size);
  slabUsed += (size + 7) & ~7;
  return b;
}

/** A response as the transport sends it: a whole gRPC frame, or its consecutive chunks. */
export type FramedMessage = Buffer | readonly Buffer[];

/**
 * A writer for a message of `size` bytes. Framed, it starts with gRPC's 5-byte prefix (so the
 * transport sends it as it is, without copying it into a frame) and the large ones among the
 * pre-encoded `payloads` it will write are passed by reference instead of being copied.
 */
function messageWriter(size: number, framed: boolean, payloads: readonly Buffer[]): Writer {
  if (!framed) return new Writer(transient(size));
  let referenced = 0;
  for (const p of payloads) if (passedByReference(p)) referenced += p.length;
  const w = new Writer(transient(GRPC_PREFIX + size - referenced), GRPC_PREFIX, referenced > 0);
  w.buf[0] = 0; // not compressed
  w.buf.writeUInt32BE(size, 1);
  return w;
}

function sotwResponse(r: DiscoveryResponse, framed: boolean): Buffer | Buffer[] {
  const anys = r.resources.map(anyBytes);
  let size = stringSize(r.version_info) + stringSize(r.type_url) + stringSize(r.nonce);
  for (const a of anys) size += fieldSize(a.length);
  const w = messageWriter(size, framed, anys);
  if (r.version_info) w.string(1, r.version_info);
  for (const a of anys) w.bytes(2, a);
  if (r.type_url) w.string(4, r.type_url);
  if (r.nonce) w.string(5, r.nonce);
  return w.result();
}

/** envoy.service.discovery.v3.DiscoveryResponse as one buffer. */
export function encodeDiscoveryResponse(r: DiscoveryResponse): Buffer {
  return sotwResponse(r, false) as Buffer;
}

/** The same, framed for gRPC; the secrets' pre-encoded bytes are sent as they are, not copied. */
export function frameDiscoveryResponse(r: DiscoveryResponse): FramedMessage {
  return sotwResponse(r, true);
}

function deltaResponse(r: DeltaDiscoveryResponse, framed: boolean): Buffer | Buffer[] {
  const items = r.resources.map((res) => {
    const any = anyBytes(res.resource);
    const inner = stringSize(res.version) + fieldSize(any.length) + stringSize(res.name);
    return { res, any, inner };
  });
  let size = stringSize(r.system_version_info) + stringSize(r.type_url) + stringSize(r.nonce);
  for (const i of items) size += fieldSize(i.inner);
  for (const n of r.removed_resources) size += fieldSize(Buffer.byteLength(n));
  const w = messageWriter(size, framed, framed ? items.map((i) => i.any) : []);
  if (r.system_version_info) w.string(1, r.system_version_info);
  for (const { res, any, inner } of items) {
    w.tag(2);
    w.varint(inner);
    if (res.version) w.string(1, res.version);
    w.bytes(2, any);
    if (res.name) w.string(3, res.name);
  }
  if (r.type_url) w.string(4, r.type_url);
  if (r.nonce) w.string(5, r.nonce);
  for (const n of r.removed_resources) w.string(6, n);
  return w.result();
}

/** envoy.service.discovery.v3.DeltaDiscoveryResponse as one buffer. */
export function encodeDeltaDiscoveryResponse(r: DeltaDiscoveryResponse): Buffer {
  return deltaResponse(r, false) as Buffer;
}

/** The same, framed for gRPC; the secrets' pre-encoded bytes are sent as they are, not copied. */
export function frameDeltaDiscoveryResponse(r: DeltaDiscoveryResponse): FramedMessage {
  return deltaResponse(r, true);
}

// ---------------------------------------------------------------------------------------------
// Requests. Every ACK is decoded on the server's hot path, and protobufjs would build the whole
// object graph (including the Node's metadata) only for a few strings to be read. Unknown fields
// are skipped, as protobuf requires; truncated or malformed input throws (grpc-js then fails the
// call), so garbage never reaches the state machines.

export class WireError extends Error {}

class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    from = 0,
    readonly end = buf.length,
  ) {
    this.pos = from;
  }

  varint(): number {
    let v = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new WireError('truncated varint');
      const b = this.buf[this.pos++]!;
      v += (b & 0x7f) * mul;
      if (b < 0x80) return v;
      mul *= 128;
    }
    throw new WireError('varint longer than 10 bytes');
  }

  /** Calls `onField` for each field; `start`/`end` delimit a length-delimited payload. */
  fields(onField: (field: number, wire: number, start: number, end: number, value: number) => void): void {
    while (this.pos < this.end) {
      const tag = this.varint();
      const field = Math.floor(tag / 8);
      const wire = tag & 7;
      if (field === 0) throw new WireError('field number 0');
      if (wire === 0) onField(field, wire, 0, 0, this.varint());
      else if (wire === 2) {
        const len = this.varint();
        const start = this.pos;
        if (start + len > this.end) throw new WireError('truncated length-delimited field');
        this.pos += len;
        onField(field, wire, start, start + len, 0);
      } else if (wire === 1 || wire === 5) {
        this.pos += wire === 1 ? 8 : 4;
        if (this.pos > this.end) throw new WireError('truncated fixed-width field');
      } else throw new WireError(`unsupported wire type ${wire}`);
    }
  }
}

const text = (buf: Buffer, wire: number, start: number, end: number): string => {
  if (wire !== 2) throw new WireError('expected a string');
  return buf.toString('utf8', start, end);
};

function readNode(buf: Buffer, start: number, end: number): Node {
  const node: Node = {};
  new Reader(buf, start, end).fields((f, w, s, e) => {
    if (f === 1) node.id = text(buf, w, s, e);
    else if (f === 2) node.cluster = text(buf, w, s, e);
    else if (f === 6) node.user_agent_name = text(buf, w, s, e);
  });
  return node;
}

function readStatus(buf: Buffer, start: number, end: number): Status {
  const status: Status = { code: 0, message: '' };
  new Reader(buf, start, end).fields((f, w, s, e, v) => {
    if (f === 1 && w === 0) status.code = v >= 2 ** 63 ? v - 2 ** 64 : v;
    else if (f === 2) status.message = text(buf, w, s, e);
  });
  return status;
}

/** envoy.service.discovery.v3.DiscoveryRequest (the fields SDS uses). */
export function decodeDiscoveryRequest(buf: Buffer): DiscoveryRequest {
  const req: DiscoveryRequest = { version_info: '', resource_names: [], type_url: '', response_nonce: '' };
  new Reader(buf).fields((f, w, s, e) => {
    if (f === 1) req.version_info = text(buf, w, s, e);
    else if (f === 2 && w === 2) req.node = readNode(buf, s, e);
    else if (f === 3) req.resource_names!.push(text(buf, w, s, e));
    else if (f === 4) req.type_url = text(buf, w, s, e);
    else if (f === 5) req.response_nonce = text(buf, w, s, e);
    else if (f === 6 && w === 2) req.error_detail = readStatus(buf, s, e);
  });
  return req;
}

/** envoy.service.discovery.v3.DeltaDiscoveryRequest (the fields SDS uses). */
export function decodeDeltaDiscoveryRequest(buf: Buffer): DeltaDiscoveryRequest {
  const req: DeltaDiscoveryRequest = {
    type_url: '',
    resource_names_subscribe: [],
    resource_names_unsubscribe: [],
    initial_resource_versions: {},
    response_nonce: '',
  };
  new Reader(buf).fields((f, w, s, e) => {
    if (f === 1 && w === 2) req.node = readNode(buf, s, e);
    else if (f === 2) req.type_url = text(buf, w, s, e);
    else if (f === 3) req.resource_names_subscribe!.push(text(buf, w, s, e));
    else if (f === 4) req.resource_names_unsubscribe!.push(text(buf, w, s, e));
    else if (f === 5 && w === 2) {
      let key = '';
      let value = '';
      new Reader(buf, s, e).fields((ef, ew, es, ee) => {
        if (ef === 1) key = text(buf, ew, es, ee);
        else if (ef === 2) value = text(buf, ew, es, ee);
      });
      req.initial_resource_versions![key] = value;
    } else if (f === 6) req.response_nonce = text(buf, w, s, e);
    else if (f === 7 && w === 2) req.error_detail = readStatus(buf, s, e);
  });
  return req;
}
