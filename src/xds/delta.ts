// Incremental (delta) SDS stream as a pure state machine: (state, event) → (state, actions).
// Per-resource versions are tracked per stream; a new stream starts from the client's
// initial_resource_versions (go-control-plane#615).
import type { DeltaDiscoveryRequest, DeltaDiscoveryResponse, DeltaResource, Node } from './messages.js';
import {
  EMPTY_SUBSCRIPTION,
  SECRET_TYPE_URL,
  normaliseNames,
  restrictTo,
  sameSubscription,
  type EncodedResource,
  type Subscription,
} from './resource.js';
import {
  checkTypeUrl,
  defaultNonce,
  fail,
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

export interface DeltaState {
  readonly started: boolean;
  readonly closed: boolean;
  readonly node: Node | undefined;
  readonly subscription: Subscription;
  /** name → version the client has, as far as we know (sent by us, or claimed on the first request). */
  readonly known: ReadonlyMap<string, string>;
  readonly counter: number;
  readonly lastNonce: string;
  /** Nonces of responses not ACKed or NACKed yet (the last few): only these are ACKs or NACKs. */
  readonly unanswered: readonly string[];
  /**
   * Names the client unsubscribed while a response was unanswered: that response may carry one,
   * and applies again if the name is subscribed before it is read. Emptied once all are answered.
   */
  readonly unsubscribedInFlight: ReadonlySet<string>;
}

/** Responses in flight a delta client may still answer; an older one's ACK is just not counted. */
const MAX_UNANSWERED = 16;
/** Names kept in unsubscribedInFlight at most (a client that never answers must not grow it for good). */
const MAX_UNSUBSCRIBED_IN_FLIGHT = 1024;
/**
 * The version in `known` of a name the client may or may not hold: no resource has it, so the
 * next response sends the name or its removal (go-control-plane's "" version).
 */
const UNCONFIRMED = '';
/**
 * Versions this server gives are a few dozen characters (serials, content hashes): a longer one a
 * client claims is none of ours, and is kept as UNCONFIRMED instead of as the peer's text (up to a
 * 1 MiB request of it, for the stream's life).
 */
const MAX_CLAIMED_VERSION_CHARS = 256;
const NO_NAMES: ReadonlySet<string> = new Set();

export type DeltaEvent = StreamEvent<DeltaDiscoveryRequest>;

export type DeltaSendAction = SendAction<DeltaDiscoveryResponse>;
export type DeltaAction = DeltaSendAction | CommonAction;

export type DeltaStep = Step<DeltaState, DeltaAction>;

export function initialDeltaState(): DeltaState {
  return {
    started: false,
    closed: false,
    node: undefined,
    subscription: EMPTY_SUBSCRIPTION,
    known: new Map(),
    counter: 0,
    lastNonce: '',
    unanswered: [],
    unsubscribedInFlight: NO_NAMES,
  };
}

export function deltaStep(state: DeltaState, event: DeltaEvent, ctx: StepContext): DeltaStep {
  if (state.closed) {
    const nonce = event.type === 'request' ? (event.request.response_nonce ?? '') : '';
    return { state, actions: event.type === 'request' ? [{ type: 'ignore', reason: 'closed', nonce }] : [] };
  }
  if (event.type === 'changed') {
    if (!state.started) return { state, actions: [] };
    return respond(state, ctx, [], false);
  }
  return onRequest(state, event.request, ctx);
}

function onRequest(state: DeltaState, req: DeltaDiscoveryRequest, ctx: StepContext): DeltaStep {
  const typeFailure = checkTypeUrl(req.type_url, ctx);
  if (typeFailure) return closeWith(state, [typeFailure]);
  const { node, failure } = nextNode(state.node, req.node);
  if (failure) return closeWith(state, [failure]);

  // Delta requests are never dropped as stale: each one carries subscription changes that the
  // client will not repeat. The nonce only says which response is being ACKed or NACKed.
  const actions: DeltaAction[] = [];
  const nonce = req.response_nonce ?? '';
  // Only a nonce this stream sent and that is not answered yet makes an ACK or a NACK (a made-up
  // or repeated one would count as many as the peer likes); its subscription changes still apply.
  const answers = nonce !== '' && state.unanswered.includes(nonce);
  const unanswered = answers ? state.unanswered.filter((n) => n !== nonce) : state.unanswered;
  if (nonce !== '' && !answers) actions.push({ type: 'ignore', reason: 'unknown-nonce', nonce });
  else if (answers && req.error_detail) {
    // `known` keeps the NACKed versions, so nothing is resent until the resource changes again.
    actions.push({ type: 'nack', nonce, version_info: '', detail: nackDetail(req.error_detail) });
  } else if (answers) {
    actions.push({ type: 'ack', nonce, version_info: '' });
  }

  const { names: subscribe, star: subStar } = normaliseNames(req.resource_names_subscribe);
  const { names: unsubscribe, star: unsubStar } = normaliseNames(req.resource_names_unsubscribe);
  let wildcard: boolean;
  // The sorted names, changed in place of being sorted again: a stream holding 1,000 names of
  // 2,000 characters paid a Set and a sort of all of them for each request changing one name.
  const names = withChanges(state.subscription.names, subscribe, unsubscribe);
  const known = new Map(state.known);
  let unsubscribedInFlight = unanswered.length === 0 ? NO_NAMES : state.unsubscribedInFlight;
  const droppedInFlight: string[] = [];

  if (!state.started) {
    // An empty initial subscription (or `*`) is a wildcard, per the xDS spec.
    wildcard = subStar || subscribe.length === 0;
    if (unsubStar) wildcard = false;
    // A reconnecting client tells us what it already has; honour it for names in scope.
    for (const [n, v] of Object.entries(req.initial_resource_versions ?? {})) {
      if (wildcard || hasSorted(names, n)) known.set(n, v.length <= MAX_CLAIMED_VERSION_CHARS ? v : UNCONFIRMED);
    }
  } else {
    wildcard = state.subscription.wildcard;
    if (subStar) wildcard = true;
    // Subscribing again to a name means the client wants it (again): resend it. One it dropped
    // while a response carrying it was unanswered may come back with that response: resend it, or
    // say it is removed, so the client does not keep a version we no longer have.
    for (const n of subscribe) {
      if (unsubscribedInFlight.has(n)) known.set(n, UNCONFIRMED);
      else known.delete(n);
    }
    for (const n of unsubscribe) {
      if (!known.has(n)) continue;
      // Unsubscribed by name but still in the wildcard: Envoy holds it as ambiguous until told
      // whether to keep it (the name again) or drop it (its removal).
      if (wildcard) known.set(n, UNCONFIRMED);
      else {
        known.delete(n);
        if (unanswered.length > 0) droppedInFlight.push(n);
      }
    }
    if (unsubStar) {
      wildcard = false;
      // The client drops what it had only through the wildcard; no removal message needed.
      for (const n of [...known.keys()]) {
        if (hasSorted(names, n)) continue;
        known.delete(n);
        if (unanswered.length > 0) droppedInFlight.push(n);
      }
    }
    if (droppedInFlight.length > 0) unsubscribedInFlight = withCapped(unsubscribedInFlight, droppedInFlight);
  }

  const limit = ctx.maxSubscribedNames;
  if (limit !== undefined && names.length > limit) {
    return closeWith(state, [...actions, fail(`too many resource names subscribed on one stream (limit ${limit}): this request would make it ${names.length}`)]);
  }
  const asked: Subscription = { wildcard, names };
  const subChanged = !state.started || !sameSubscription(asked, state.subscription);
  // An unchanged subscription keeps its object (resolvers key their plans on it).
  const subscription = subChanged ? asked : state.subscription;
  if (subChanged) actions.push({ type: 'subscribe', subscription });
  const first = !state.started;
  return respond({ ...state, started: true, node, subscription, known, unanswered, unsubscribedInFlight }, ctx, actions, first && wildcard);
}

/**
 * Sends every in-scope resource whose version differs from what the client has, and
 * `removed_resources` for what the client has but is no longer resolvable. The first response of
 * a wildcard stream is sent even when empty (as go-control-plane does), so the client sees the
 * state of the world.
 */
function respond(state: DeltaState, ctx: StepContext, actions: DeltaAction[], forceSend: boolean): DeltaStep {
  const sub = state.subscription;
  const inScope = sub.wildcard || sub.names.length > 0;
  const resolution = inScope ? ctx.resolve(sub) : { resources: new Map<string, EncodedResource>(), invalid: [] };
  if (resolution.invalid.length > 0) return closeWith(state, [...actions, invalidNamesFailure(resolution.invalid)]);

  const resolved = restrictTo(sub, resolution.resources);
  const changed: EncodedResource[] = [];
  for (const r of resolved.values()) if (state.known.get(r.name) !== r.version) changed.push(r);
  const removed: string[] = [];
  const pending = new Set(resolution.pending ?? []);
  const isPending = resolution.isPending;
  for (const name of state.known.keys()) if (!resolved.has(name) && !pending.has(name) && !isPending?.(name)) removed.push(name);
  if (changed.length === 0 && removed.length === 0 && !forceSend) return { state, actions };

  changed.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  removed.sort();
  const known = new Map(state.known);
  for (const r of changed) known.set(r.name, r.version);
  for (const n of removed) known.delete(n);
  const counter = state.counter + 1;
  const nonce = (ctx.nonce ?? defaultNonce)();
  const resources: DeltaResource[] = changed.map((r) => ({ name: r.name, version: r.version, resource: r.any }));
  const response: DeltaDiscoveryResponse = {
    system_version_info: String(counter),
    resources,
    removed_resources: removed,
    type_url: ctx.typeUrl ?? SECRET_TYPE_URL,
    nonce,
  };
  actions.push({ type: 'send', response, resources: changed });
  const unanswered = state.unanswered.length < MAX_UNANSWERED ? [...state.unanswered, nonce] : [...state.unanswered.slice(1), nonce];
  return { state: { ...state, counter, lastNonce: nonce, known, unanswered }, actions };
}

/** Where `name` is or would go in sorted `names` (binary search: a few comparisons, not one per name). */
function lowerBound(names: readonly string[], name: string): number {
  let lo = 0;
  let hi = names.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (names[mid]! < name) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function hasSorted(names: readonly string[], name: string): boolean {
  return names[lowerBound(names, name)] === name;
}

/** Sorted `names` with `add` added, then `remove` removed; the same array when the request changes nothing. */
function withChanges(names: readonly string[], add: readonly string[], remove: readonly string[]): readonly string[] {
  if (add.length === 0 && remove.length === 0) return names;
  const out = names.slice();
  for (const n of add) {
    const i = lowerBound(out, n);
    if (out[i] !== n) out.splice(i, 0, n);
  }
  for (const n of remove) {
    const i = lowerBound(out, n);
    if (out[i] === n) out.splice(i, 1);
  }
  return out;
}

/** `set` with `add` added, as a new set of at most MAX_UNSUBSCRIBED_IN_FLIGHT names. */
function withCapped(set: ReadonlySet<string>, add: readonly string[]): ReadonlySet<string> {
  const out = new Set(set);
  for (const n of add) {
    if (out.size >= MAX_UNSUBSCRIBED_IN_FLIGHT) break;
    out.add(n);
  }
  return out;
}

function closeWith(state: DeltaState, actions: DeltaAction[]): DeltaStep {
  return { state: { ...state, closed: true }, actions };
}

/** Mutable convenience wrapper for a transport: holds the state, runs steps. */
export class DeltaStream extends MachineStream<DeltaState, DeltaDiscoveryRequest, DeltaAction> {
  constructor(ctx: StepContext) {
    super(deltaStep, initialDeltaState(), ctx);
  }
}
