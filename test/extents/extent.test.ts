import { test } from 'node:test';
import assert from 'node:assert/strict';
import { alignOutward, blocksTouched, clip, extent, intersect, splitIntoPieces, subtract, totalBytes, union, type Extent } from '../../src/extents/extent.ts';

const e = extent;

/** Reference model: a byte bitmap over a small disk. */
function toBits(extents: readonly Extent[], size: number): Uint8Array {
  const bits = new Uint8Array(size);
  for (const x of extents) bits.fill(1, x.offsetBytes, x.offsetBytes + x.lengthBytes);
  return bits;
}
function fromBits(bits: Uint8Array): Extent[] {
  const out: Extent[] = [];
  for (let i = 0; i < bits.length; ) {
    if (!bits[i]) { i++; continue; }
    let j = i;
    while (j < bits.length && bits[j]) j++;
    out.push(e(i, j - i));
    i = j;
  }
  return out;
}
function randomExtents(rand: () => number, size: number, count: number): Extent[] {
  return Array.from({ length: count }, () => {
    const offset = Math.floor(rand() * size);
    return e(offset, Math.floor(rand() * Math.min(40, size - offset)));
  });
}
function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

test('union merges overlapping and adjacent, drops empty, sorts', () => {
  assert.deepEqual(union([e(10, 5), e(0, 3), e(3, 2), e(12, 10), e(40, 0)]), [e(0, 5), e(10, 12)]);
  assert.deepEqual(union([]), []);
});

test('algebra matches a bitmap model on random inputs', () => {
  const rand = seeded(7);
  const size = 300;
  for (let round = 0; round < 300; round++) {
    const a = union(randomExtents(rand, size, 6));
    const b = union(randomExtents(rand, size, 6));
    const bitsA = toBits(a, size);
    const bitsB = toBits(b, size);
    assert.deepEqual(union([...a, ...b]), fromBits(bitsA.map((v, i) => v | bitsB[i])));
    assert.deepEqual(subtract(a, b), fromBits(bitsA.map((v, i) => v & (1 - bitsB[i]))));
    assert.deepEqual(intersect(a, b), fromBits(bitsA.map((v, i) => v & bitsB[i])));
    assert.equal(totalBytes(a), bitsA.reduce((s, v) => s + v, 0));
    const lo = Math.floor(rand() * size);
    const hi = lo + Math.floor(rand() * (size - lo));
    assert.deepEqual(clip(a, lo, hi), fromBits(bitsA.map((v, i) => (i >= lo && i < hi ? v : 0))));
  }
});

test('alignOutward covers every touched block and clips the short last block at capacity', () => {
  // disk of 10 blocks of 64 KiB plus 3 KiB: the last block is 3 KiB long
  const block = 65536;
  const capacity = 10 * block + 3072;
  assert.deepEqual(alignOutward([e(capacity - 1, 1)], block, capacity), [e(10 * block, 3072)]);
  assert.deepEqual(alignOutward([e(block - 1, 2)], block, capacity), [e(0, 2 * block)]);
  assert.deepEqual(alignOutward([e(0, 1), e(block, 1)], block, capacity), [e(0, 2 * block)]);
  assert.deepEqual(alignOutward([e(5, 0)], block, capacity), []);
});

test('splitIntoPieces keeps every byte, no piece above the limit, remainder kept', () => {
  const pieces = [...splitIntoPieces([e(0, 10), e(100, 3)], 4)];
  assert.deepEqual(pieces, [e(0, 4), e(4, 4), e(8, 2), e(100, 3)]);
  assert.throws(() => [...splitIntoPieces([e(0, 1)], 0)], RangeError);
});

test('blocksTouched lists each block once, including at block edges', () => {
  assert.deepEqual([...blocksTouched([e(0, 1), e(3, 2), e(8, 1), e(9, 8)], 4)], [0, 1, 2, 3, 4]);
  assert.deepEqual([...blocksTouched([e(4, 4)], 4)], [1]);
  assert.deepEqual([...blocksTouched([], 4)], []);
});
