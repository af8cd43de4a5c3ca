import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { nameProblem } from '../api/validate-common.js';
import { durationOverflows, parseDuration } from '../api/duration.js';
import { RESOURCE_KINDS, formatResourceError, resourceKey, resourcesOfKind, type Resource, type ResourceKind } from '../api/types.js';
import type { StoreFlags } from './offline.js';
import { applyBooleanEnv, booleanOption } from './env-bool.js';
import { parseByteSize, parseMaxFileSize } from '../api/file-text.js';
import { MAX_FLAG_FILE_BYTES, readFlagFile } from '../api/flag-file.js';
import { pathForMessage, scrubSecretText } from '../api/secret-text.js';
import { printable, printableLine, quoted } from '../api/quote.js';
import { storeErrorText } from '../store/pg-errors.js';
import { redactPrivateKeys } from './redact.js';
import { writeStderr } from './stderr.js';
import { withEnvSources } from './env-source.js';
import type { ResourceStore, StateStore } from '../store/types.js';
import type { FederatedView } from '../federation/mesh-trusts.js';

// Heavy modules (gRPC, Postgres, PKI) load only for the commands that need them, so `validate`
// and `--help` start fast.
const offline = () => import('./offline.js');
async function withStore<T>(flags: StoreFlags, fn: (store: ResourceStore) => Promise<T>, opts: { readOnly?: boolean } = {}): Promise<T> {
  return (await offline()).withStore(flags, fn, opts);
}
async function computeView(store: ResourceStore, zone: string): Promise<FederatedView> {
  return (await offline()).computeView(store, zone);
}
const tokenAuthority = async () => (await import('../server/tokens.js')).TokenAuthority;

/** The version in package.json, the one `npm install` put there; read only here, at start. */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  return typeof pkg.version === 'string' ? pkg.version : 'unknown';
}

const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
// Last line of defence for what reaches stderr (see writeStderr).
const err = writeStderr;

/** Checked as commander parses it (flag or MESH_SDS_MAX_FILE_SIZE), before anything is opened; kept as text. */
function maxFileSizeArg(v: string): string {
  try {
    parseMaxFileSize(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
  return v;
}

/**
 * An empty --state-dir (MESH_SDS_STATE_DIR= in a manifest or a script) resolved to the current
 * directory: serve made it 0700 and wrote CA private keys into it, and read every file under it as state.
 */
function stateDirArg(v: string): string {
  if (v.trim() === '') throw new InvalidArgumentError('an empty path would put the state (CA private keys) in the current directory: give a directory, or unset it for the default .state');
  return v;
}

/**
 * A whole number for `flag`, where 0 means `zeroMeans`. InvalidArgumentError: commander then says
 * whether the environment variable gave the value.
 */
function wholeNumberArg(flag: string, zeroMeans: string): (v: string) => number {
  return (v) => {
    if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`${flag}: ${quoted(v)} is not a whole number (0: ${zeroMeans})`);
    return Number(v);
  };
}

/** A zone is the KRI's zone segment and part of the default trust domain: lowercase DNS (dots allowed). */
function zoneName(v: string): string {
  const problem = nameProblem(v);
  if (problem) throw new InvalidArgumentError(`${quoted(v)} ${problem} (it is the KRI zone segment and part of the default trust domain)`);
  return v;
}

/** Where commander took an option's value from, for an error that must say so. */
function sourceOf(cmd: Command, name: string, flag: string, env: string): string {
  const source = cmd.getOptionValueSource(name);
  return source === 'env' ? `${env} in the environment` : source === 'cli' ? `${flag} on the command line` : `${flag} (${source ?? 'unknown source'})`;
}

/**
 * A store URL and a resource directory together name two stores: the URL used to win silently, so an
 * explicit --resources went unheeded (MESH_SDS_STORE set in a shell profile wrote to Postgres).
 * `import` needs both and is not checked here.
 */
function refuseTwoStores(cmd: Command): void {
  const o = cmd.opts<{ store?: string; resources?: string }>();
  if (!o.store || o.resources === undefined) return;
  const store = sourceOf(cmd, 'store', '--store', 'MESH_SDS_STORE');
  const resources = sourceOf(cmd, 'resources', '--resources', 'MESH_SDS_RESOURCES');
  throw new Error(`both a store URL (${store}) and a resource directory (${resources}) are given: give one (--store for Postgres, --resources for a directory); unset the one you do not mean`);
}

function storeOptions(cmd: Command, opts: { bothStores?: boolean } = {}): Command {
  if (!opts.bothStores) cmd.hook('preAction', (_cmd, action) => refuseTwoStores(action));
  return cmd
    .addOption(new Option('--resources <dir>', 'directory of resource YAML/JSON files').env('MESH_SDS_RESOURCES'))
    .addOption(new Option('--store <url>', 'postgres://… store instead of a directory').env('MESH_SDS_STORE'))
    .addOption(new Option('--state-dir <dir>', 'state directory (autogenerated CAs, token key)').env('MESH_SDS_STATE_DIR').default('.state').argParser(stateDirArg))
    .addOption(new Option('--zone <name>', 'zone name (.Zone, KRI zone segment)').env('MESH_SDS_ZONE').default('default').argParser(zoneName))
    .addOption(new Option('--state-key-file <file>', 'key sealing CA private keys and the token MAC key at rest (32 bytes: raw, hex or base64)').env('MESH_SDS_STATE_KEY_FILE'))
    .addOption(new Option('--state-old-key-file <file>', 'previous state key: what it sealed is re-sealed under --state-key-file at start-up').env('MESH_SDS_STATE_OLD_KEY_FILE'))
    .addOption(booleanOption('--insecure-plaintext-state', 'allow unsealed private keys in the Postgres store', 'MESH_SDS_INSECURE_PLAINTEXT_STATE'))
    .addOption(new Option('--max-file-size <size>', 'larger resource files (directory store) and rows (Postgres) are refused (e.g. 4MiB)').env('MESH_SDS_MAX_FILE_SIZE').default('4MiB').argParser(maxFileSizeArg));
}

const kindOf = (text: string): ResourceKind => {
  const k = RESOURCE_KINDS.find((x) => x.toLowerCase() === text.toLowerCase() || `${x.toLowerCase()}s` === text.toLowerCase());
  if (!k) throw new Error(`unknown kind ${quoted(text)} (one of ${RESOURCE_KINDS.join(', ')})`);
  return k;
};

/** The longest --drain whose timers (drain + 5 s) fit Node's 32-bit timer range. */
const MAX_DRAIN_MS = 596 * 3_600_000;

function durationMs(text: string, flag: string): number {
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0) throw new Error(`${flag}: ${quoted(text)} is not a positive duration (e.g. 24h, 90m)`);
  return ms;
}

/**
 * `token generate --valid-for`: a Go duration between 1m and 87600h (10 years). Every refusal says
 * which: not a duration (and which units are), too short, or too long.
 */
async function tokenValidityMs(text: string): Promise<number> {
  const { MAX_TOKEN_VALIDITY_MS, MIN_GENERATED_TOKEN_VALIDITY_MS } = await import('../server/tokens.js');
  const flag = `--valid-for ${quoted(text)}`;
  const ms = parseDuration(text);
  // Past Go's longest duration: refused by parseDuration, but too long is what is wrong with it.
  if (ms === undefined && durationOverflows(text)) throw new Error(`${flag} is longer than the maximum of 87600h (10 years)`);
  if (ms === undefined) {
    throw new Error(`${flag} is not a duration: write a number and a unit of h, m or s, or several (e.g. 24h, 90m, 1h30m); there is no unit for days or years (30 days: 720h, 1 year: 8760h)`);
  }
  if (!(ms > 0)) throw new Error(`${flag} is not positive: a token must be valid for 1m at least`);
  if (ms < MIN_GENERATED_TOKEN_VALIDITY_MS) throw new Error(`${flag} is shorter than the minimum of 1m: the token would expire before a proxy could use it`);
  if (!(ms <= MAX_TOKEN_VALIDITY_MS)) throw new Error(`${flag} is longer than the maximum of 87600h (10 years)`);
  return ms;
}

const program = new Command('mesh-sds')
  .version(packageVersion(), '-V, --version', 'print the version of mesh-sds')
  .description('Envoy Secret Discovery Service issuing SPIFFE identities from MeshIdentity and MeshTrust resources')
  .showHelpAfterError()
  // commander quotes a refused value (`--auth <token>`, MESH_SDS_ZONE=<key>) in its own errors.
  .configureOutput({ outputError: (s, write) => write(scrubSecretText(s)) })
  // Boolean MESH_SDS_* variables are parsed strictly (commander would take "false" as true).
  .hook('preAction', (_program, action) => applyBooleanEnv(action));

storeOptions(program.command('serve').description('run the SDS server'))
  .addOption(new Option('--listen <addr>', 'host:port or unix:///path').env('MESH_SDS_LISTEN').default('127.0.0.1:15443'))
  .addOption(new Option('--auth <mode>', 'token (default) or none (development, loopback only)').choices(['token', 'none']).env('MESH_SDS_AUTH').default('token'))
  .addOption(new Option('--tls-cert <file>', 'TLS certificate for the gRPC listener').env('MESH_SDS_TLS_CERT'))
  .addOption(new Option('--tls-key <file>', 'TLS key for the gRPC listener').env('MESH_SDS_TLS_KEY'))
  .addOption(booleanOption('--insecure', 'allow plaintext gRPC on a non-loopback address', 'MESH_SDS_INSECURE'))
  .addOption(new Option('--socket-group <group>', 'group of the unix socket (mode 0660)').env('MESH_SDS_SOCKET_GROUP'))
  .addOption(new Option('--admin <addr>', 'admin HTTP address (health, metrics, debug)').env('MESH_SDS_ADMIN'))
  .addOption(booleanOption('--admin-remote-debug', 'let clients on other hosts use the admin /rotate and /debug/* (default: loopback clients only; /healthz, /readyz, /metrics answer all)', 'MESH_SDS_ADMIN_REMOTE_DEBUG'))
  .addOption(new Option('--bundle-endpoint <addr>', 'SPIFFE bundle endpoint (HTTPS, GET /<trust-domain>); a bare port binds 127.0.0.1').env('MESH_SDS_BUNDLE_ENDPOINT'))
  .addOption(new Option('--bundle-endpoint-tls-cert <file>', 'https_web profile: certificate of the bundle endpoint (default https_spiffe: an SVID per trust domain)').env('MESH_SDS_BUNDLE_ENDPOINT_TLS_CERT'))
  .addOption(new Option('--bundle-endpoint-tls-key <file>', 'https_web profile: key of the bundle endpoint').env('MESH_SDS_BUNDLE_ENDPOINT_TLS_KEY'))
  .addOption(new Option('--bundle-refresh-hint <duration>', 'spiffe_refresh_hint of served bundles: seconds or a duration (default 300)').env('MESH_SDS_BUNDLE_REFRESH_HINT'))
  .addOption(booleanOption('--flat-trust', 'serve system_trust_bundle/ALL as a flat trusted_ca (Envoys without the SPIFFE validator; any CA in it then vouches for every trust domain)', 'MESH_SDS_FLAT_TRUST'))
  // pino's own refusal of an unknown level names neither the flag nor the levels.
  .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).env('MESH_SDS_LOG_LEVEL').default('info'))
  .addOption(new Option('--drain <duration>', 'on SIGTERM: not ready at once, streams ended spread over this period (0s: at once)').env('MESH_SDS_DRAIN').default('10s'))
  .addOption(new Option('--max-connections <n>', 'gRPC connections held at once, more are closed as they arrive (default: open-file limit minus 1,024; 0: no limit)')
      .env('MESH_SDS_MAX_CONNECTIONS')
      .argParser(wholeNumberArg('--max-connections', 'no limit')),
  )
  .addOption(new Option('--prepare-svids <n>', 'SVIDs issued ahead for Dataplanes no proxy is connected for, so that one that connects is answered at once (default 20000; 0: issue when a proxy connects)')
      .env('MESH_SDS_PREPARE_SVIDS')
      .argParser(wholeNumberArg('--prepare-svids', 'none')),
  )
  .addOption(new Option('--federation-ca-file <file>', 'extra PEM CAs for https_web bundle endpoints').env('MESH_SDS_FEDERATION_CA_FILE'))
  .addOption(new Option('--federation-min-refresh <duration>', 'lower bound of federated bundle refreshes (default 30s; lower only for tests)').env('MESH_SDS_FEDERATION_MIN_REFRESH').hideHelp())
  .action(async (o) => {
    const drainMs = o.drain === '0' ? 0 : parseDuration(o.drain);
    // Node's timers hold at most 2^31-1 ms: a longer drain (plus the 5 s of slack below) fired at
    // once, so SIGTERM ended every stream together and exited 1 ("did not finish within drain + 5 s").
    if ((drainMs !== undefined && drainMs > MAX_DRAIN_MS) || durationOverflows(o.drain)) throw new Error(`--drain: ${quoted(o.drain)} is longer than the longest drain, 596h`);
    if (drainMs === undefined || drainMs < 0) throw new Error(`--drain: ${quoted(o.drain)} is not a duration (e.g. 10s, 0s)`);
    const { startServer } = await import('../server/serve.js');
    const server = await startServer({
      resourcesDir: o.resources,
      store: o.store,
      stateDir: o.stateDir,
      stateKeyFile: o.stateKeyFile,
      stateOldKeyFile: o.stateOldKeyFile,
      insecurePlaintextState: !!o.insecurePlaintextState,
      maxFileSize: parseByteSize(o.maxFileSize),
      listen: o.listen,
      auth: o.auth,
      zone: o.zone,
      tlsCert: o.tlsCert,
      tlsKey: o.tlsKey,
      insecure: !!o.insecure,
      socketGroup: o.socketGroup,
      admin: o.admin,
      adminRemoteDebug: !!o.adminRemoteDebug,
      logLevel: o.logLevel,
      flatTrust: !!o.flatTrust,
      bundleEndpoint: o.bundleEndpoint,
      bundleEndpointTlsCert: o.bundleEndpointTlsCert,
      bundleEndpointTlsKey: o.bundleEndpointTlsKey,
      bundleRefreshHint: o.bundleRefreshHint === undefined ? undefined : /^\d+$/.test(o.bundleRefreshHint) ? Number(o.bundleRefreshHint) : Math.ceil(durationMs(o.bundleRefreshHint, '--bundle-refresh-hint') / 1000),
      federationCaFile: o.federationCaFile,
      maxConnections: o.maxConnections,
      prepareSvids: o.prepareSvids,
      federation: o.federationMinRefresh ? { minRefreshMs: durationMs(o.federationMinRefresh, '--federation-min-refresh'), backoffBaseMs: 200 } : undefined,
    });
    await server.ready;
    server.log.info({}, 'ready');
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        // A second signal: stop draining, end what is left now.
        server.log.info({ signal }, 'second signal: ending the drain now');
        void server.close().catch(shutdownFailed);
        return;
      }
      stopping = true;
      server.log.info({ signal, drainMs }, 'shutting down: not ready, draining streams');
      // Last resort if some wait is not bounded after all: never outlive drain + 5 s.
      setTimeout(() => {
        server.log.error({ drainMs }, 'shutdown did not finish within drain + 5 s; exiting');
        process.exit(1);
      }, drainMs + 5000).unref();
      void server.close(drainMs).then(() => {
        server.log.info({}, 'shut down');
        process.exit(0);
      }, shutdownFailed);
    };
    // A failing step of the shutdown (a store that errors on close) is said and ends the process,
    // instead of an unhandled rejection without a log line.
    const shutdownFailed = (err: unknown) => {
      server.log.error({ err }, 'shutdown failed; exiting');
      process.exit(1);
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });

program
  .command('validate')
  .description('validate resource files (a directory: its resource files, as the server reads it); exit 1 listing every error')
  .argument('<files...>')
  .addOption(new Option('--max-file-size <size>', 'larger files are refused, as the directory store refuses them').env('MESH_SDS_MAX_FILE_SIZE').default('4MiB').argParser(maxFileSizeArg))
  // No default: without the server's zone, a trust domain of .Zone is not checked against an inline CA.
  .addOption(new Option('--zone <name>', "the server's zone: renders .Zone of trust domains to check inline CAs against").env('MESH_SDS_ZONE').argParser(zoneName))
  .action(async (files: string[], o) => {
    const [{ identityProblem }, { validateTargets }, { validateFiles }] = await Promise.all([import('./inline-ca.js'), import('./validate-targets.js'), import('../api/validate-files.js')]);
    const targets = await validateTargets(files);
    const { ok, lines } = await validateFiles(targets.files, new Date(), parseByteSize(o.maxFileSize), (r) => identityProblem(r, o.zone));
    const valid = ok && targets.problems.length === 0;
    (valid ? out : err)([...targets.problems, ...lines].join('\n'));
    process.exitCode = valid ? 0 : 1;
  });

storeOptions(program.command('apply').description('validate and store resources (optimistic concurrency: a concurrent change is a conflict)'))
  .requiredOption('-f, --file <file>', 'YAML/JSON file, - for stdin')
  .option('--force', 'overwrite whatever is stored, without the version check')
  .action(async (o) => {
    const { readInput, runApply } = await import('./writes.js');
    const text = await readInput(o.file, parseByteSize(o.maxFileSize));
    process.exitCode = await withStore(o as StoreFlags, (store) => runApply(store, text, o.file === '-' ? 'stdin' : o.file, !!o.force, { out, err }, o.zone, parseByteSize(o.maxFileSize)));
  });

storeOptions(program.command('delete').description('delete one resource written by apply (or stored in Postgres)'))
  .argument('<kind>', 'meshtrust | meshidentity | dataplane | secret | clusterfederatedtrustdomain')
  .argument('<name>')
  .option('--mesh <mesh>', 'mesh of the resource (none for clusterfederatedtrustdomain)', 'default')
  .option('--namespace <namespace>', 'Kubernetes namespace of the resource', '')
  .option('--resource-version <version>', 'delete only if the stored version is this one')
  // Together they would contradict each other: --force used to win silently over the version asked for.
  .addOption(new Option('--force', 'delete whatever version is stored').conflicts('resourceVersion'))
  .action(async (kindText: string, name: string, o) => {
    const { runDelete } = await import('./writes.js');
    const kind = kindOf(kindText);
    // Cluster-scoped: stored with no mesh and no namespace, whatever --mesh says.
    const ref = kind === 'ClusterFederatedTrustDomain' ? { kind, mesh: '', namespace: '', name } : { kind, mesh: o.mesh, namespace: o.namespace, name };
    process.exitCode = await withStore(o as StoreFlags, (store) =>
      runDelete(store, ref, { force: !!o.force, resourceVersion: o.resourceVersion }, { out, err }, async () => (await computeView(store, o.zone)).trusts),
    );
  });

storeOptions(program.command('import').description('copy every resource of --resources DIR into --store URL (idempotent; reports created/updated/unchanged)'), { bothStores: true })
  .action(async (o) => {
    if (!o.resources || !o.store) throw new Error('import needs --resources DIR (what to import) and --store URL (where to)');
    const { runImport } = await import('./writes.js');
    process.exitCode = await withStore({ ...(o as StoreFlags), resources: undefined }, (store) => runImport(o.resources, store, parseByteSize(o.maxFileSize), { out, err }));
  });

storeOptions(program.command('get').description('list resources of a kind, or show one'))
  .argument('<kind>', 'meshtrust | meshidentity | dataplane | secret | clusterfederatedtrustdomain')
  .argument('[name]')
  .addOption(new Option('-o, --output <format>', 'table, yaml or json').choices(['table', 'yaml', 'json']).default('table'))
  .option('--mesh <mesh>', 'only this mesh')
  .action(async (kindText: string, name: string | undefined, o) => {
    const kind = kindOf(kindText);
    const [{ stringify }, { toUniversalObject }, { aggregateTrust }] = await Promise.all([import('yaml'), import('../api/serialize.js'), import('../trust/aggregate.js')]);
    await withStore(o as StoreFlags, async (store) => {
      const view = await computeView(store, o.zone);
      const all: readonly Resource[] = kind === 'MeshTrust' ? [...view.trusts] : resourcesOfKind(view.snapshot, kind);
      const list = all
        .filter((r) => (!name || r.name === name) && (!o.mesh || r.mesh === o.mesh))
        .sort((a, b) => `${a.mesh}/${a.name}/${a.namespace}`.localeCompare(`${b.mesh}/${b.name}/${b.namespace}`));
      // Bad input is never silent: what the store refuses is listed (its last good version, if
      // any, is what is listed above and served). Each one line, with nothing a terminal acts on:
      // a row's key columns and a file's name are whatever another tool or user wrote.
      const refused = view.snapshot.errors;
      if (refused.length > 0) err(`${refused.length} problem(s) in the store; the last good version of each resource is served:\n${refused.map((e) => `  ${printableLine(formatResourceError(e))}`).join('\n')}`);
      if (name && list.length === 0) throw new Error(`${kind} ${quoted(name)} not found`);
      const withStatus = (r: Resource) => {
        const { type, name: n, mesh, ...rest } = toUniversalObject(r);
        const version = view.snapshot.versions?.get(resourceKey(r));
        const obj: Record<string, unknown> = { type, name: n, mesh, ...(version ? { resourceVersion: version } : {}), ...rest };
        const errors = refused.filter((e) => r.source !== undefined && e.file === r.source.file && e.document === r.source.document);
        if (r.kind === 'Secret') obj.data = '<redacted>';
        // An inline CA private key is shown as redacted: `get` output ends up in terminals and tickets.
        const inlineKey = (obj.spec as { provider?: { bundled?: { ca?: { privateKey?: { insecureInline?: { value?: string } } } } } } | undefined)?.provider?.bundled?.ca?.privateKey?.insecureInline;
        if (inlineKey) inlineKey.value = '<redacted>';
        if (r.kind === 'MeshIdentity') {
          const st = [...view.identities.values()].find((s) => s.identity === r);
          if (st) obj.status = { conditions: st.conditions };
        }
        if (r.kind === 'ClusterFederatedTrustDomain') obj.status = federationStatus(view, r.name);
        if (errors.length > 0) obj.status = { ...(obj.status as object | undefined), errors: errors.map(formatResourceError) };
        return redactPrivateKeys(structuredClone(obj));
      };
      if (o.output === 'json') out(JSON.stringify(name ? withStatus(list[0]!) : list.map(withStatus), null, 2));
      else if (o.output === 'yaml') out(name ? stringify(withStatus(list[0]!), { lineWidth: 0 }) : list.map((r) => stringify(withStatus(r), { lineWidth: 0 })).join('---\n'));
      else out(table(kind, list, view, aggregateTrust));
    }, { readOnly: true });
  });

storeOptions(program.command('inspect').description('explain which identity a dataplane gets, and what it trusts'))
  .requiredOption('--dataplane <mesh.name>', 'the dataplane, as MESH.NAME')
  .option('--json', 'machine-readable output')
  .action(async (o) => {
    // A node id no proxy can connect as names no dataplane: say why, rather than explain an empty result.
    const { nodeIdProblem } = await import('../server/auth.js');
    const problem = nodeIdProblem(o.dataplane);
    if (problem) throw new Error(`--dataplane ${quoted(o.dataplane)}: ${problem}: no proxy can connect as this node id`);
    await withStore(o as StoreFlags, async (store) => {
      const { formatInspection, inspectDataplane } = await import('./inspect.js');
      const result = inspectDataplane(await computeView(store, o.zone), o.dataplane);
      out(o.json ? JSON.stringify(result, null, 2) : formatInspection(result));
    }, { readOnly: true });
  });

storeOptions(program.command('export-trust').description('print the trust bundle of a mesh: PEM, or a SPIFFE bundle (JWK Set) of one trust domain'))
  .requiredOption('--mesh <mesh>', 'mesh name')
  .option('--trust-domain <td>', 'only this trust domain (required for spiffe-bundle when the mesh trusts several)')
  .addOption(new Option('--format <format>', 'pem or spiffe-bundle').choices(['pem', 'spiffe-bundle']).default('pem'))
  .action(async (o) => {
    await withStore(o as StoreFlags, async (store) => {
      // A mistyped --state-dir holds none of the mesh's own CAs: the export would silently lack them.
      if (!o.store && !(await (await offline()).exists(o.stateDir))) {
        throw new Error(`--state-dir ${pathForMessage(o.stateDir)} does not exist: it holds the mesh's autogenerated CAs, which the export would leave out (is it the server's?)`);
      }
      const { exportTrust } = await import('./export-trust.js');
      const text = await exportTrust(await computeView(store, o.zone), store.state, { mesh: o.mesh, trustDomain: o.trustDomain, format: o.format }, (s) => err(`mesh-sds: ${s}`));
      out(text);
    }, { readOnly: true });
  });

const token = program.command('token').description('proxy tokens');
storeOptions(token.command('generate').description('sign a token for one dataplane; the token is printed alone on the last line'))
  .requiredOption('--mesh <mesh>')
  .requiredOption('--name <name>', 'dataplane name: <name>.<namespace> for a Dataplane with a namespace')
  .option('--workload <workload>', 'workload claim (.Workload)')
  .option('--label <k=v>', 'label claim, repeatable', (v: string, acc: string[]) => [...acc, v], [] as string[])
  .option('--valid-for <duration>', 'lifetime: 1m to 87600h (10 years)', '24h')
  .option('--create-key', 'create a token key when the state holds none (a new state; the server must use this state to accept the token)')
  .action(async (o) => {
    // No prototype: `labels['__proto__'] = 'x'` on a plain object sets nothing, and the token was
    // signed without that label; here it is a key like any other, and refused as one by generate().
    const labels = Object.create(null) as Record<string, string>;
    for (const kv of o.label as string[]) {
      const i = kv.indexOf('=');
      if (i <= 0) throw new Error(`--label ${quoted(kv)}: expected key=value`);
      const k = kv.slice(0, i);
      // A repeated key silently kept the last value: say which the operator meant instead.
      if (Object.hasOwn(labels, k)) throw new Error(`--label ${quoted(k)} given twice (${quoted(labels[k]!)} and ${quoted(kv.slice(i + 1))}): give each label once`);
      labels[k] = kv.slice(i + 1);
    }
    const validForMs = await tokenValidityMs(o.validFor);
    const cli = await offline();
    // A token is only worth the key a server verifies it with: a mistyped --state-dir would get a
    // fresh key and print a token that no server accepts. A new key is made only on request.
    const noKey = 'a token signed with a new key would be accepted by no server';
    if (!o.store && !o.createKey) {
      if (!(await cli.exists(o.stateDir))) throw new Error(`--state-dir ${pathForMessage(o.stateDir)} does not exist: ${noKey} (is it the server's state dir?); --create-key creates a new token key there`);
      await cli.mustBeDirectory('--state-dir', o.stateDir);
    }
    const t = await cli.withState(o, async (state) => {
      if (!o.createKey) await refuseWithoutTokenKey(state, o, `${noKey} (is it the server's state?); --create-key creates one`);
      // Signing needs no revocation list: a damaged one must not stop new proxies getting tokens.
      const authority = await (await tokenAuthority()).open(state, { readRevocations: false });
      return authority.generate({ mesh: o.mesh, name: o.name, workload: o.workload, labels: Object.keys(labels).length ? labels : undefined, validForMs });
    });
    // Where the command can see the Dataplanes (--resources, --store): a short name that reaches a
    // namespaced one is a token the server refuses (README "Authentication"). Advice only.
    if (o.resources !== undefined || o.store !== undefined) {
      const problem = await shortNameTokenWarning(o as StoreFlags, o.mesh, o.name).catch((e: Error) => `could not read the Dataplanes to check --name: ${e.message}`);
      if (problem) err(`mesh-sds: warning: ${problem}`);
    }
    err(`token for ${o.mesh}.${o.name}, valid for ${o.validFor}:`);
    out(t);
  });
storeOptions(token.command('revoke').description('revoke a token (read from --token-file or stdin)'))
  .option('--token-file <file>')
  .action(async (o) => {
    // As copied from a header or an Envoy config: the scheme is not part of the token.
    const t = (o.tokenFile ? await readTokenFile(o.tokenFile) : await readStdin()).trim().replace(/^bearer\s+/i, '');
    if (t === '') throw new Error(`no token to revoke: ${o.tokenFile ? `${o.tokenFile} is empty` : 'give it on stdin or with --token-file'}`);
    const problem = (await import('./token-text.js')).tokenTextProblem(t);
    if (problem) throw new Error(`not a token: ${problem}; nothing was revoked`);
    const cli = await offline();
    // Revoking means recording against the key a server already has: opening the authority on a
    // mistyped or empty state would create a new key there and report success.
    if (!o.store) await cli.mustBeDirectory('--state-dir', o.stateDir);
    const jti = await cli.withState(o, async (state) => {
      await refuseWithoutTokenKey(state, o, "no token signed by it can be revoked (is it the server's state?)");
      return (await (await tokenAuthority()).open(state)).revokeToken(t).catch((e: Error & { reason?: string }) => {
        // Only a token of this state's key can be revoked here: one of another state is not ours to list.
        if (e.reason === 'signature') throw new Error(`${e.message}: the token was not signed with the key of this state (is it the server's --state-dir or --store?); nothing was revoked`);
        if (e.reason === 'malformed') throw new Error(`${e.message}: its header or claims are not those of a mesh-sds token; nothing was revoked`);
        throw e;
      });
    });
    out(`revoked token ${jti}`);
  });

program
  .command('state-key')
  .description('keys that seal private keys at rest')
  .command('generate')
  .description('write a new random state key (base64 of 32 bytes, mode 0600); refuses to overwrite')
  .requiredOption('--out <file>', 'file to create')
  .action(async (o) => {
    const { generateStateKeyFile } = await import('../store/state-key.js');
    const key = await generateStateKeyFile(o.out);
    out(`wrote state key ${key.id} to ${o.out}`);
  });

program
  .command('fetch')
  .description('fetch secrets over SDS; with --out-dir write cert.pem/key.pem/bundle.pem (and --watch keep them current)')
  .addOption(new Option('--server <addr>', 'host:port or unix:///path').env('MESH_SDS_SERVER').default('127.0.0.1:15443'))
  .requiredOption('--node <mesh.name>', 'node id: MESH.DATAPLANE')
  .option('--name <secret>', 'secret name, repeatable', (v: string, acc: string[]) => [...acc, v], [] as string[])
  .addOption(new Option('--token <token>', 'bearer token (prefer --token-file or MESH_SDS_TOKEN)'))
  .addOption(new Option('--token-file <file>', 'file holding the bearer token').env('MESH_SDS_TOKEN_FILE'))
  .option('--out-dir <dir>', 'write cert.pem, key.pem (0600), bundle.pem')
  .option('--trust-name <name>', 'trust secret for bundle.pem', 'ALL')
  .option('--watch', 'keep running and rewrite files on every push')
  .option('--on-update <command>', 'run after files change (sh -c)')
  .option('--tls', 'connect with TLS (implied by --ca-file)')
  .option('--ca-file <file>', 'CA to verify a TLS server')
  .option('--timeout <duration>', 'give up after', '15s')
  .option('--json', 'print the summary as JSON')
  .action(async (o) => {
    const { runFetch } = await import('./fetch.js');
    (await import('./quiet-warnings.js')).dropIpServerNameNotice();
    const code = await runFetch(
      {
        server: o.server,
        node: o.node,
        name: o.name,
        token: o.token,
        tokenFile: o.tokenFile,
        outDir: o.outDir,
        watch: !!o.watch,
        onUpdate: o.onUpdate,
        trustName: o.trustName,
        timeoutMs: durationMs(o.timeout, '--timeout'),
        caFile: o.caFile,
        tls: !!o.tls || !!o.caFile,
        json: !!o.json,
      },
      { stdout: out, stderr: err },
    );
    await exitWhenFlushed(code);
  });

/**
 * Exits once stdout and stderr have taken everything written. grpc-js cannot end a connection still
 * in its TLS handshake (a server that accepts TCP and never answers): that socket would keep the
 * process alive after fetch has given up and said why.
 */
async function exitWhenFlushed(code: number): Promise<never> {
  await Promise.all([process.stdout, process.stderr].map((s) => new Promise<void>((resolve) => s.write('', () => resolve()))));
  process.exit(code);
}

function table(kind: ResourceKind, list: Resource[], view: FederatedView, aggregateTrust: typeof import('../trust/aggregate.js').aggregateTrust): string {
  const rows: string[][] = [];
  // A Kubernetes-form resource (or one labelled k8s.kuma.io/namespace) is named by namespace too:
  // `delete` needs it, and two namespaces may hold one name.
  const showNs = kind !== 'ClusterFederatedTrustDomain' && list.some((r) => r.namespace !== '');
  const head = (...rest: string[]) => (showNs ? ['MESH', 'NAMESPACE', 'NAME', ...rest] : ['MESH', 'NAME', ...rest]);
  const lead = (r: Resource) => (showNs ? [r.mesh, r.namespace, r.name] : [r.mesh, r.name]);
  if (kind === 'MeshTrust') {
    rows.push(head('TRUST DOMAIN', 'CAS', 'ORIGIN'));
    for (const r of list) if (r.kind === 'MeshTrust') rows.push([...lead(r), r.spec.trustDomain, String(aggregateTrust([r], r.mesh).domains[0]?.cas.length ?? 0), r.spec.origin?.kri ?? '']);
  } else if (kind === 'MeshIdentity') {
    rows.push(head('PROVIDER', 'TRUST DOMAIN', 'READY', 'MESSAGE'));
    for (const r of list) {
      if (r.kind !== 'MeshIdentity') continue;
      const st = [...view.identities.values()].find((s) => s.identity === r);
      const ready = st?.conditions.find((c) => c.type === 'Ready');
      rows.push([...lead(r), r.spec.provider.type, st?.trustDomain ?? '?', ready?.status ?? 'Unknown', ready?.message ?? '']);
    }
  } else if (kind === 'ClusterFederatedTrustDomain') {
    rows.push(['NAME', 'TRUST DOMAIN', 'ENDPOINT', 'PROFILE', 'BUNDLE', 'SEQUENCE', 'FETCHED', 'MESSAGE']);
    for (const r of list) {
      if (r.kind !== 'ClusterFederatedTrustDomain') continue;
      const f = view.federation.find((x) => x.resource === r.name);
      const fetched = f?.conditions.find((c) => c.type === 'Fetched');
      rows.push([r.name, r.spec.trustDomain, r.spec.bundleEndpointURL, r.spec.bundleEndpointProfile.type, f?.source ?? 'ignored', f?.sequence === undefined ? '' : String(f.sequence), fetched?.status ?? 'Unknown', fetched?.message ?? 'another resource follows this trust domain']);
    }
  } else {
    rows.push(head('LABELS'));
    for (const r of list) rows.push([...lead(r), Object.entries(r.labels).map(([k, v]) => `${k}=${v}`).join(',')]);
  }
  // A cell may quote text from another party (a federation error quotes what a bundle endpoint
  // sent): no character of it may act on the terminal. YAML and JSON output escape it themselves.
  for (const r of rows) for (let i = 0; i < r.length; i++) r[i] = printable(r[i]!);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

/** What `get -o yaml|json` shows under `status` for a ClusterFederatedTrustDomain. */
function federationStatus(view: FederatedView, name: string): Record<string, unknown> {
  const f = view.federation.find((x) => x.resource === name);
  if (!f) return { conditions: [{ type: 'Ready', status: 'False', reason: 'Shadowed', message: 'another ClusterFederatedTrustDomain (first by name) follows this trust domain' }] };
  const out: Record<string, unknown> = { bundleSource: f.source, meshTrust: f.meshTrustName, kri: f.kri };
  if (f.sequence !== undefined) out.sequence = f.sequence;
  if (f.fetchedAt) out.lastFetched = f.fetchedAt.toISOString();
  if (Object.keys(f.overriddenIn).length > 0) out.overriddenIn = f.overriddenIn;
  out.conditions = f.conditions;
  return out;
}

/**
 * `token generate` and `revoke` work against the key a server already has: a state without one (a
 * mistyped --state-dir, a server run with --auth none) is refused, saying why (`consequence`).
 */
async function refuseWithoutTokenKey(state: StateStore, o: { store?: string; stateDir: string }, consequence: string): Promise<void> {
  const { MAC_KEY_STATE_KEY, SIGNING_KEY_STATE_KEY } = await import('../server/tokens.js');
  if ((await state.get(MAC_KEY_STATE_KEY)) !== undefined || (await state.get(SIGNING_KEY_STATE_KEY)) !== undefined) return;
  throw new Error(`${o.store ? 'the state of --store' : `--state-dir ${pathForMessage(o.stateDir)}`} holds no token key: ${consequence}`);
}

/**
 * Why a server with --auth token would refuse a token for `mesh`.`name` as the store stands: the
 * name reaches a namespaced Dataplane only through the short node id. Undefined when it does not.
 */
async function shortNameTokenWarning(flags: StoreFlags, mesh: string, name: string): Promise<string | undefined> {
  const [{ firstValueFrom }, { ambiguousNodeReason, dataplaneForNode }, { shortNameTokenProblem }] = await Promise.all([
    import('rxjs'),
    import('../identity/proxy-index.js'),
    import('../identity/claims.js'),
  ]);
  return withStore(flags, async (store) => {
    const { dataplane, ambiguous } = dataplaneForNode(resourcesOfKind(await firstValueFrom(store.snapshots$), 'Dataplane'), mesh, name);
    // Several namespaces' Dataplanes of that name: served none now, and refused once only one is left.
    if (ambiguous) return `a server with --auth token never serves this token: ${ambiguousNodeReason(`${mesh}.${name}`, ambiguous)}, with a token naming that Dataplane in full`;
    const problem = dataplane && shortNameTokenProblem({ mesh, name }, dataplane);
    return problem && `a server with --auth token refuses this token while that Dataplane exists: ${problem}`;
  }, { readOnly: true });
}

/** Its error never quotes the token itself, when given in place of the path. */
async function readTokenFile(file: string): Promise<string> {
  return (await readFlagFile('--token-file', file)).toString('utf8');
}

/**
 * The token on stdin, at most what --token-file reads (1 MiB): stdin was read whole, so a log file
 * piped by mistake was held in memory before it was called malformed, and `< /dev/zero` never ended.
 */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of process.stdin) {
    chunks.push(c as Buffer);
    size += (c as Buffer).length;
    if (size > MAX_FLAG_FILE_BYTES) throw new Error(`stdin holds more than ${MAX_FLAG_FILE_BYTES / 1024 ** 2} MiB: not a token (a token is a few hundred characters); not read further`);
  }
  return Buffer.concat(chunks).toString('utf8');
}

program.parseAsync(process.argv).catch((e: Error) => {
  err(`mesh-sds: ${withEnvSources(storeErrorText(e), program)}`);
  process.exit(1);
});
