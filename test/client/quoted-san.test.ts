// Node writes a URI SAN holding a comma, quote or non-ASCII character as a JSON string
// (URI:"spiffe://…"): the agent's check and summary read it (before, no SPIFFE ID was seen at all),
// and show what it decodes to escaped, never as control characters on a terminal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { checkSvid } from '../../src/client/check-svid.js';
import { summarizeCertificate } from '../../src/client/summary.js';
import { makeSvidBetween } from './svids.js';

const now = Date.now();
const window = (): [Date, Date] => [new Date(now - 3600_000), new Date(now + 3600_000)];

test('a SPIFFE ID with a comma in its path, quoted by node, is read by the agent\'s check and summary', async () => {
  const id = 'spiffe://a.example/x,y';
  const leaf = await makeSvidBetween('Comma', ...window(), id);
  assert.match(new X509Certificate(leaf.certPem).subjectAltName ?? '', /URI:"/, 'node quotes it');
  assert.equal(checkSvid(leaf.certPem, leaf.certPem, undefined, now).spiffeId, id);
  const summary = summarizeCertificate(new X509Certificate(leaf.certPem));
  assert.deepEqual(summary.uriSans, [id]);
  assert.equal(summary.spiffeId, id);
});

test('a SPIFFE ID holding an escape sequence is shown escaped, not as the control character', async () => {
  const leaf = await makeSvidBetween('Esc', ...window(), 'spiffe://a.example/\u001b[31mred');
  const seen = checkSvid(leaf.certPem, leaf.certPem, undefined, now).spiffeId ?? '';
  assert.match(seen, /^spiffe:\/\/a\.example\//);
  assert.ok(!seen.includes('\u001b'), seen);
  assert.ok(!summarizeCertificate(new X509Certificate(leaf.certPem)).uriSans.join('').includes('\u001b'));
});
