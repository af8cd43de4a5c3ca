// Minimal DER encoder/reader: just what certificate templates need. Hand-rolled because a
// general ASN.1 library costs far more per leaf than the signature itself.

/** Bytes the DER length `n` takes (short form, or 0x81-0x83 and 1-3 bytes). */
export function derLengthSize(n: number): number {
  if (n < 0x80) return 1;
  if (n < 0x100) return 2;
  if (n < 0x10000) return 3;
  if (n < 0x1000000) return 4;
  throw new RangeError(`DER length ${n} too large`);
}

/** Writes the DER length `n` into `buf` at `o`; returns the offset after it. */
export function writeDerLength(buf: Buffer, o: number, n: number): number {
  const size = derLengthSize(n);
  if (size === 1) {
    buf[o] = n;
    return o + 1;
  }
  buf[o] = 0x80 | (size - 1);
  for (let i = size - 1; i >= 1; i--, n >>= 8) buf[o + i] = n & 0xff;
  return o + size;
}

export function derLength(n: number): Buffer {
  const b = Buffer.allocUnsafe(derLengthSize(n));
  writeDerLength(b, 0, n);
  return b;
}

/** Tag-length-value with the given contents concatenated. */
export function tlv(tag: number, ...parts: Buffer[]): Buffer {
  const body = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}

export const seq = (...parts: Buffer[]): Buffer => tlv(0x30, ...parts);
export const set = (...parts: Buffer[]): Buffer => tlv(0x31, ...parts);
export const octetString = (b: Buffer): Buffer => tlv(0x04, b);
/** BIT STRING with zero unused bits. */
export const bitString = (b: Buffer): Buffer => tlv(0x03, Buffer.from([0]), b);
export const explicit = (n: number, ...parts: Buffer[]): Buffer => tlv(0xa0 | n, ...parts);
export const hex = (h: string): Buffer => Buffer.from(h.replace(/\s+/g, ''), 'hex');

/** INTEGER from unsigned big-endian magnitude bytes (adds/strips leading zeros for DER). */
export function uintFromBytes(mag: Buffer): Buffer {
  let i = 0;
  while (i < mag.length - 1 && mag[i] === 0) i++;
  const m = mag.subarray(i);
  return tlv(0x02, (m[0]! & 0x80) !== 0 ? Buffer.concat([Buffer.from([0]), m]) : m);
}

const pad2 = (n: number): string => (n < 10 ? '0' : '') + n;

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; whole seconds. */
export function derTime(d: Date): Buffer {
  const y = d.getUTCFullYear();
  const rest =
    pad2(d.getUTCMonth() + 1) + pad2(d.getUTCDate()) + pad2(d.getUTCHours()) + pad2(d.getUTCMinutes()) + pad2(d.getUTCSeconds()) + 'Z';
  if (y >= 1950 && y < 2050) return tlv(0x17, Buffer.from(pad2(y % 100) + rest, 'latin1'));
  return tlv(0x18, Buffer.from(String(y).padStart(4, '0') + rest, 'latin1'));
}

/** PEM of `der` (or of its bytes `start`..`end`). */
export function toPem(label: string, der: Buffer, start = 0, end = der.length): string {
  const b64 = der.toString('base64', start, end);
  let out = `-----BEGIN ${label}-----\n`;
  for (let i = 0; i < b64.length; i += 64) out += b64.slice(i, i + 64) + '\n';
  return out + `-----END ${label}-----\n`;
}

// ---- reader ----

export interface DerNode {
  tag: number;
  /** Offset of the tag byte within the buffer. */
  start: number;
  /** Offset of the first content byte. */
  contentStart: number;
  /** Offset just past the content. */
  end: number;
}

export function readNode(buf: Buffer, pos: number): DerNode {
  const tag = buf[pos];
  let lenByte = buf[pos + 1];
  if (tag === undefined || lenByte === undefined) throw new Error('truncated DER');
  let p = pos + 2;
  let len = lenByte;
  if (lenByte & 0x80) {
    const n = lenByte & 0x7f;
    if (n === 0 || n > 4) throw new Error('unsupported DER length');
    len = 0;
    for (let i = 0; i < n; i++) {
      lenByte = buf[p++];
      if (lenByte === undefined) throw new Error('truncated DER');
      len = len * 256 + lenByte;
    }
  }
  if (p + len > buf.length) throw new Error('truncated DER');
  return { tag, start: pos, contentStart: p, end: p + len };
}

export function children(buf: Buffer, node: DerNode): DerNode[] {
  const out: DerNode[] = [];
  for (let p = node.contentStart; p < node.end; ) {
    const c = readNode(buf, p);
    out.push(c);
    p = c.end;
  }
  return out;
}

export const raw = (buf: Buffer, n: DerNode): Buffer => buf.subarray(n.start, n.end);

/** Raw issuer, subject and SubjectPublicKeyInfo TLVs of a certificate, byte-for-byte. */
export function certificateParts(certDer: Buffer): { issuer: Buffer; subject: Buffer; spki: Buffer; tbs: Buffer } {
  const cert = readNode(certDer, 0);
  const [tbsNode] = children(certDer, cert);
  if (!tbsNode) throw new Error('malformed certificate');
  const f = children(certDer, tbsNode);
  const off = f[0]?.tag === 0xa0 ? 1 : 0; // optional [0] version
  const issuer = f[off + 2];
  const subject = f[off + 4];
  const spki = f[off + 5];
  if (!issuer || !subject || !spki) throw new Error('malformed certificate');
  return { issuer: raw(certDer, issuer), subject: raw(certDer, subject), spki: raw(certDer, spki), tbs: raw(certDer, tbsNode) };
}
