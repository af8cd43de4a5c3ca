import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createMetrics } from '../../src/server/metrics.js';

test('each createMetrics() has its own registry: two instances do not clash or share values', async () => {
  const a = createMetrics();
  const b = createMetrics();
  a.pushes.inc(3);
  b.pushes.inc(1);
  assert.match(await a.render(), /^mesh_sds_pushes_total 3$/m);
  assert.match(await b.render(), /^mesh_sds_pushes_total 1$/m);
});

test('every documented metric is exposed with its labels, plus default process metrics', async () => {
  const m = createMetrics();
  m.streams.inc({ api: 'delta' });
  m.acks.inc();
  m.nacks.inc(2);
  m.streamAuthFailures.inc();
  m.svidIssued.inc({ mesh: 'default', identity: 'workload' });
  m.svidIssueSeconds.observe(0.0003);
  m.certificateExpiry.set({ kind: 'svid', name: 'spiffe://td/x' }, 1_900_000_000);
  m.certificateExpiry.set({ kind: 'ca', name: 'identity-a' }, 2_000_000_000);
  m.resourceErrors.set(4);
  const text = await m.render();
  assert.match(text, /^mesh_sds_streams\{api="delta"\} 1$/m);
  assert.match(text, /^mesh_sds_streams\{api="sotw"\} 0$/m);
  assert.match(text, /^mesh_sds_streams\{api="ads"\} 0$/m);
  assert.match(text, /^mesh_sds_acks_total 1$/m);
  assert.match(text, /^mesh_sds_nacks_total 2$/m);
  assert.match(text, /^mesh_sds_stream_auth_failures_total 1$/m);
  assert.match(text, /^mesh_sds_svid_issued_total\{mesh="default",identity="workload"\} 1$/m);
  assert.match(text, /^mesh_sds_svid_issue_seconds_bucket\{le="0.0005"\} 1$/m);
  assert.match(text, /^mesh_sds_svid_issue_seconds_bucket\{le="0.00025"\} 0$/m);
  assert.match(text, /^mesh_sds_svid_issue_seconds_count 1$/m);
  assert.match(text, /^mesh_sds_certificate_expiry_timestamp_seconds\{kind="svid",name="spiffe:\/\/td\/x"\} 1900000000$/m);
  assert.match(text, /^mesh_sds_certificate_expiry_timestamp_seconds\{kind="ca",name="identity-a"\} 2000000000$/m);
  assert.match(text, /^mesh_sds_resource_errors 4$/m);
  assert.match(text, /^# TYPE mesh_sds_pushes_total counter$/m);
  assert.match(text, /^process_cpu_user_seconds_total /m);
  assert.match(text, /^nodejs_heap_size_used_bytes /m);
  assert.match(m.contentType, /^text\/plain/);
});
