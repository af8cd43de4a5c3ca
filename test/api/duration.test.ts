// Go duration syntax, as Kuma's duration fields accept it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDuration, parseDuration } from '../../src/api/duration.js';

test('parses Go durations to milliseconds', () => {
  const cases: [string, number][] = [
    ['24h', 86_400_000],
    ['1h30m', 5_400_000],
    ['90s', 90_000],
    ['500ms', 500],
    ['2s', 2000],
    ['1.5h', 5_400_000],
    ['.5s', 500],
    ['1m0.5s', 60_500],
    ['0', 0],
    ['-2s', -2000],
    ['+3m', 180_000],
    ['1500us', 1.5],
    ['2000000ns', 2],
    ['1µs', 0.001],
  ];
  for (const [text, ms] of cases) assert.equal(parseDuration(text), ms, text);
});

test('rejects what Go rejects', () => {
  for (const text of ['', '24', 'h', '1d', '1 h', '1h ', '.s', '-', '1h-1m', 'one day', '1H']) {
    assert.equal(parseDuration(text), undefined, JSON.stringify(text));
  }
});

test('refuses a duration longer than Go\'s int64 nanoseconds (2562047h47m16.854775807s), as time.ParseDuration does', () => {
  assert.equal(parseDuration('2562047h'), 2562047 * 3_600_000);
  assert.equal(parseDuration('-2562047h'), -2562047 * 3_600_000);
  for (const text of ['2562048h', '-2562048h', '3000000000h', '1' + '0'.repeat(400) + 'h']) {
    assert.equal(parseDuration(text), undefined, text.slice(0, 20));
  }
});

test('formats milliseconds back to a Go-style duration', () => {
  assert.equal(formatDuration(5_400_000), '1h30m0s');
  assert.equal(formatDuration(500), '500ms');
  assert.equal(formatDuration(90_000), '1m30s');
  assert.equal(formatDuration(0), '0s');
  assert.equal(parseDuration(formatDuration(86_400_000)), 86_400_000);
});
