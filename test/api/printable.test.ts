// printable(): what others wrote, safe to print as lines.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { printable } from '../../src/api/quote.js';

test('printable escapes what a terminal acts on (ESC, BEL, CR, DEL, C1, bidi controls) and keeps line breaks, tabs and other text', () => {
  assert.equal(printable('col1\tcol2\nnext line'), 'col1\tcol2\nnext line');
  assert.equal(printable('naïve ünïcode ✓'), 'naïve ünïcode ✓');
  assert.equal(printable('\x1b[2J\x07\r\x7f\x9b\u202e'), '\\u001b[2J\\u0007\\u000d\\u007f\\u009b\\u202e');
});
