// ReadCoverage: which bytes of one READ request the server's structured reply chunks have
// covered so far. The NBD protocol lets a server split a read into any number of
// OFFSET_DATA / OFFSET_HOLE chunks, in any order, but they must not overlap and together
// must cover the request exactly. Counting received bytes is not enough (two chunks over
// the same half add up to the full length and leave the other half unwritten), so every
// chunk is checked against the ranges already covered before its bytes are used.
//
// Terms: a "range" is [startBytes, endBytes) relative to the request's offset. Covered
// ranges are kept merged (adjacent ranges join), sorted, in one flat array; a server that
// sends chunks in order keeps exactly one range. Memory is bounded by MAX_DISJOINT_RANGES;
// a reply more fragmented than that is refused as pathological.

/** Disjoint covered ranges kept per request before the reply is refused (16 bytes each). */
export const MAX_DISJOINT_RANGES = 4096;

/** Why a chunk cannot be accepted; null when it was recorded. */
export type CoverageProblem = 'empty' | 'outside' | 'overlap' | 'fragmented';

export class ReadCoverage {
  readonly lengthBytes: number;
  /** Flat [start0, end0, start1, end1, ...], sorted, disjoint and not adjacent. */
  readonly #ranges: number[] = [];
  #coveredBytes = 0;

  constructor(lengthBytes: number) {
    this.lengthBytes = lengthBytes;
  }

  get coveredBytes(): number {
    return this.#coveredBytes;
  }

  get complete(): boolean {
    return this.#coveredBytes === this.lengthBytes;
  }

  /** The first byte not covered yet (relative to the request), or null when complete. */
  firstGapBytes(): number | null {
    if (this.complete) return null;
    const ranges = this.#ranges;
    return ranges.length > 0 && ranges[0] === 0 ? ranges[1] : 0;
  }

  /** Record [startBytes, startBytes + lengthBytes) unless it is empty, outside or overlapping. */
  add(startBytes: number, lengthBytes: number): CoverageProblem | null {
    if (lengthBytes <= 0) return 'empty';
    const endBytes = startBytes + lengthBytes;
    if (startBytes < 0 || endBytes > this.lengthBytes) return 'outside';
    const ranges = this.#ranges;
    // Index (in pairs) of the first range that ends after startBytes.
    let low = 0;
    let high = ranges.length / 2;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (ranges[mid * 2 + 1] <= startBytes) low = mid + 1;
      else high = mid;
    }
    const next = low;
    if (next * 2 < ranges.length && ranges[next * 2] < endBytes) return 'overlap';
    const joinsPrevious = next > 0 && ranges[next * 2 - 1] === startBytes;
    const joinsNext = next * 2 < ranges.length && ranges[next * 2] === endBytes;
    if (joinsPrevious && joinsNext) {
      ranges[next * 2 - 1] = ranges[next * 2 + 1];
      ranges.splice(next * 2, 2);
    } else if (joinsPrevious) {
      ranges[next * 2 - 1] = endBytes;
    } else if (joinsNext) {
      ranges[next * 2] = startBytes;
    } else {
      if (ranges.length / 2 >= MAX_DISJOINT_RANGES) return 'fragmented';
      ranges.splice(next * 2, 0, startBytes, endBytes);
    }
    this.#coveredBytes += lengthBytes;
    return null;
  }
}
