// Hand-written protobuf encoding of the two xDS responses mesh-sds sends. Each secret's Any is
// encoded once (exact-size buffer, shared by every stream); a response is then one allocation
// holding a few varints, the short strings and copies of those pre-encoded Anys. Going through
// proto-loader instead re-encodes every secret for every stream. Field numbers are those of
// envoy.service.discovery.v3 (test/xds/wire.test.ts decodes the output with the real descriptors).
import type { Any, DeltaDiscoveryResponse, DiscoveryResponse } from './messages.js';

const LEN = 2;

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

class Writer {
  private pos = 0;
  constructor(readonly buf: Buffer) {}

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
    this.pos += b.copy(this.buf, this.pos);
  }

  string(field: number, s: string): void {
    this.tag(field);
    const n = Buffer.byteLength(s);
    this.varint(n);
    this.pos += this.buf.write(s, this.pos);
  }

  get length(): number {
    return this.pos;
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

/** Encoded Anys keyed by the Any object, for resources built without pre-encoded bytes. */
const encodedAnys = new WeakMap<Any, Buffer>();

export function anyBytes(any: Any & { encoded?: Buffer }): Buffer {
  if (any.encoded) return any.encoded;
  let b = encodedAnys.get(any);
  if (!b) encodedAnys.set(any, (b = preEncodeAny(any.type_url, any.value).encoded));
  return b;
}

/**
 * Responses live only until grpc-js has framed them (it copies at once), so they are carved out
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

export function encodeDiscoveryResponse(r: DiscoveryResponse): Buffer {
  const anys = r.resources.map(anyBytes);
  let size = stringSize(r.version_info) + stringSize(r.type_url) + stringSize(r.nonce);
  for (const a of anys) size += fieldSize(a.length);
  const w = new Writer(transient(size));
  if (r.version_info) w.string(1, r.version_info);
  for (const a of anys) w.bytes(2, a);
  if (r.type_url) w.string(4, r.type_url);
  if (r.nonce) w.string(5, r.nonce);
  return w.buf.subarray(0, w.length);
}

export function encodeDeltaDiscoveryResponse(r: DeltaDiscoveryResponse): Buffer {
  const items = r.resources.map((res) => {
    const any = anyBytes(res.resource);
    const inner = stringSize(res.version) + fieldSize(any.length) + stringSize(res.name);
    return { res, any, inner };
  });
  let size = stringSize(r.system_version_info) + stringSize(r.type_url) + stringSize(r.nonce);
  for (const i of items) size += fieldSize(i.inner);
  for (const n of r.removed_resources) size += fieldSize(Buffer.byteLength(n));
  const w = new Writer(transient(size));
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
  return w.buf.subarray(0, w.length);
}
