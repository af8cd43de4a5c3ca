// The bundle endpoint's unpublished trust domains reach /metrics, one series each, gone once published.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { registerUnpublishedGauge } from '../../src/server/bundle-endpoint.js';

test('mesh_sds_bundle_endpoint_unpublished has one series per trust domain the endpoint cannot publish, and none once it can', async () => {
  const registry = new Registry();
  let problems = new Map([['bad.test', 'certificate 2 is not a CA']]);
  registerUnpublishedGauge(registry, { problems: () => problems });
  assert.match(await registry.metrics(), /^mesh_sds_bundle_endpoint_unpublished\{trust_domain="bad\.test"\} 1$/m);
  problems = new Map();
  assert.doesNotMatch(await registry.metrics(), /mesh_sds_bundle_endpoint_unpublished\{/);
});
