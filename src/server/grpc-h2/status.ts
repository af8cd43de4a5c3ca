// gRPC status codes and the grpc-message encoding the gRPC HTTP/2 protocol prescribes, so the
// server side needs nothing of @grpc/grpc-js.

export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type Status = (typeof Status)[keyof typeof Status];

/** How a call ends: a code and the text sent as grpc-message. */
export interface CallStatus {
  code: Status;
  details: string;
}

/**
 * grpc-message is percent-encoded UTF-8: bytes outside printable ASCII, and '%' itself, become
 * %XX (gRPC over HTTP/2, "Responses"). Plain messages, the usual case, are returned as they are.
 */
export function encodeGrpcMessage(message: string): string {
  if (/^[\x20-\x24\x26-\x7e]*$/.test(message)) return message;
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * The most grpc-message may take once encoded. It is a header: past the client's header list limit
 * (16-64 KiB) the client refuses the trailers and sees a reset without any status, so a long
 * message (one echoing what the client sent) is cut, with a note of how much was left out.
 */
export const MAX_GRPC_MESSAGE_BYTES = 4096;
const CUT_NOTE_RESERVE = 64;

/** `message` encoded for grpc-message, cut (on a character boundary) to MAX_GRPC_MESSAGE_BYTES. */
export function grpcMessageHeader(message: string): string {
  if (message.length <= MAX_GRPC_MESSAGE_BYTES) {
    const encoded = encodeGrpcMessage(message);
    if (encoded.length <= MAX_GRPC_MESSAGE_BYTES) return encoded;
  }
  // Keep whole characters while their encoding fits, leaving room for the note.
  const budget = MAX_GRPC_MESSAGE_BYTES - CUT_NOTE_RESERVE;
  let bytes = 0;
  let end = 0;
  for (const ch of message) {
    const size = /^[\x20-\x24\x26-\x7e]$/.test(ch) ? 1 : 3 * Buffer.byteLength(ch, 'utf8');
    if (bytes + size > budget) break;
    bytes += size;
    end += ch.length;
  }
  return encodeGrpcMessage(`${message.slice(0, end)}... (${message.length - end} more characters cut)`);
}
