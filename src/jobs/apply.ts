// The apply job: the seed's C++ program done right. Copies a list of changed areas (the
// seed's CSV, bytes) from a source disk to a target disk that already holds an older copy.
// Areas are validated against both disks before a single byte moves, so a wrong file or a
// mismatched target fails cleanly instead of half-applying.
import { readFile } from 'node:fs/promises';
import { VcbtError } from '../errors.ts';
import { parseCsv } from '../extents/csv.ts';
import { endOf, totalBytes, type Extent } from '../extents/extent.ts';
import { validateAreas, ExtentError } from '../extents/validate.ts';
import { openDisk } from '../transport/open-disk.ts';
import { copyAreas, type CopyStats } from './copy-areas.ts';

export interface ApplyOptions {
  areasFile: string;
  from: string;
  to: string;
  sectorBytes?: number;
  maxInFlight?: number;
  /** NBD source/target: inactivity deadline of the handshake and of every request. */
  ioTimeoutMs?: number;
  signal?: AbortSignal;
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export interface ApplyResult extends CopyStats {
  areas: number;
  areaBytes: number;
  sourceBytes: number;
  targetBytes: number;
  elapsedMs: number;
}

/** Areas must sit on sector boundaries (QueryChangedDiskAreas always returns such areas);
 * the only exception is an area ending exactly at a disk end that is not sector-aligned. */
export function checkSectorAlignment(areas: readonly Extent[], sectorBytes: number, capacityBytes: number, source: string): void {
  areas.forEach((area, index) => {
    const endOk = endOf(area) % sectorBytes === 0 || endOf(area) === capacityBytes;
    if (area.offsetBytes % sectorBytes !== 0 || !endOk) {
      throw new ExtentError('EXTENT_MISALIGNED', `${source}: area #${index} (offset ${area.offsetBytes}, length ${area.lengthBytes}) is not aligned to ${sectorBytes}-byte sectors; areas are in bytes, not sectors`, { source, index, sectorBytes });
    }
  });
}

export async function applyAreas(options: ApplyOptions): Promise<ApplyResult> {
  const started = performance.now();
  const sectorBytes = options.sectorBytes ?? 512;
  const text = await readFile(options.areasFile, 'utf8').catch((error: unknown) => {
    throw new VcbtError('APPLY_AREAS_UNREADABLE', `cannot read areas file ${options.areasFile}: ${(error as Error).message}`, { file: options.areasFile });
  });
  const listed = parseCsv(text, options.areasFile);
  const source = await openDisk(options.from, { ioTimeoutMs: options.ioTimeoutMs, signal: options.signal });
  try {
    const target = await openDisk(options.to, { writable: true, ioTimeoutMs: options.ioTimeoutMs, signal: options.signal });
    try {
      if (target.sizeBytes < source.sizeBytes) {
        throw new VcbtError('APPLY_TARGET_SMALLER', `target ${options.to} has ${target.sizeBytes} bytes, less than source ${options.from} with ${source.sizeBytes}: it cannot be a copy of the source`, { from: options.from, to: options.to, sourceBytes: source.sizeBytes, targetBytes: target.sizeBytes });
      }
      checkSectorAlignment(listed, sectorBytes, source.sizeBytes, options.areasFile);
      const areas = validateAreas(listed, { capacityBytes: source.sizeBytes, source: `${options.areasFile} against source ${options.from}` });
      const areaBytes = totalBytes(areas);
      let done = 0;
      const stats = await copyAreas(source, target, areas, {
        maxInFlight: options.maxInFlight,
        signal: options.signal,
        onProgress: (bytes) => options.onProgress?.((done += bytes), areaBytes),
      });
      return { ...stats, areas: areas.length, areaBytes, sourceBytes: source.sizeBytes, targetBytes: target.sizeBytes, elapsedMs: performance.now() - started };
    } finally {
      await target.close();
    }
  } finally {
    await source.close();
  }
}
