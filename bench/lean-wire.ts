// The load generator's own (de)serializers: a real Envoy spends microseconds per response in C++,
// while protobufjs would make the generators, which share the 2 cores with the server, the
// bottleneck. Responses are read without copying; requests are encoded by hand (the generator
// checks both against protobufjs once at start).

export interface LeanAny {
  type_url: string;
  value: Buffer;
}

export interface LeanResponse {
  version_info: string;
  nonce: string;
  type_url: string;
  resources: LeanAny[];
}

interface Reader {
  buf: Buffer;
  pos: number;
}

function varint(r: Reader): number {
  let v = 0;
  let mul = 1;
  for (;;) {
    const b = r.buf[r.pos++]!;
    v += (b & 0x7f) * mul;
    if (b < 0x80) return v;
    mul *= 128;
  }
}

/** Calls `onField(field, start, end)` for each length-delimited field of `buf[from, to)`. */
function fields(buf: Buffer, from: number, to: number, onField: (field: number, start: number, end: number) => void): void {
  const r: Reader = { buf, pos: from };
  while (r.pos < to) {
    const tag = varint(r);
    const wire = tag & 7;
    const field = Math.floor(tag / 8);
    if (wire === 2) {
      const len = varint(r);
      onField(field, r.pos, r.pos + len);
      r.pos += len;
    } else if (wire === 0) varint(r);
    else if (wire === 1) r.pos += 8;
    else if (wire === 5) r.pos += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  }
}

/** envoy.service.discovery.v3.DiscoveryResponse: 1 version_info, 2 resources (Any), 4 type_url, 5 nonce. */
export function readDiscoveryResponse(buf: Buffer): LeanResponse {
  const out: LeanResponse = { version_info: '', nonce: '', type_url: '', resources: [] };
  fields(buf, 0, buf.length, (f, s, e) => {
    if (f === 1) out.version_info = buf.toString('utf8', s, e);
    else if (f === 4) out.type_url = buf.toString('utf8', s, e);
    else if (f === 5) out.nonce = buf.toString('utf8', s, e);
    else if (f === 2) {
      const any: LeanAny = { type_url: '', value: buf.subarray(0, 0) };
      fields(buf, s, e, (af, as, ae) => {
        if (af === 1) any.type_url = buf.toString('utf8', as, ae);
        else if (af === 2) any.value = buf.subarray(as, ae);
      });
      out.resources.push(any);
    }
  });
  return out;
}

function stringField(field: number, s: string): Buffer {
  const body = Buffer.from(s);
  return Buffer.concat([encodeVarint((field << 3) | 2), encodeVarint(body.length), body]);
}

function encodeVarint(n: number): Buffer {
  const bytes: number[] = [];
  while (n >= 0x80) {
    bytes.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  bytes.push(n);
  return Buffer.from(bytes);
}

/** A DiscoveryRequest ACK: 1 version_info, 3 resource_names, 4 type_url, 5 response_nonce. */
export function ackEncoder(names: readonly string[], typeUrl: string): (version: string, nonce: string) => Buffer {
  const fixed = Buffer.concat([...names.map((n) => stringField(3, n)), stringField(4, typeUrl)]);
  return (version, nonce) => Buffer.concat([stringField(1, version), fixed, stringField(5, nonce)]);
}

/** The first request of a stream: 2 node {1 id, 2 cluster}, 3 resource_names, 4 type_url. */
export function firstRequestEncoder(names: readonly string[], typeUrl: string): (nodeId: string, cluster: string) => Buffer {
  const fixed = Buffer.concat([...names.map((n) => stringField(3, n)), stringField(4, typeUrl)]);
  return (nodeId, cluster) => {
    const node = Buffer.concat([stringField(1, nodeId), stringField(2, cluster)]);
    return Buffer.concat([encodeVarint((2 << 3) | 2), encodeVarint(node.length), node, fixed]);
  };
}
