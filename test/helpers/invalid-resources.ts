// Invalid resources, each with the error `validate` gives for it: fed to every store (a file of
// the directory store, a row written with SQL) to prove a bad resource is contained everywhere.
import { stringify } from 'yaml';
import { pem } from '../api/helpers.js';

const identity = (name: string, spec: Record<string, unknown>) => ({ type: 'MeshIdentity', name, mesh: 'default', spec });
const autogen = { type: 'Bundled', bundled: { autogenerate: { enabled: true } } };
const selector = { dataplane: { matchLabels: { app: 'web' } } };

export interface InvalidFixture {
  /** What is wrong, for test names. */
  what: string;
  /** Universal-form document. */
  doc: Record<string, unknown>;
  /** `path: message` of the first error `validate` reports. */
  error: string;
}

export const INVALID_FIXTURES: InvalidFixture[] = [
  {
    what: 'spiffeID of the wrong type',
    doc: identity('bad-spiffe', { selector, spiffeID: { trustDomain: 5 }, provider: autogen }),
    error: 'spec.spiffeID.trustDomain: must be a string',
  },
  {
    what: 'unknown template variable',
    doc: identity('bad-template', { selector, spiffeID: { path: '/ns/{{ .Foo }}' }, provider: autogen }),
    error: 'spec.spiffeID.path: unknown template variable .Foo',
  },
  {
    what: 'unknown provider type',
    doc: identity('bad-provider', { selector, provider: { type: 'Vault' } }),
    error: 'spec.provider.type: must be one of Bundled, Spire',
  },
  { what: 'no provider', doc: identity('no-provider', { selector }), error: 'spec.provider: must be defined' },
  {
    what: 'relative CA file path',
    doc: identity('relative-ca', {
      selector,
      provider: {
        type: 'Bundled',
        bundled: { ca: { certificate: { type: 'File', file: { path: 'ca.crt' } }, privateKey: { type: 'File', file: { path: '/ca.key' } } } },
      },
    }),
    error: 'spec.provider.bundled.ca.certificate.file.path: must be absolute',
  },
  {
    what: 'negative expiry',
    doc: identity('negative-expiry', {
      selector,
      provider: { type: 'Bundled', bundled: { autogenerate: { enabled: true }, certificateParameters: { expiry: '-1h' } } },
    }),
    error: 'spec.provider.bundled.certificateParameters.expiry: must not be negative',
  },
  {
    what: 'matchLabels value not a string',
    doc: identity('bad-labels', { selector: { dataplane: { matchLabels: { version: 1 } } }, provider: autogen }),
    error: 'spec.selector.dataplane.matchLabels["version"]: must be a string',
  },
  {
    what: 'empty caBundles',
    doc: { type: 'MeshTrust', name: 'empty-bundles', mesh: 'default', spec: { trustDomain: 'x.example', caBundles: [] } },
    error: 'spec.caBundles: must not be empty',
  },
  {
    what: 'certificate that is not PEM',
    doc: { type: 'MeshTrust', name: 'not-pem', mesh: 'default', spec: { trustDomain: 'x.example', caBundles: [{ type: 'Pem', pem: { value: 'nope' } }] } },
    error: 'spec.caBundles[0].pem.value: provided certificate has incorrect format',
  },
  {
    what: 'trust domain too long',
    doc: { type: 'MeshTrust', name: 'long-td', mesh: 'default', spec: { trustDomain: 'a'.repeat(254), caBundles: [{ type: 'Pem', pem: { value: pem('root-ca') } }] } },
    error: 'spec.trustDomain: must not be longer than 253 characters',
  },
];

export const fixtureYaml = (f: InvalidFixture): string => stringify(f.doc, { lineWidth: 0 });

/** The fixture in the stored (normalised) shape a database row holds: `kind` instead of `type`. */
export function storedShape(f: InvalidFixture): Record<string, unknown> {
  const { type, ...rest } = f.doc;
  return { kind: type, namespace: '', labels: {}, ...rest };
}
