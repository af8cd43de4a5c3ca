// State-of-the-world SDS stream as a pure state machine: (state, event) → (state, actions).
// Semantics follow Envoy, the SPIRE agent's SDS handler and go-control-plane (see README.md).
import type { DiscoveryRequest, DiscoveryResponse, Node } from './messages.js';
import {
  EMPTY_SUBSCRIPTION,
  SECRET_TYPE_URL,
  normaliseNames,
  restrictTo,
  sameStrings,
  sameSubscription,
  sameVersionsAs,
  versionsOf,
  type Subscription,
} from './resource.js';
import {
  checkTypeUrl,
  defaultNonce,
  invalidNamesFailure,
  nackDetail,
  nextNode,
  MachineStream,
  type CommonAction,
  type SendAction,
  type Step,
  type StreamEvent,
  type StepContext,
} from './common.js';

export interface SotwState {
  /** Set once the first (non-failing) request has been processed. */
  readonly started: boolean;
  readonly closed: boolean;
  readonly node: Node | undefined;
  readonly subscription: Subscription;
  /** Wildcard entered by an empty first request; stays wildcard on later empty lists (xDS legacy). */
  readonly legacyWildcard: boolean;
  /** Responses sent so far; `version_info` of the last one is String(counter). */
  readonly counter: number;
  /** '' until the first response: until then no request is stale (spire#813). */
  readonly lastNonce: string;
  /**
   * The nonce of the last response the client ACKed or NACKed: a response is answered once, and a
   * repeated answer (a peer's loop, or made up) is not counted again in the ACK/NACK metrics.
   */
  readonly answeredNonce: string;
  /** name → version of the last response, pruned to the current subscription. */
  readonly sent: ReadonlyMap<string, string>;
  /** The last response the client ACKed (debug/introspection only). */
  readonly acked: { readonly version_info: string; readonly versions: ReadonlyMap<string, string> } | undefined;
}

export type SotwEvent = StreamEvent<DiscoveryRequest>;

export type SotwSendAction = SendAction<DiscoveryResponse>;
export type SotwAction = SotwSendAction | CommonAction;

export type SotwStep = Step<SotwState, SotwAction>;

export function initialSotwState(): SotwState {
  return {
    started: false,
    closed: false,
    node: undefined,
    subscription: EMPTY_SUBSCRIPTION,
    legacyWildcard: false,
    counter: 0,
    lastNonce: '',
    answeredNonce: '',
    sent: new Map(),
    acked: undefined,
  };
}

/**
 * The subscription a SotW request asks for. An empty list is a wildcard on the first request
 * (and keeps a legacy wildcard); after explicit names it unsubscribes from everything.
 * `*` among the names is an explicit wildcard.
 */
export function sotwSubscription(
  state: Pick<SotwState, 'started' | 'legacyWildcard' | 'subscription'>,
  resourceNames: readonly string[] | undefined,
): { subscription: Subscription; legacyWildcard: boolean } {
  // An ACK repeats the names of the request before it (sorted, no duplicates, no '*'):
  // the subscription is the one the stream has, without a Set, an array and a sort per ACK.
  const current = state.subscription;
  if (state.started && !state.legacyWildcard && !current.wildcard && current.names.length > 0 && resourceNames && sameStrings(resourceNames, current.names)) {
    return { subscription: current, legacyWildcard: false };
  }
  const { names, star } = normaliseNames(resourceNames);
  if (names.length === 0 && !star) {
    if (!state.started || state.legacyWildcard) return { subscription: { wildcard: true, names: [] }, legacyWildcard: true };
    return { subscription: EMPTY_SUBSCRIPTION, legacyWildcard: false };
  }
  return { subscription: { wildcard: star, names }, legacyWildcard: false };
}

export function sotwStep(state: SotwState, event: SotwEvent, ctx: StepContext): SotwStep {
  if (state.closed) {
    const nonce = event.type === 'request' ? (event.request.response_nonce ?? '') : '';
    return { state, actions: event.type === 'request' ? [{ type: 'ignore', reason: 'closed', nonce }] : [] };
  }
  return event.type === 'request' ? onRequest(state, event.request, ctx) : onChanged(state, ctx);
}

function onRequest(state: SotwState, req: DiscoveryRequest, ctx: StepContext): SotwStep {
  const typeFailure = checkTypeUrl(req.type_url, ctx);
  if (typeFailure) return closeWith(state, [typeFailure]);
  const { node, failure } = nextNode(state.node, req.node);
  if (failure) return closeWith(state, [failure]);

  const nonce = req.response_nonce ?? '';
  // Only once we have sent something can a nonce be stale; a first request that carries the
  // nonce of a previous stream must still be answered (spire#813).
  if (state.lastNonce !== '' && nonce !== state.lastNonce) {
    return { state: node === state.node ? state : { ...state, node }, actions: [{ type: 'ignore', reason: 'stale-nonce', nonce }] };
  }

  const actions: SotwAction[] = [];
  let acked = state.acked;
  const versionInfo = req.version_info ?? '';
  // A later request with the same nonce may still change the subscription (Envoy adding a name),
  // so only its ACK or NACK is dropped, not the request.
  const answeredBefore = nonce !== '' && nonce === state.answeredNonce;
  // Only the last response this stream sent can be ACKed or NACKed: before the first one, a request
  // with error_detail (a made-up nonce, or one of an earlier stream) rejected nothing we sent.
  const answers = nonce !== '' && nonce === state.lastNonce;
  if (answeredBefore || !answers) {
    // Already counted, or nothing of ours to answer.
  } else if (req.error_detail) {
    // The client keeps its last good secret; we keep `sent` so the same thing is not resent.
    actions.push({ type: 'nack', nonce, version_info: versionInfo, detail: nackDetail(req.error_detail) });
  } else {
    // The version of the response ACKed (the last one sent), not the peer's text: a 1 MiB
    // version_info was kept for the stream's whole life (64 streams per token: 64 MiB).
    const version = String(state.counter);
    actions.push({ type: 'ack', nonce, version_info: version });
    acked = { version_info: version, versions: state.sent };
  }
  const answeredNonce = answers ? nonce : state.answeredNonce;

  const next = sotwSubscription(state, req.resource_names);
  const subChanged = !state.started || !sameSubscription(next.subscription, state.subscription);
  let sent = state.sent;
  if (subChanged) {
    actions.push({ type: 'subscribe', subscription: next.subscription });
    // The client forgets what it unsubscribed from; a later resubscribe must be answered (go-control-plane#431).
    sent = prune(sent, next.subscription);
  }
  const base: SotwState = {
    ...state,
    started: true,
    node,
    // An unchanged subscription keeps its object: resolvers key their plans on it (a request that
    // does not change it resolves from the kept plan instead of building a new one).
    subscription: subChanged ? next.subscription : state.subscription,
    legacyWildcard: next.legacyWildcard,
    sent,
    acked,
    answeredNonce,
  };
  // An ACK or NACK of the last response with the subscription unchanged cannot need a response:
  // every change since that response reaches the stream as a 'changed' event (which pushes), so
  // resolving again here would only find the versions already sent. (Half of all requests.)
  if (!subChanged && state.lastNonce !== '') return { state: base, actions };
  return respond(base, ctx, actions, subChanged);
}

function onChanged(state: SotwState, ctx: StepContext): SotwStep {
  if (!state.started) return { state, actions: [] };
  return respond(state, ctx, [], false);
}

/**
 * Sends the currently resolvable subscribed set when the subscription just changed or when it
 * differs from what was last sent. A non-wildcard subscription with nothing resolvable sends
 * nothing (the names are held; Envoy would reject an empty SDS response).
 */
function respond(state: SotwState, ctx: StepContext, actions: SotwAction[], subChanged: boolean): SotwStep {
  const sub = state.subscription;
  if (!sub.wildcard && sub.names.length === 0) return { state, actions };
  const resolution = ctx.resolve(sub);
  if (resolution.invalid.length > 0) return closeWith(state, [...actions, invalidNamesFailure(resolution.invalid)]);

  const resolved = restrictTo(sub, resolution.resources);
  const changed = subChanged || !sameVersionsAs(resolved, state.sent);
  if (!changed || (resolved.size === 0 && !sub.wildcard)) return { state, actions };

  const resources = [...resolved.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const counter = state.counter + 1;
  const nonce = (ctx.nonce ?? defaultNonce)();
  const response: DiscoveryResponse = {
    version_info: String(counter),
    resources: resources.map((r) => r.any),
    type_url: ctx.typeUrl ?? SECRET_TYPE_URL,
    nonce,
  };
  actions.push({ type: 'send', response, resources });
  return { state: { ...state, counter, lastNonce: nonce, sent: versionsOf(resolved) }, actions };
}

function prune(sent: ReadonlyMap<string, string>, sub: Subscription): ReadonlyMap<string, string> {
  if (sub.wildcard || sent.size === 0) return sent;
  const keep = new Set(sub.names);
  const out = new Map<string, string>();
  for (const [name, v] of sent) if (keep.has(name)) out.set(name, v);
  return out;
}

function closeWith(state: SotwState, actions: SotwAction[]): SotwStep {
  return { state: { ...state, closed: true }, actions };
}

/** Mutable convenience wrapper for a transport: holds the state, runs steps. */
export class SotwStream extends MachineStream<SotwState, DiscoveryRequest, SotwAction> {
  constructor(ctx: StepContext) {
    super(sotwStep, initialSotwState(), ctx);
  }
}
