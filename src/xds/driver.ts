// Glue between a stream state machine and the SecretCache, still transport-free: it keeps the
// stream's cache watch in line with its subscription and feeds cache changes back as `changed`
// events. The transport supplies `execute` (write responses, end the call, log, count).
import type { SecretCache } from './cache.js';
import type { SubscribeAction } from './common.js';
import type { Subscription } from './resource.js';

/** SotwStream and DeltaStream both fit. */
export interface StreamMachine<Req, A extends { readonly type: string }> {
  onRequest(request: Req): A[];
  onChange(): A[];
}

/**
 * The cache keys a subscription reads, so that a change to any of them wakes the stream. For a
 * wildcard include the index keys whose `touch()` signals that the set of names changed.
 * Must agree with the Resolver the machine was built with.
 */
export type KeysFor = (subscription: Subscription) => Iterable<string>;

export class StreamDriver<Req, A extends { readonly type: string }> {
  #cancelWatch: (() => void) | undefined;
  #closed = false;

  constructor(
    private readonly machine: StreamMachine<Req, A>,
    private readonly cache: SecretCache,
    private readonly keysFor: KeysFor,
    private readonly execute: (actions: A[]) => void,
  ) {}

  get closed(): boolean {
    return this.#closed;
  }

  /** Feed one request from the client. */
  onRequest(request: Req): void {
    if (this.#closed) return;
    this.#handle(this.machine.onRequest(request));
  }

  /** The call ended (client went away, error, or after a `fail` action): drop the watch. Idempotent. */
  close(): void {
    this.#closed = true;
    this.#cancelWatch?.();
    this.#cancelWatch = undefined;
  }

  #handle(actions: A[]): void {
    for (const a of actions) {
      if (a.type === 'subscribe') this.#rewatch((a as unknown as SubscribeAction).subscription);
      else if (a.type === 'fail') this.close();
    }
    if (actions.length > 0) this.execute(actions);
  }

  #rewatch(subscription: Subscription): void {
    if (this.#closed) return;
    this.#cancelWatch?.();
    // Resolution already happened in this same synchronous step and cache notifications are
    // deferred, so no change can slip between the resolve and this watch.
    this.#cancelWatch = this.cache.watch(this.keysFor(subscription), () => {
      if (!this.#closed) this.#handle(this.machine.onChange());
    });
  }
}
