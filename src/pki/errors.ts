/** A CA that cannot be used, or a leaf that cannot be issued from it; the message is user-facing. */
export class CaError extends Error {
  override readonly name = 'CaError';
}
