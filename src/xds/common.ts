// Pieces shared by the SotW, delta and fetch state machines: options, the actions every variant
// can emit, and the request checks (type URL, node) that fail a stream.
import { randomBytes } from 'node:crypto';
import { quoted } from '../api/quote.js';
import type { Node, Status } from './messages.js';
import { SECRET_TYPE_URL, type EncodedResource, type Resolver, type Subscription } from './resource.js';

export interface XdsOptions {
  /** The only type this stream serves. Default: the Secret type. */
  readonly typeUrl?: string;
  /**
   * Treat an empty `type_url` as `typeUrl` (true on the SDS service, where Envoy may leave it
   * out; ADS should pass false). Default true.
   */
  readonly allowEmptyTypeUrl?: boolean;
  /** Nonce generator; random by default. Injected so tests can be deterministic. */
  readonly nonce?: () => string;
  /**
   * Delta only: names one stream may hold subscribed in all. A per-request cap alone lets a
   * client grow one subscription request by request, and every later request re-resolves all of it.
   * Default: no limit.
   */
  readonly maxSubscribedNames?: number;
}

/** What a step needs besides state and event. */
export interface StepContext extends XdsOptions {
  readonly resolve: Resolver;
}

export type FailAction = { readonly type: 'fail'; readonly code: 'INVALID_ARGUMENT'; readonly message: string };
/** The subscription changed: the transport re-points its cache watches. */
export type SubscribeAction = { readonly type: 'subscribe'; readonly subscription: Subscription };
/** For logging/metrics only; the state machine has already decided not to resend. */
export type NackAction = {
  readonly type: 'nack';
  readonly nonce: string;
  readonly version_info: string;
  readonly detail: { readonly code: number; readonly message: string };
};
/** For metrics only. */
export type AckAction = { readonly type: 'ack'; readonly nonce: string; readonly version_info: string };
/** A request that was dropped without effect (for debug logs). */
export type IgnoreAction = { readonly type: 'ignore'; readonly reason: 'stale-nonce' | 'unknown-nonce' | 'closed'; readonly nonce: string };

export type CommonAction = FailAction | SubscribeAction | NackAction | AckAction | IgnoreAction;

/**
 * A nonce only has to tell this stream's responses apart: a per-process random tag and a counter
 * (10 characters or fewer, kept twice per stream for days) instead of a 36-character UUID.
 * The tag keeps a restarted server from reusing its predecessor's nonces.
 */
const NONCE_TAG = randomBytes(3).toString('base64url');
let nonceCounter = 0;
export const defaultNonce = (): string => NONCE_TAG + (++nonceCounter).toString(36);

export function fail(message: string): FailAction {
  return { type: 'fail', code: 'INVALID_ARGUMENT', message };
}

/** Returns a failure when the request's type URL is not the one this stream serves. */
export function checkTypeUrl(typeUrl: string | undefined, opts: XdsOptions): FailAction | undefined {
  const want = opts.typeUrl ?? SECRET_TYPE_URL;
  const got = typeUrl ?? '';
  if (got === want) return undefined;
  if (got === '' && (opts.allowEmptyTypeUrl ?? true)) return undefined;
  return fail(`unsupported type_url ${quoted(got)}: this stream serves only "${want}"`);
}

/**
 * The node may come on the first request only (set_node_on_first_message_only); a later request
 * that names a different node id is refused, since identity may depend on it.
 */
export function nextNode(
  current: Node | undefined,
  incoming: Node | null | undefined,
): { node: Node | undefined; failure?: FailAction } {
  if (!incoming) return { node: current };
  if (!current) return { node: incoming };
  if ((incoming.id ?? '') !== (current.id ?? '')) {
    return { node: current, failure: fail(`node.id changed within the stream from ${quoted(current.id ?? '')} to ${quoted(incoming.id ?? '')}`) };
  }
  return { node: current };
}

/** Names a failure echoes (each cut by quoted() at 200 characters): enough to find the bad ones, never a whole request. */
const ECHOED_NAMES = 5;

export function invalidNamesFailure(invalid: readonly string[]): FailAction {
  const names = [...new Set(invalid)].sort();
  const shown = names.slice(0, ECHOED_NAMES).map((n) => quoted(n));
  const more = names.length > ECHOED_NAMES ? ` and ${names.length - ECHOED_NAMES} more` : '';
  return fail(`unknown resource name${names.length === 1 ? '' : 's'} ${shown.join(', ')}${more}: no such secret can exist for this proxy`);
}

export function nackDetail(s: Status): { code: number; message: string } {
  return { code: s.code ?? 0, message: s.message ?? '' };
}

/** What a stream's pure step consumes: a request from the client, or a change of what it watches. */
export type StreamEvent<Req> = { readonly type: 'request'; readonly request: Req } | { readonly type: 'changed' };

/** The one action that writes to the client; `resources` are there for logs and metrics. */
export type SendAction<Res> = { readonly type: 'send'; readonly response: Res; readonly resources: readonly EncodedResource[] };

export interface Step<S, A> {
  readonly state: S;
  readonly actions: A[];
}

/** Mutable convenience wrapper for a transport: holds a stream's state and runs its pure steps. */
export class MachineStream<S, Req, A> {
  #state: S;
  constructor(
    private readonly step: (state: S, event: StreamEvent<Req>, ctx: StepContext) => Step<S, A>,
    initial: S,
    private readonly ctx: StepContext,
  ) {
    this.#state = initial;
  }

  get state(): S {
    return this.#state;
  }

  onRequest(request: Req): A[] {
    return this.#run({ type: 'request', request });
  }

  /** Call when any cache key this stream watches changed. */
  onChange(): A[] {
    return this.#run({ type: 'changed' });
  }

  #run(event: StreamEvent<Req>): A[] {
    const r = this.step(this.#state, event, this.ctx);
    this.#state = r.state;
    return r.actions;
  }
}
