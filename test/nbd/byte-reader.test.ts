// ByteReader: frames split across chunks in every way, and input from a reused buffer
// (onread) that is overwritten right after each push.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { ByteReader } from '../../src/nbd/byte-reader.ts';

async function readFrames(reader: ByteReader, sizes: number[]): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const [i, size] of sizes.entries()) {
    if (i % 2 === 0) parts.push(Buffer.from(await reader.readExact(size)));
    else {
      const target = Buffer.alloc(size);
      await reader.readInto(target);
      parts.push(target);
    }
  }
  return Buffer.concat(parts);
}

const SIZES = [4, 16, 1, 70_000, 20, 3, 8, 100_000, 28, 5];
const TOTAL = SIZES.reduce((a, b) => a + b, 0);

test('stream input: any chunking yields the same frames', async () => {
  const input = randomBytes(TOTAL);
  for (const chunkBytes of [1, 7, 4096, 65536, TOTAL]) {
    const stream = new PassThrough();
    const reader = new ByteReader(stream, () => new Error('ended'));
    const frames = readFrames(reader, SIZES);
    for (let at = 0; at < input.length; at += chunkBytes) stream.write(input.subarray(at, at + chunkBytes));
    assert.ok((await frames).equals(input), `chunks of ${chunkBytes}`);
  }
});

test('borrowed input: bytes survive the reuse of two read buffers taking turns', async () => {
  const input = randomBytes(TOTAL);
  for (const chunkBytes of [3, 1000, 65536]) {
    const reader = new ByteReader(new PassThrough(), () => new Error('ended'));
    const frames = readFrames(reader, SIZES);
    const buffers = [Buffer.alloc(chunkBytes), Buffer.alloc(chunkBytes)];
    let turn = 0;
    for (let at = 0; at < input.length; at += chunkBytes) {
      turn ^= 1;
      reader.release(buffers[turn]);
      buffers[turn].fill(0xee); // the socket overwrites it
      const n = input.copy(buffers[turn], 0, at, at + chunkBytes);
      reader.pushBorrowed(buffers[turn].subarray(0, n));
      // Let the reader's consumers run (or not), as the event loop may between reads.
      if (at % (3 * chunkBytes) === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    assert.ok((await frames).equals(input), `chunks of ${chunkBytes}`);
  }
});

test('the end of the stream rejects a waiting read with the given error', async () => {
  const stream = new PassThrough();
  const reader = new ByteReader(stream, () => new Error('peer went away'));
  const pending = reader.readExact(10);
  stream.write(Buffer.alloc(4));
  stream.end();
  await assert.rejects(pending, /peer went away/);
});
