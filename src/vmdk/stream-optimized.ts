// streamOptimized VMDK encoder: a disk as the one-pass stream vSphere's OVF import (NFC
// upload) and ovftool take, written per VMware's Virtual Disk Format 5.0 ("Stream-Optimized
// Compressed Sparse Extents").
//
// Vocabulary (the specification's terms)
// - sector: 512 bytes; every offset in the stream is in sectors.
// - grain: 64 KiB (128 sectors) of the disk; a grain holding any non-zero byte is written as a
//   grain marker (its LBA, its compressed length) followed by its deflate (RFC 1950 zlib)
//   bytes, padded to a sector. An all-zero grain is written not at all (its table entry is 0).
// - grain table (GT): 512 entries (32 MiB of disk), each the sector of a grain's marker or 0;
//   written after the grains it covers, behind a GT metadata marker.
// - grain directory (GD): one entry per grain table, its sector; written after every GT,
//   behind a GD marker.
// - header: `KDMV`, version 3, flags (valid newline test, compressed grains, markers),
//   capacity, grain size, the embedded descriptor's place, gdOffset = GD_AT_END (the stream
//   does not know it yet). The footer (behind a footer marker) is the same header with the
//   real gdOffset, and an end-of-stream marker (one zero sector) closes the stream.
//
// Memory stays bounded: one grain table (2 KiB), the grain directory (4 bytes per 32 MiB of
// disk) and `grainsInFlight` grains being read and compressed at once. Whole grains are
// compressed, the last one zero-padded past the capacity (readers inflate whole grains).
import { promisify } from 'node:util';
import { deflate as deflateCallback, constants as zlibConstants } from 'node:zlib';
import type { Extent } from '../extents/extent.ts';
import { VmdkError } from './errors.ts';
import { sectorBytes } from './descriptor.ts';

const deflate = promisify(deflateCallback);

export const grainSectors = 128;
export const grainBytes = grainSectors * sectorBytes;
export const entriesPerTable = 512;
const tableBytes = entriesPerTable * 4;
const sparseMagic = 0x564d444b; // "KDMV" little-endian
const flagValidNewlineTest = 1 << 0;
const flagCompressed = 1 << 16;
const flagMarkers = 1 << 17;
const gdAtEnd = 0xffffffffffffffffn;
const compressionDeflate = 1;
const markerEos = 0;
const markerGt = 1;
const markerGd = 2;
const markerFooter = 3;
/** Sectors kept for the embedded descriptor (as VMware's tools do). */
const descriptorSectors = 20;
/** Sector of the first grain: header + descriptor. */
const overheadSectors = 1 + descriptorSectors;

/** What the encoder reads: a disk of `sizeBytes`; `allocation` (when known) lets it skip zero ranges unread. */
export interface StreamSource {
  readonly sizeBytes: number;
  read(offsetBytes: number, target: Uint8Array, signal?: AbortSignal): Promise<void>;
  allocation?(range: Extent, signal?: AbortSignal): Promise<Array<Extent & { zero: boolean }>>;
}

export interface StreamOptimizedOptions {
  /** The extent file's name in the embedded descriptor. */
  fileName?: string;
  /** Descriptor `ddb.adapterType` (ide, buslogic, lsilogic, legacyESX); default lsilogic. */
  adapterType?: string;
  /** Descriptor `CID` (hex, 8 digits); default random. */
  cid?: number;
  /** zlib level 1..9 (default 6). */
  level?: number;
  /** Grains read and compressed at once (default 8). */
  grainsInFlight?: number;
  signal?: AbortSignal;
  /** Told after each grain table's range is done: disk bytes covered so far. */
  onProgress?: (doneBytes: number) => void;
}

/** Counts of one encoded stream (valid once the generator has finished). */
export interface StreamStats {
  /** Bytes of the stream. */
  streamBytes: number;
  /** Grains written (non-zero) and skipped (zero). */
  grainsWritten: number;
  grainsZero: number;
}

function header(capacitySectors: bigint, descriptorSize: number, gdOffset: bigint): Buffer {
  const b = Buffer.alloc(sectorBytes);
  b.writeUInt32LE(sparseMagic, 0);
  b.writeUInt32LE(3, 4);
  b.writeUInt32LE(flagValidNewlineTest | flagCompressed | flagMarkers, 8);
  b.writeBigUInt64LE(capacitySectors, 12);
  b.writeBigUInt64LE(BigInt(grainSectors), 20);
  b.writeBigUInt64LE(1n, 28); // descriptorOffset
  b.writeBigUInt64LE(BigInt(descriptorSize), 36);
  b.writeUInt32LE(entriesPerTable, 44);
  b.writeBigUInt64LE(0n, 48); // rgdOffset: no redundant directory
  b.writeBigUInt64LE(gdOffset, 56);
  b.writeBigUInt64LE(BigInt(overheadSectors), 64);
  b.writeUInt8(0, 72); // uncleanShutdown
  b.write('\n \r\n', 73, 'latin1'); // singleEndLineChar, nonEndLineChar, doubleEndLineChar1/2
  b.writeUInt16LE(compressionDeflate, 77);
  return b;
}

function metadataMarker(sectors: number, type: number): Buffer {
  const b = Buffer.alloc(sectorBytes);
  b.writeBigUInt64LE(BigInt(sectors), 0);
  b.writeUInt32LE(0, 8);
  b.writeUInt32LE(type, 12);
  return b;
}

/** The embedded descriptor: a one-extent streamOptimized disk. */
export function streamDescriptor(capacityBytes: number, options: Pick<StreamOptimizedOptions, 'fileName' | 'adapterType' | 'cid'> = {}): string {
  const sectors = capacityBytes / sectorBytes;
  const cid = (options.cid ?? Math.floor(Math.random() * 0xfffffffe)) >>> 0;
  const cylinders = Math.min(65535, Math.max(1, Math.floor(sectors / (255 * 63))));
  return [
    '# Disk DescriptorFile',
    'version=1',
    'encoding="UTF-8"',
    `CID=${cid.toString(16).padStart(8, '0')}`,
    'parentCID=ffffffff',
    'createType="streamOptimized"',
    '',
    '# Extent description',
    `RW ${sectors} SPARSE "${(options.fileName ?? 'disk.vmdk').replace(/"/g, '')}"`,
    '',
    '# The Disk Data Base',
    '#DDB',
    '',
    `ddb.adapterType = "${options.adapterType ?? 'lsilogic'}"`,
    `ddb.geometry.cylinders = "${cylinders}"`,
    'ddb.geometry.heads = "255"',
    'ddb.geometry.sectors = "63"',
    'ddb.virtualHWVersion = "4"',
    '',
  ].join('\n');
}

function isZero(bytes: Uint8Array): boolean {
  if (bytes.byteOffset % 8 !== 0) return bytes.every((b) => b === 0);
  const words = new BigUint64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 3);
  for (let i = 0; i < words.length; i++) if (words[i] !== 0n) return false;
  for (let i = words.length << 3; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** Ranges of [start, end) that may hold non-zero bytes, per the source's allocation (all of it when unknown). */
async function dataRanges(source: StreamSource, start: number, end: number, signal?: AbortSignal): Promise<Extent[]> {
  if (!source.allocation) return [{ offsetBytes: start, lengthBytes: end - start }];
  const extents = await source.allocation({ offsetBytes: start, lengthBytes: end - start }, signal);
  return extents.filter((e) => !e.zero);
}

/**
 * Encodes `source` as a streamOptimized VMDK, yielding the stream in pieces (each a whole
 * number of sectors). `stats` is filled in as it goes.
 */
export async function* encodeStreamOptimized(source: StreamSource, options: StreamOptimizedOptions = {}, stats: StreamStats = { streamBytes: 0, grainsWritten: 0, grainsZero: 0 }): AsyncGenerator<Buffer> {
  const { signal } = options;
  const capacityBytes = source.sizeBytes;
  if (!Number.isSafeInteger(capacityBytes) || capacityBytes <= 0 || capacityBytes % sectorBytes !== 0) {
    throw new VmdkError('VMDK_HEADER', `a streamOptimized disk needs a capacity that is a positive multiple of ${sectorBytes} bytes, not ${capacityBytes}`, { capacityBytes });
  }
  const level = options.level ?? 6;
  const inFlight = Math.max(1, options.grainsInFlight ?? 8);
  const capacitySectors = BigInt(capacityBytes / sectorBytes);
  const grainCount = Math.ceil(capacityBytes / grainBytes);
  const tableCount = Math.ceil(grainCount / entriesPerTable);
  const descriptor = Buffer.from(streamDescriptor(capacityBytes, options), 'utf8');
  if (descriptor.length > descriptorSectors * sectorBytes) throw new VmdkError('VMDK_DESCRIPTOR', 'the descriptor does not fit its sectors', {});

  let sector = 0n;
  const emit = (b: Buffer): Buffer => {
    sector += BigInt(b.length / sectorBytes);
    stats.streamBytes += b.length;
    return b;
  };
  yield emit(header(capacitySectors, descriptorSectors, gdAtEnd));
  const descriptorArea = Buffer.alloc(descriptorSectors * sectorBytes);
  descriptor.copy(descriptorArea);
  yield emit(descriptorArea);

  const directory = Buffer.alloc(Math.ceil((tableCount * 4) / sectorBytes) * sectorBytes);
  /** Reads and compresses one grain; null when it is all zeros. */
  const compressGrain = async (grain: number): Promise<Buffer | null> => {
    const offsetBytes = grain * grainBytes;
    const lengthBytes = Math.min(grainBytes, capacityBytes - offsetBytes);
    const data = Buffer.alloc(grainBytes);
    await source.read(offsetBytes, data.subarray(0, lengthBytes), signal);
    if (isZero(data)) return null;
    return deflate(data, { level, strategy: zlibConstants.Z_DEFAULT_STRATEGY });
  };

  for (let table = 0; table < tableCount; table++) {
    signal?.throwIfAborted();
    const firstGrain = table * entriesPerTable;
    const lastGrain = Math.min(grainCount, firstGrain + entriesPerTable);
    const ranges = await dataRanges(source, firstGrain * grainBytes, Math.min(capacityBytes, lastGrain * grainBytes), signal);
    const grains: number[] = [];
    for (const range of ranges) {
      const from = Math.floor(range.offsetBytes / grainBytes);
      const to = Math.ceil((range.offsetBytes + range.lengthBytes) / grainBytes);
      for (let g = Math.max(from, grains.at(-1) === undefined ? from : grains.at(-1)! + 1); g < to; g++) grains.push(g);
    }
    const entries = Buffer.alloc(tableBytes);
    // Keep up to `inFlight` grains reading/compressing ahead of the one being written.
    const pending: Array<Promise<Buffer | null>> = [];
    let next = 0;
    const fill = () => {
      while (pending.length < inFlight && next < grains.length) {
        const promise = compressGrain(grains[next++]);
        promise.catch(() => undefined); // awaited in order below; never left unhandled meanwhile
        pending.push(promise);
      }
    };
    fill();
    for (const grain of grains) {
      const compressed = await (pending.shift() as Promise<Buffer | null>);
      fill();
      if (!compressed) {
        stats.grainsZero++;
        continue;
      }
      const size = 12 + compressed.length;
      const block = Buffer.alloc(Math.ceil(size / sectorBytes) * sectorBytes);
      block.writeBigUInt64LE(BigInt(grain) * BigInt(grainSectors), 0);
      block.writeUInt32LE(compressed.length, 8);
      compressed.copy(block, 12);
      entries.writeUInt32LE(Number(sector), (grain - firstGrain) * 4);
      stats.grainsWritten++;
      yield emit(block);
    }
    stats.grainsZero += lastGrain - firstGrain - grains.length;
    yield emit(metadataMarker(tableBytes / sectorBytes, markerGt));
    directory.writeUInt32LE(Number(sector), table * 4);
    if (sector > 0xffffffffn) throw new VmdkError('VMDK_HEADER', 'the stream passed 2 TiB of sectors a grain table can address', {});
    yield emit(entries);
    options.onProgress?.(Math.min(capacityBytes, lastGrain * grainBytes));
  }
  yield emit(metadataMarker(directory.length / sectorBytes, markerGd));
  const gdOffset = sector;
  yield emit(directory);
  yield emit(metadataMarker(1, markerFooter));
  yield emit(header(capacitySectors, descriptorSectors, gdOffset));
  yield emit(metadataMarker(0, markerEos));
}
