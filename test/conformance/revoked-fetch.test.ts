// A FetchSecrets call waits (up to 5 s) for names not available yet. A token revoked meanwhile must
// not be answered with secrets: the proxy's SVID is reissued because of that revocation (its holder
// has the old key), and the waiting call would otherwise hand the holder the new one.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { SECRET_TYPE_URL } from '../../src/xds/protos.js';
import { SotwClient, fetchSecrets, nodeOf, secretsOf, tlsCertificate } from './envoy-client.js';
import { serverFixture } from './fixture.js';
import { PAY_LABELS, leafInfo } from './world.js';

const f = serverFixture({ server: { auth: 'token', admin: '127.0.0.1:0', credentialRecheckMs: 200 } });

it('a FetchSecrets call whose token is revoked while it waits is refused, not answered with the SVID reissued because of that revocation', async () => {
  const node = 'default.gw-revoked-fetch';
  const mint = () => f.server.tokens!.generate({ mesh: 'default', name: 'gw-revoked-fetch', validForMs: 3600_000, labels: PAY_LABELS });
  const [kept, revoked] = [await mint(), await mint()];
  const stream = new SotwClient(f.server.address, { node, token: kept });
  f.open.push(stream);
  stream.request(['default']);
  const first = await stream.next(10_000);
  stream.ack(first);
  const serialOf = (r: Parameters<typeof secretsOf>[0]) => leafInfo(tlsCertificate(secretsOf(r).get('default')!).certChainPem).serial;
  const before = serialOf(first);
  // A name not available waits the whole fetch wait; `default` is answered then.
  const fetched = fetchSecrets(f.server.address, { node: nodeOf(node), resource_names: ['default', 'spiffe://nowhere.example'], type_url: SECRET_TYPE_URL }, revoked).then(
    (r) => ({ served: secretsOf(r).has('default') ? serialOf(r) : undefined }),
    (e: grpc.ServiceError) => ({ code: e.code, details: e.details }),
  );
  await new Promise((r) => setTimeout(r, 300));
  await f.server.tokens!.revokeToken(revoked);
  const pushed = await stream.next(10_000);
  stream.ack(pushed);
  const after = serialOf(pushed);
  assert.notEqual(after, before, 'the revocation reissued the proxy\'s SVID');
  const outcome = await fetched;
  assert.notEqual((outcome as { served?: string }).served, after, 'the revoked token was handed the SVID reissued because of its revocation');
  assert.equal((outcome as { code?: number }).code, grpc.status.UNAUTHENTICATED, JSON.stringify(outcome));
  assert.match((outcome as { details: string }).details, /revoked/);
});
