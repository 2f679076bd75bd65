// Validation of extents that come from outside (a server's changed areas, a CSV file):
// every area must be a non-negative exact integer range with positive length, inside the
// disk, and the list sorted without overlaps. Anything else is an ExtentError naming the
// offending area, so a malformed answer never silently becomes a partial copy.
import { VcbtError } from '../errors.ts';
import { endOf, union, type Extent } from './extent.ts';

/** Codes: EXTENT_INVALID (bad numbers), EXTENT_OUTSIDE_DISK, EXTENT_UNSORTED, EXTENT_OVERLAP. */
export class ExtentError extends VcbtError {}

export interface ValidateOptions {
  capacityBytes: number;
  /** Where the areas came from, for the message: e.g. `QueryChangedDiskAreas vm-10 disk 2000`. */
  source: string;
  /** Require strictly ascending, non-overlapping input (server answers); otherwise just merge. */
  requireSorted?: boolean;
}

function describe(area: Extent, index: number): string {
  return `area #${index} (offset ${area.offsetBytes}, length ${area.lengthBytes})`;
}

/** Checks areas and returns them merged (normalized). */
export function validateAreas(areas: readonly Extent[], options: ValidateOptions): Extent[] {
  const { capacityBytes, source } = options;
  let previousEnd = -1;
  areas.forEach((area, index) => {
    const context = { source, index, offsetBytes: area.offsetBytes, lengthBytes: area.lengthBytes, capacityBytes };
    if (!Number.isSafeInteger(area.offsetBytes) || area.offsetBytes < 0 || !Number.isSafeInteger(area.lengthBytes) || area.lengthBytes <= 0) {
      throw new ExtentError('EXTENT_INVALID', `${source}: ${describe(area, index)} is not a non-negative range with positive length`, context);
    }
    if (endOf(area) > capacityBytes) {
      throw new ExtentError('EXTENT_OUTSIDE_DISK', `${source}: ${describe(area, index)} ends at ${endOf(area)}, beyond the disk's ${capacityBytes} bytes`, context);
    }
    if (options.requireSorted && area.offsetBytes < previousEnd) {
      const code = areas[index - 1].offsetBytes > area.offsetBytes ? 'EXTENT_UNSORTED' : 'EXTENT_OVERLAP';
      const what = code === 'EXTENT_UNSORTED' ? 'starts before the previous area' : 'overlaps the previous area';
      throw new ExtentError(code, `${source}: ${describe(area, index)} ${what} (which ends at ${previousEnd})`, context);
    }
    previousEnd = Math.max(previousEnd, endOf(area));
  });
  return union(areas);
}
