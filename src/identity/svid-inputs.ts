/** What an SVID is issued from; any change means reissue. (References to shared strings: no per-proxy copies.) */
export interface SvidInputs {
  identity: string;
  ca: string;
  /** The CA's chain as served after the leaf: the same CA given with more (or fewer) parents changes it. */
  chain: string;
  spiffeId: string;
  expiryMs: number;
}

export const sameInputs = (a: SvidInputs | undefined, b: SvidInputs) =>
  a !== undefined && a.identity === b.identity && a.ca === b.ca && a.chain === b.chain && a.spiffeId === b.spiffeId && a.expiryMs === b.expiryMs;
