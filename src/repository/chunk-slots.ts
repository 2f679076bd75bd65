// Walking a disk chunk by chunk against a normalized extent list: for every chunk slot the
// parts of the list inside it, with one cursor over the list (linear, not slots x areas).
import { endOf, type Extent } from '../extents/extent.ts';

export interface SlotParts {
  slot: number;
  startBytes: number;
  lengthBytes: number;
  /** Parts of the list inside this slot, offsets relative to the disk. Empty: untouched. */
  parts: Extent[];
}

export function* slotsWithParts(areas: readonly Extent[], chunkBytes: number, capacityBytes: number): Generator<SlotParts> {
  const slots = Math.ceil(capacityBytes / chunkBytes);
  let cursor = 0;
  for (let slot = 0; slot < slots; slot++) {
    const startBytes = slot * chunkBytes;
    const endBytes = Math.min(startBytes + chunkBytes, capacityBytes);
    while (cursor < areas.length && endOf(areas[cursor]) <= startBytes) cursor++;
    const parts: Extent[] = [];
    for (let k = cursor; k < areas.length && areas[k].offsetBytes < endBytes; k++) {
      const from = Math.max(areas[k].offsetBytes, startBytes);
      const to = Math.min(endOf(areas[k]), endBytes);
      if (to > from) parts.push({ offsetBytes: from, lengthBytes: to - from });
    }
    yield { slot, startBytes, lengthBytes: endBytes - startBytes, parts };
  }
}
