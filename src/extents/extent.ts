// Extents: the byte-range algebra every layer uses.
//
// Vocabulary
// - Extent: a half-open byte range [offsetBytes, offsetBytes + lengthBytes) on a disk.
//   lengthBytes > 0 in every normalized list; offsets are exact JS integers (disk offsets
//   stay far below 2^53 in practice; parsers reject anything larger rather than round).
// - Normalized list: sorted by offset, no overlaps, no two extents touching (adjacent ones
//   merged). Every function here returns normalized lists unless its name says otherwise
//   (splitIntoPieces returns pieces in order, touching).
// - Block: an aligned unit of blockBytes; aligning an extent outward covers every block it
//   touches, clipped at the disk's capacity (the last block of a disk may be short).

export interface Extent {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

export function endOf(extent: Extent): number {
  return extent.offsetBytes + extent.lengthBytes;
}

export function extent(offsetBytes: number, lengthBytes: number): Extent {
  return { offsetBytes, lengthBytes };
}

/** Sorted, merged union of any extents (overlapping or adjacent ones merge; empty ones vanish). */
export function union(extents: Iterable<Extent>): Extent[] {
  const sorted = [...extents].filter((e) => e.lengthBytes > 0).sort((a, b) => a.offsetBytes - b.offsetBytes);
  const merged: Extent[] = [];
  let current: { offsetBytes: number; endBytes: number } | undefined;
  for (const e of sorted) {
    if (current && e.offsetBytes <= current.endBytes) {
      current.endBytes = Math.max(current.endBytes, endOf(e));
      continue;
    }
    if (current) merged.push(extent(current.offsetBytes, current.endBytes - current.offsetBytes));
    current = { offsetBytes: e.offsetBytes, endBytes: endOf(e) };
  }
  if (current) merged.push(extent(current.offsetBytes, current.endBytes - current.offsetBytes));
  return merged;
}

/** The parts of a normalized list inside [startBytes, endBytes). */
export function clip(extents: readonly Extent[], startBytes: number, endBytes: number): Extent[] {
  const clipped: Extent[] = [];
  for (const e of extents) {
    const from = Math.max(e.offsetBytes, startBytes);
    const to = Math.min(endOf(e), endBytes);
    if (to > from) clipped.push(extent(from, to - from));
  }
  return clipped;
}

/** Widen every extent to whole blocks of blockBytes, clip at capacityBytes, merge. */
export function alignOutward(extents: Iterable<Extent>, blockBytes: number, capacityBytes: number): Extent[] {
  assertPositiveInteger(blockBytes, 'blockBytes');
  const aligned: Extent[] = [];
  for (const e of extents) {
    if (e.lengthBytes <= 0) continue;
    const from = Math.floor(e.offsetBytes / blockBytes) * blockBytes;
    const to = Math.min(Math.ceil(endOf(e) / blockBytes) * blockBytes, capacityBytes);
    if (to > from) aligned.push(extent(from, to - from));
  }
  return union(aligned);
}

/** Cut extents into consecutive pieces of at most maxPieceBytes each, in order. */
export function* splitIntoPieces(extents: Iterable<Extent>, maxPieceBytes: number): Generator<Extent> {
  assertPositiveInteger(maxPieceBytes, 'maxPieceBytes');
  for (const e of extents) {
    for (let at = e.offsetBytes; at < endOf(e); at += maxPieceBytes) {
      yield extent(at, Math.min(maxPieceBytes, endOf(e) - at));
    }
  }
}

/** Indexes of the fixed, aligned blocks of blockBytes that a normalized list touches, ascending, each once. */
export function* blocksTouched(extents: Iterable<Extent>, blockBytes: number): Generator<number> {
  assertPositiveInteger(blockBytes, 'blockBytes');
  let last = -1;
  for (const e of extents) {
    if (e.lengthBytes <= 0) continue;
    const first = Math.max(Math.floor(e.offsetBytes / blockBytes), last + 1);
    const final = Math.floor((endOf(e) - 1) / blockBytes);
    for (let index = first; index <= final; index++) yield index;
    if (final > last) last = final;
  }
}

/** The parts of normalized list `from` not covered by normalized list `minus`. */
export function subtract(from: readonly Extent[], minus: readonly Extent[]): Extent[] {
  const result: Extent[] = [];
  let j = 0;
  for (const e of from) {
    let at = e.offsetBytes;
    const end = endOf(e);
    while (j < minus.length && endOf(minus[j]) <= at) j++;
    let k = j;
    while (at < end && k < minus.length && minus[k].offsetBytes < end) {
      const m = minus[k];
      if (m.offsetBytes > at) result.push(extent(at, m.offsetBytes - at));
      at = Math.max(at, endOf(m));
      k++;
    }
    if (at < end) result.push(extent(at, end - at));
  }
  return result;
}

/** Overlap of two normalized lists. */
export function intersect(a: readonly Extent[], b: readonly Extent[]): Extent[] {
  const result: Extent[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const from = Math.max(a[i].offsetBytes, b[j].offsetBytes);
    const to = Math.min(endOf(a[i]), endOf(b[j]));
    if (to > from) result.push(extent(from, to - from));
    if (endOf(a[i]) < endOf(b[j])) i++;
    else j++;
  }
  return union(result);
}

export function totalBytes(extents: Iterable<Extent>): number {
  let total = 0;
  for (const e of extents) total += e.lengthBytes;
  return total;
}

function assertPositiveInteger(value: number, name: string): void {
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive integer, got ${value}`);
}
