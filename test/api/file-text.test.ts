// Size limit and UTF-8 check shared by `validate`, `apply -f` and the directory store.
import { test } from 'node:test';
import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeResourceText, invalidUtf8Offset, readResourceText } from '../../src/api/file-text.js';
import { parseResources } from '../../src/api/parse.js';
import { validateFiles } from '../../src/api/validate-files.js';
import { meshSds } from '../cli/run.js';

test('the first invalid UTF-8 byte is found at its offset (Latin-1, overlong, surrogate, truncated)', () => {
  assert.equal(invalidUtf8Offset(Buffer.from('héllo ✓ 😀')), undefined);
  assert.equal(invalidUtf8Offset(Buffer.from([0x61, 0x62, 0xe9, 0x63])), 2); // Latin-1 é
  assert.equal(invalidUtf8Offset(Buffer.from([0x61, 0xc0, 0xaf])), 1); // overlong
  assert.equal(invalidUtf8Offset(Buffer.from([0x61, 0xed, 0xa0, 0x80])), 1); // surrogate half
  assert.equal(invalidUtf8Offset(Buffer.from([0x61, 0xe2, 0x9c])), 1); // truncated at end
  assert.equal(invalidUtf8Offset(Buffer.from([0x61, 0xf4, 0x90, 0x80, 0x80])), 1); // above U+10FFFF
});

test('decoding names the file and the byte offset; too large is refused before decoding', () => {
  const r = decodeResourceText(Buffer.concat([Buffer.from('# caf'), Buffer.from([0xe9]), Buffer.from('\n')]), 'a.yaml');
  assert.ok('error' in r);
  assert.equal(r.error.file, 'a.yaml');
  assert.equal(r.error.message, 'file is not valid UTF-8: invalid byte 0xe9 at byte offset 5');
  const big = decodeResourceText(Buffer.alloc(11, 0x20), 'b.yaml', 10);
  assert.ok('error' in big);
  assert.match(big.error.message, /file is 11 bytes, larger than the limit of 10 bytes \(--max-file-size\)/);
});

test('UTF-16 text (with or without a byte-order mark) is named as such; a NUL in UTF-8 text says the file is not text', () => {
  const yaml = 'type: Dataplane\nname: a\n';
  const message = (buf: Buffer) => {
    const r = decodeResourceText(buf, 'u.yaml');
    return 'error' in r ? r.error.message : 'decoded';
  };
  for (const buf of [Buffer.from(yaml, 'utf16le'), Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(yaml, 'utf16le')]), Buffer.from(yaml, 'utf16le').swap16()]) {
    assert.equal(message(buf), 'file is UTF-16 text, not UTF-8: save it as UTF-8');
  }
  assert.equal(message(Buffer.from('type: Dataplane\nname: a\0b\n')), 'file is not text: NUL byte at byte offset 23');
  assert.equal(message(Buffer.from(yaml)), 'decoded');
});

test('a byte-order mark starting a later document (files saved by a Windows editor, then concatenated) is dropped: every document is read, not one baffling syntax error for the whole file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-text-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const doc = (name: string) => `type: Dataplane\nmesh: default\nname: ${name}\nlabels:\n  app: x\n`;
  const file = join(dir, 'all.yaml');
  // `cat a.yaml b.yaml c.yaml`: b starts with its BOM and `---` (YAML 1.2 allows a BOM there); c's
  // BOM follows a separator the concatenating script wrote.
  await writeFile(file, '\uFEFF' + doc('a') + '\uFEFF---\n' + doc('b') + '---\n\uFEFF' + doc('c'));
  const read = await readResourceText(file);
  assert.ok('text' in read);
  const parsed = parseResources(read.text, file);
  assert.deepEqual(parsed.errors, []);
  assert.deepEqual(parsed.resources.map((r) => r.name), ['a', 'b', 'c']);
});

test('validate refuses a non-UTF-8 file and an oversized file, naming each', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-text-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const latin1 = join(dir, 'latin1.yaml');
  await writeFile(latin1, Buffer.concat([Buffer.from('# r'), Buffer.from([0xe9]), Buffer.from('sum\ntype: Dataplane\nname: a\n')]));
  const big = join(dir, 'big.yaml');
  await writeFile(big, `# ${'x'.repeat(100)}\ntype: Dataplane\nname: b\n`);
  const r = await validateFiles([latin1, big], new Date(), 64);
  assert.equal(r.ok, false);
  assert.deepEqual(r.lines, [
    `${latin1} (document 1): file is not valid UTF-8: invalid byte 0xe9 at byte offset 3`,
    `${big} (document 1): file is 127 bytes, larger than the limit of 64 bytes (--max-file-size): not read`,
  ]);
  const read = await readResourceText(big, 'shown.yaml', 64);
  assert.ok('error' in read && read.error.file === 'shown.yaml');
});

test('a FIFO given as a resource file is refused as not a regular file, without waiting for a writer', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-text-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const fifo = join(dir, 'pipe.yaml');
  execFileSync('mkfifo', [fifo]);
  // A blocking open would wait here for ever (the test runner's timeout would end it).
  const read = await readResourceText(fifo);
  assert.ok('error' in read);
  assert.equal(read.error.message, 'not a regular file');
  const r = await validateFiles([fifo], new Date());
  assert.deepEqual(r.lines, [`${fifo} (document 1): not a regular file`]);
});

test('valid UTF-8 that the runtime cannot hold as one string is reported as too long, not as an invalid byte; other failures say what failed', () => {
  // V8's string limit needs a ~512 MB file to reach: the decoder fails here as node's does there.
  const tooLong = Object.assign(new Error('Cannot create a string longer than 0x1fffffe8 characters'), { code: 'ERR_STRING_TOO_LONG' });
  const ascii = Buffer.from('type: MeshTrust\n');
  const r = decodeResourceText(ascii, 'big.yaml', 1024, () => {
    throw tooLong;
  });
  assert.ok('error' in r);
  assert.equal(r.error.message, `file of ${ascii.length} bytes is too long to hold as one string in this runtime (Cannot create a string longer than 0x1fffffe8 characters): split it into smaller files`);
  assert.doesNotMatch(r.error.message, /UTF-8/);
  const other = decodeResourceText(ascii, 'x.yaml', 1024, () => {
    throw new Error('out of memory');
  });
  assert.ok('error' in other);
  assert.equal(other.error.message, `file of ${ascii.length} bytes could not be decoded: out of memory`);
  // Bytes that really are invalid keep their message, whatever the decoder threw.
  const bad = decodeResourceText(Buffer.from([0x61, 0xe9]), 'bad.yaml', 1024, () => {
    throw tooLong;
  });
  assert.ok('error' in bad);
  assert.equal(bad.error.message, 'file is not valid UTF-8: invalid byte 0xe9 at byte offset 1');
});

test('--max-file-size (flag or MESH_SDS_MAX_FILE_SIZE) above 256MiB is refused by the CLI parser, naming the maximum; 256MiB is accepted', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-max-size-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'ok.yaml');
  await writeFile(file, 'type: Dataplane\nname: dp\nmesh: default\n');
  const flag = await meshSds(['validate', '--max-file-size', '4GiB', file]);
  assert.equal(flag.code, 1, flag.stdout);
  assert.match(flag.stderr, /--max-file-size "4GiB" is 4294967296 bytes, above the maximum of 256MiB \(268435456 bytes\)/);
  const env = await meshSds(['get', 'dataplane', '--resources', dir, '--state-dir', join(dir, 'state')], { env: { MESH_SDS_MAX_FILE_SIZE: '1GiB' } });
  assert.equal(env.code, 1, env.stdout);
  assert.match(env.stderr, /value '1GiB' from env 'MESH_SDS_MAX_FILE_SIZE' is invalid\. --max-file-size "1GiB" is 1073741824 bytes, above the maximum of 256MiB/);
  const max = await meshSds(['validate', '--max-file-size', '256MiB', file]);
  assert.equal(max.code, 0, max.stderr);
});
