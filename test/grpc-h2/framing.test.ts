import { test } from 'node:test';
import assert from 'node:assert/strict';
import { frameMessage, MessageReader, ReadBudget } from '../../src/server/grpc-h2/framing.js';
import { encodeGrpcMessage, Status } from '../../src/server/grpc-h2/status.js';

function reader(max = 1024) {
  const r = new MessageReader(max);
  const got: string[] = [];
  const sink = { acceptMessage: (m: Buffer) => (got.push(m.toString()), true) };
  return { r, got, push: (b: Buffer) => r.push(b, sink) };
}

test('messages split across chunks at every byte, and several in one chunk, come out whole and in order', () => {
  const stream = Buffer.concat([frameMessage(Buffer.from('first')), frameMessage(Buffer.alloc(0)), frameMessage(Buffer.from('third message'))]);
  for (let cut = 0; cut <= stream.length; cut++) {
    const { got, push, r } = reader();
    assert.equal(push(stream.subarray(0, cut)), undefined);
    assert.equal(push(stream.subarray(cut)), undefined);
    assert.deepEqual(got, ['first', '', 'third message'], `cut at ${cut}`);
    assert.equal(r.midMessage, false);
  }
  const { got, push, r } = reader();
  for (const byte of stream) push(Buffer.from([byte]));
  assert.deepEqual(got, ['first', '', 'third message']);
  push(frameMessage(Buffer.from('xyz')).subarray(0, 6));
  assert.equal(r.midMessage, true);
});

test('a message over the limit is refused from its prefix (RESOURCE_EXHAUSTED), a compressed one with UNIMPLEMENTED (INTERNAL without a grpc-encoding)', () => {
  const { push, got } = reader(10);
  assert.deepEqual(push(frameMessage(Buffer.alloc(10, 0x61))), undefined);
  const big = frameMessage(Buffer.alloc(11)).subarray(0, 5);
  assert.deepEqual(push(big), { code: Status.RESOURCE_EXHAUSTED, details: 'Received message larger than max (11 vs. 10)' });
  assert.equal(got.length, 1);
  const compressed = frameMessage(Buffer.from('x'));
  compressed[0] = 1;
  const second = reader();
  second.r.encoding = 'gzip';
  // Split inside the prefix: the refusal comes once the prefix is complete.
  assert.equal(second.push(compressed.subarray(0, 2)), undefined);
  assert.equal(second.push(compressed.subarray(2))?.code, Status.UNIMPLEMENTED);
  // Without a grpc-encoding the flag is malformed, not unsupported.
  assert.equal(reader().push(compressed)?.code, Status.INTERNAL);
});

test('a sink that stops reading (its call ended) gets no further messages of the chunk', () => {
  const r = new MessageReader(100);
  const got: string[] = [];
  r.push(Buffer.concat([frameMessage(Buffer.from('a')), frameMessage(Buffer.from('b'))]), { acceptMessage: (m) => (got.push(m.toString()), false) });
  assert.deepEqual(got, ['a']);
});

test('grpc-message is percent-encoded: non-ASCII as UTF-8 bytes, % and control characters too; plain text unchanged', () => {
  assert.equal(encodeGrpcMessage('token expired'), 'token expired');
  assert.equal(encodeGrpcMessage('50% é\n'), '50%25 %C3%A9%0A');
  assert.equal(decodeURIComponent(encodeGrpcMessage('naïve 100% ✓')), 'naïve 100% ✓');
});

test('a sink that stops reading leaves the rest held, in order, until resume; a discarded reader drops it', () => {
  const msgs = ['a', 'bb', 'ccc', 'dddd', 'eeeee'];
  const stream = Buffer.concat(msgs.map((m) => frameMessage(Buffer.from(m))));
  for (let cut = 0; cut <= stream.length; cut++) {
    const r = new MessageReader(1024);
    const got: string[] = [];
    // Stops after every second message, as a call does while its responses wait unread.
    const sink = { acceptMessage: (m: Buffer) => (got.push(m.toString()), got.length % 2 === 1) };
    r.push(stream.subarray(0, cut), sink);
    r.push(stream.subarray(cut), sink);
    for (let i = 0; i < 10 && r.holding; i++) r.resume(sink);
    assert.deepEqual(got, msgs, `cut at ${cut}`);
  }
  const r = new MessageReader(1024);
  const got: string[] = [];
  r.push(stream, { acceptMessage: (m: Buffer) => (got.push(m.toString()), false) });
  assert.equal(r.holding, true);
  r.discard();
  assert.equal(r.holding, false);
  r.push(stream, { acceptMessage: (m: Buffer) => (got.push(m.toString()), true) });
  assert.deepEqual(got, ['a']);
});

test('readers sharing a budget: an unfinished message counts until it completes or is discarded; one that would pass the budget is refused', () => {
  const budget = new ReadBudget(100);
  const sink = { acceptMessage: () => true };
  const a = new MessageReader(1000, budget);
  const b = new MessageReader(1000, budget);
  const msg = frameMessage(Buffer.alloc(80, 0x61));
  assert.equal(a.push(msg.subarray(0, 60), sink), undefined);
  assert.equal(budget.used, 60);
  assert.equal(b.push(msg.subarray(0, 50), sink)?.code, Status.RESOURCE_EXHAUSTED);
  assert.equal(budget.used, 60, 'a refused push holds nothing');
  assert.equal(a.push(msg.subarray(60), sink), undefined);
  assert.equal(budget.used, 0, 'a completed message gives its share back');
  const c = new MessageReader(1000, budget);
  assert.equal(c.push(msg.subarray(0, 90), sink), undefined);
  c.discard();
  assert.equal(budget.used, 0, 'a discarded reader gives its share back');
  // Whole messages in one chunk never touch the budget.
  const d = new MessageReader(1000, new ReadBudget(10));
  assert.equal(d.push(msg, sink), undefined);
});
