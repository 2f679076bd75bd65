// Copying areas from a disk reader to a disk writer: the data mover under `apply`,
// `replicate` and `restore`.
//
// Every area is cut into pieces of at most pieceBytes; up to maxInFlight pieces are read and
// written concurrently, each in one of maxInFlight buffers allocated once (memory is
// maxInFlight x pieceBytes, whatever the number or size of the areas). A piece that reads as
// all zeroes is written as a zero range, so the target can stay sparse. No area is ever
// copied short: the last piece of an area carries its remainder (the seed's
// `length / bufSize` bug).
import type { DiskReader, DiskWriter } from '../transport/disk.ts';
import { splitIntoPieces, type Extent } from '../extents/extent.ts';

export interface CopyOptions {
  pieceBytes?: number;
  maxInFlight?: number;
  signal?: AbortSignal;
  /** Called after each piece lands on the target with the bytes it covered. */
  onProgress?: (doneBytes: number) => void;
  /** Skip the final flush (the caller flushes once after several copies). */
  noFlush?: boolean;
}

export interface CopyStats {
  bytesCopied: number;
  bytesZero: number;
  pieces: number;
}

// 256 KiB x 32 in flight (8 MiB of buffers). bench/nbd-copy.ts swept the replicate data path
// against the lab's NBD endpoint (bench/README.md, "Copying over NBD"): 8 in flight was slower
// in every repetition, 16 to 128 and 1 to 8 connections were within the noise of 32 (the best
// median), 1 MiB pieces cost the same as 256 KiB, 64 KiB pieces 50-80 % more CPU on both
// sides. Readers used to carry in-flight hints (NBD 16, file 8): capping the copy by them
// would have meant 8, the slow end; they were removed.
export const defaultPieceBytes = 256 * 1024;
export const defaultMaxInFlight = 32;

function isAllZero(data: Uint8Array, zeroes: Uint8Array): boolean {
  return Buffer.compare(data, zeroes.subarray(0, data.length)) === 0;
}

export async function copyAreas(reader: Pick<DiskReader, 'read'>, writer: Pick<DiskWriter, 'write' | 'writeZeroes' | 'flush'>, areas: Iterable<Extent>, options: CopyOptions = {}): Promise<CopyStats> {
  const pieceBytes = options.pieceBytes ?? defaultPieceBytes;
  const maxInFlight = Math.max(1, options.maxInFlight ?? defaultMaxInFlight);
  const zeroes = new Uint8Array(pieceBytes);
  const freeBuffers: Uint8Array[] = Array.from({ length: maxInFlight }, () => new Uint8Array(pieceBytes));
  const stats: CopyStats = { bytesCopied: 0, bytesZero: 0, pieces: 0 };
  const pieces = splitIntoPieces(areas, pieceBytes);
  let failure: unknown;

  async function worker(): Promise<void> {
    const buffer = freeBuffers.pop();
    if (!buffer) return;
    for (let next = pieces.next(); !next.done && failure === undefined; next = pieces.next()) {
      options.signal?.throwIfAborted();
      const piece = next.value;
      const data = buffer.subarray(0, piece.lengthBytes);
      await reader.read(piece.offsetBytes, data, options.signal);
      if (isAllZero(data, zeroes)) {
        await writer.writeZeroes(piece.offsetBytes, piece.lengthBytes, options.signal);
        stats.bytesZero += piece.lengthBytes;
      } else {
        await writer.write(piece.offsetBytes, data, options.signal);
      }
      stats.bytesCopied += piece.lengthBytes;
      stats.pieces++;
      options.onProgress?.(piece.lengthBytes);
    }
  }

  // One shared generator feeds all workers, so pieces go out in order and at most
  // maxInFlight are outstanding. The first failure stops every worker after its current piece.
  const workers = Array.from({ length: maxInFlight }, () =>
    worker().catch((error: unknown) => {
      failure ??= error;
    }),
  );
  await Promise.all(workers);
  if (failure !== undefined) throw failure;
  if (!options.noFlush) await writer.flush(options.signal);
  return stats;
}
