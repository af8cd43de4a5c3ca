import { createHash } from 'node:crypto';
import { watchFile, unwatchFile } from 'node:fs';
import { BehaviorSubject, Subject, concatMap, from, merge, map, type Observable, type Subscription } from 'rxjs';
import {
  meshIdentityKri,
  resourceKey,
  resourcesOfKind,
  type MeshIdentity,
  type MeshTrust,
  type ResourceSnapshot,
  type SecureDataSource,
} from '../api/types.js';
import { loadCertificateAuthority } from '../pki/ca.js';
import { generateCertificateAuthority } from '../pki/generate-ca.js';
import { resolveDataSource } from '../pki/data-source.js';
import type { CertificateAuthority } from '../pki/types.js';
import type { StateStore } from '../store/types.js';
import { nextRetirement, recordCurrentCa, type CaHistoryEntry } from './ca-history.js';
import { condition, type Condition } from './conditions.js';
import { identityTrustDomain } from './spiffe.js';

/** What the server knows about one MeshIdentity after resolving its provider. */
export interface IdentityState {
  identity: MeshIdentity;
  key: string;
  kri: string;
  /** The trust domain when it does not depend on proxy labels. */
  trustDomain?: string;
  /** Bundled provider: the CA leaves are signed with (the last good one if the current input is bad). */
  ca?: CertificateAuthority;
  /** Bundled provider: the CAs to publish (current first, then rolled ones whose leaves may be alive). */
  caHistory?: readonly CaHistoryEntry[];
  conditions: Condition[];
  /** True when proxies matched by this identity can be served. */
  ready: boolean;
}

export interface AuthorityView {
  revision: number;
  snapshot: ResourceSnapshot;
  zone: string;
  identities: ReadonlyMap<string, IdentityState>;
  /** User MeshTrusts plus those auto-created from identities. */
  trusts: readonly MeshTrust[];
}

export interface AuthoritiesOptions {
  zone: string;
  state: StateStore;
  env?: NodeJS.ProcessEnv;
  /** Poll interval for CA files (`File` data sources are re-read when they change). */
  filePollMs?: number;
  log?: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void };
  now?: () => Date;
}

interface Loaded {
  inputHash: string;
  ca?: CertificateAuthority;
  error?: string;
  history: CaHistoryEntry[];
}

const stateKeySegment = (s: string) => (s === '' ? '_' : s);

/**
 * Turns each resource snapshot into resolved identities: loads or autogenerates each Bundled CA
 * (last-known-good on error), keeps CA history for rolls, and derives the auto-created MeshTrusts.
 */
export class IdentityAuthorities {
  private readonly view$ = new BehaviorSubject<AuthorityView | undefined>(undefined);
  private readonly retrigger$ = new Subject<void>();
  private readonly loaded = new Map<string, Loaded>();
  private readonly watchedFiles = new Set<string>();
  private retireTimer?: NodeJS.Timeout;
  private subscription?: Subscription;
  private latest?: ResourceSnapshot;
  private revision = 0;

  constructor(private readonly opts: AuthoritiesOptions) {}

  get views$(): Observable<AuthorityView> {
    return this.view$.pipe(
      concatMap((v) => (v ? [v] : [])),
    );
  }

  get current(): AuthorityView | undefined {
    return this.view$.value;
  }

  start(snapshots$: Observable<ResourceSnapshot>): void {
    this.subscription = merge(
      snapshots$.pipe(map((s) => (this.latest = s))),
      this.retrigger$.pipe(map(() => this.latest)),
    )
      .pipe(concatMap((s) => from(s ? this.compute(s) : Promise.resolve(undefined))))
      .subscribe({
        next: (v) => v && this.view$.next(v),
        error: (e: Error) => this.opts.log?.warn({ err: e.message }, 'identity computation failed'),
      });
  }

  stop(): void {
    this.subscription?.unsubscribe();
    clearTimeout(this.retireTimer);
    for (const f of this.watchedFiles) unwatchFile(f);
    this.watchedFiles.clear();
    this.view$.complete();
  }

  private now(): Date {
    return this.opts.now?.() ?? new Date();
  }

  private watchFiles(paths: string[]): void {
    for (const p of paths) {
      if (this.watchedFiles.has(p)) continue;
      this.watchedFiles.add(p);
      watchFile(p, { interval: this.opts.filePollMs ?? 1000, persistent: false }, () => this.retrigger$.next());
    }
  }

  private async compute(snapshot: ResourceSnapshot): Promise<AuthorityView> {
    const now = this.now();
    const secrets = new Map<string, Buffer>();
    for (const s of resourcesOfKind(snapshot, 'Secret')) secrets.set(`${s.mesh}/${s.name}`, s.data);
    const identities = new Map<string, IdentityState>();
    const autoTrusts: MeshTrust[] = [];
    const live = new Set<string>();
    for (const mi of resourcesOfKind(snapshot, 'MeshIdentity')) {
      const key = resourceKey(mi);
      live.add(key);
      const st = await this.resolveIdentity(mi, key, secrets, now);
      identities.set(key, st.state);
      if (st.autoTrust) autoTrusts.push(st.autoTrust);
    }
    for (const k of [...this.loaded.keys()]) if (!live.has(k)) this.loaded.delete(k);

    const userTrusts = resourcesOfKind(snapshot, 'MeshTrust');
    const userKeys = new Set(userTrusts.map(resourceKey));
    const trusts = [...userTrusts];
    for (const t of autoTrusts) {
      const owner = identities.get(resourceKey({ ...t, kind: 'MeshIdentity' }));
      if (userKeys.has(resourceKey(t))) {
        owner?.conditions.splice(
          1,
          1,
          condition('MeshTrustCreated', false, 'NameConflict', `a MeshTrust named "${t.name}" already exists and was not created from this identity`),
        );
        continue;
      }
      trusts.push(t);
    }
    this.scheduleRetirement();
    return { revision: ++this.revision, snapshot, zone: this.opts.zone, identities, trusts };
  }

  private scheduleRetirement(): void {
    clearTimeout(this.retireTimer);
    const times = [...this.loaded.values()].flatMap((l) => {
      const t = nextRetirement(l.history);
      return t === undefined ? [] : [t];
    });
    if (times.length === 0) return;
    const delay = Math.min(Math.max(Math.min(...times) - this.now().getTime(), 0) + 1000, 2 ** 31 - 1);
    this.retireTimer = setTimeout(() => {
      for (const l of this.loaded.values()) l.inputHash = '';
      this.retrigger$.next();
    }, delay);
    this.retireTimer.unref();
  }

  private async readSource(ds: SecureDataSource, secrets: Map<string, Buffer>, mesh: string): Promise<string> {
    if (ds.type === 'File') this.watchFiles([ds.file.path]);
    return resolveDataSource(ds, { env: this.opts.env ?? process.env, secret: (name) => secrets.get(`${mesh}/${name}`) });
  }

  private async resolveIdentity(
    mi: MeshIdentity,
    key: string,
    secrets: Map<string, Buffer>,
    now: Date,
  ): Promise<{ state: IdentityState; autoTrust?: MeshTrust }> {
    const kri = meshIdentityKri(mi, this.opts.zone);
    const td = identityTrustDomain(mi, this.opts.zone);
    const base = { identity: mi, key, kri, trustDomain: td.ok ? td.trustDomain : undefined };
    const provider = mi.spec.provider;
    if (provider.type === 'Spire') {
      return {
        state: {
          ...base,
          ready: true,
          conditions: [
            condition('Provider', true, 'Spire', 'SVIDs are delivered by the SPIRE agent; mesh-sds computes the SPIFFE ID only'),
            condition('MeshTrustCreated', false, 'NotApplicable', 'MeshTrust does not apply to the Spire provider'),
            condition('Ready', true, 'Ready', 'identity is computed; point Envoy at the SPIRE agent for certificates'),
          ],
        },
      };
    }
    const bundled = provider.bundled;
    const prev = this.loaded.get(key);
    let loaded: Loaded;
    try {
      if (!td.ok) throw new Error(td.reason);
      let certPem: string;
      let keyPem: string;
      let inputs: string;
      if (bundled.ca) {
        [certPem, keyPem] = await Promise.all([
          this.readSource(bundled.ca.certificate, secrets, mi.mesh),
          this.readSource(bundled.ca.privateKey, secrets, mi.mesh),
        ]);
        inputs = certPem + keyPem;
      } else {
        const stateKey = `ca/${mi.mesh}/${stateKeySegment(mi.namespace)}/${mi.name}/${td.trustDomain}`;
        const stored = JSON.parse(
          await this.opts.state.getOrCreate(stateKey, async () => JSON.stringify(await generateCertificateAuthority(td.trustDomain))),
        ) as { certPem: string; keyPem: string };
        certPem = stored.certPem;
        keyPem = stored.keyPem;
        inputs = stateKey + certPem;
      }
      const inputHash = createHash('sha256').update(JSON.stringify(bundled)).update(inputs).digest('hex');
      if (prev && prev.inputHash === inputHash && prev.ca) {
        loaded = prev;
      } else {
        const ca = loadCertificateAuthority(certPem, keyPem, { allowSelfSigned: bundled.insecureAllowSelfSigned, now });
        const history = await recordCurrentCa(
          this.opts.state,
          `ca-history/${mi.mesh}/${stateKeySegment(mi.namespace)}/${mi.name}`,
          { fingerprint: ca.fingerprint, pem: ca.trustPem },
          bundled.certificateParameters.expiryMs,
          now,
        );
        loaded = { inputHash, ca, history };
        if (prev?.ca && prev.ca.fingerprint !== ca.fingerprint) {
          this.opts.log?.info({ identity: mi.name, mesh: mi.mesh, from: prev.ca.fingerprint, to: ca.fingerprint }, 'CA changed');
        }
      }
    } catch (e) {
      // Last-known-good: a broken CA input never replaces the CA already serving.
      loaded = { inputHash: '', ca: prev?.ca, history: prev?.history ?? [], error: (e as Error).message };
      this.opts.log?.warn({ identity: mi.name, mesh: mi.mesh, reason: loaded.error }, 'CA refused');
    }
    this.loaded.set(key, loaded);

    const ca = loaded.ca;
    const providerCond = loaded.error
      ? condition('Provider', false, 'CaInvalid', ca ? `${loaded.error}; still serving the previous CA` : loaded.error)
      : condition('Provider', true, bundled.ca ? 'ProvidedCa' : 'AutogeneratedCa', `CA ${ca!.fingerprint.slice(0, 16)} valid until ${ca!.notAfter.toISOString()}`);
    let autoTrust: MeshTrust | undefined;
    let trustCond: Condition;
    if (bundled.meshTrustCreation === 'Disabled') trustCond = condition('MeshTrustCreated', false, 'Disabled', 'meshTrustCreation is Disabled');
    else if (!ca || !base.trustDomain) trustCond = condition('MeshTrustCreated', false, 'NoCa', 'no valid CA to publish');
    else {
      autoTrust = {
        kind: 'MeshTrust',
        name: mi.name,
        mesh: mi.mesh,
        namespace: mi.namespace,
        labels: { 'kuma.io/origin': 'mesh-sds' },
        spec: {
          trustDomain: base.trustDomain,
          caBundles: loaded.history.map((h) => ({ type: 'Pem' as const, pem: { value: h.pem } })),
          origin: { kri },
        },
      };
      trustCond = condition('MeshTrustCreated', true, 'Created', `MeshTrust "${mi.name}" carries ${loaded.history.length} CA(s)`);
    }
    const ready = ca !== undefined;
    return {
      state: {
        ...base,
        ca,
        caHistory: loaded.history,
        ready,
        conditions: [
          providerCond,
          trustCond,
          condition('Ready', ready, ready ? 'Ready' : 'NotReady', ready ? 'issuing SVIDs' : (loaded.error ?? 'no CA')),
        ],
      },
      autoTrust,
    };
  }
}
