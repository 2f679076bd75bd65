// The delta chain of a disk at a snapshot: its descriptor, the descriptor named by its
// parentFileNameHint, and so on down to the base disk - read as one disk.
//
// Vocabulary: a layer is one descriptor of the chain with its opened extents; layer 0 is the
// newest (the snapshot's own disk), the last layer the base. For each byte the newest layer
// whose grain is allocated wins; an unallocated grain falls through to the next layer (below
// the base: zeros); a zero grain (SEsparse zero or unmapped) reads as zeros without looking
// further. Flat extents hold every byte.
//
// Checks when opening: every delta's parentCID is its parent's CID (VMDK_CID_MISMATCH), no
// descriptor appears twice and the chain is at most maxDepth deep (VMDK_PARENT_CYCLE), every
// layer has the top's capacity and every sparse header agrees with its extent line
// (VMDK_HEADER), extent types are flat, VMFSSPARSE or SESPARSE (VMDK_EXTENT_TYPE).
import { posix } from 'node:path';
import { openCowd } from './cowd.ts';
import { noParentCid, parseDescriptor, sectorBytes, sparseExtentTypes, flatExtentTypes, type Descriptor } from './descriptor.ts';
import { VmdkError } from './errors.ts';
import type { VmdkFile, VmdkFiles } from './files.ts';
import { openSeSparse } from './sesparse.ts';
import { SparseExtent, TableCache, type GrainKind } from './sparse-extent.ts';

export interface ChainExtent {
  /** Where the extent starts on the disk, and its length. */
  diskOffsetBytes: number;
  sizeBytes: number;
  file: VmdkFile;
  /** Flat extents: where the disk's bytes start in the file. */
  fileOffsetBytes: number;
  /** Sparse extents: their grain map. */
  sparse?: SparseExtent;
}

export interface ChainLayer {
  descriptorName: string;
  descriptor: Descriptor;
  extents: ChainExtent[];
}

export interface OpenChainOptions {
  files: VmdkFiles;
  /** The snapshot's descriptor, by the name the files seam knows it. */
  descriptor: string;
  /** Bound of the grain table cache shared by the chain (default 64 MiB). */
  tableCacheBytes?: number;
  /** Deepest chain accepted (default 255, as ESXi). */
  maxDepth?: number;
  /** File reads in flight at once per read() call (default 8). */
  maxInFlight?: number;
  signal?: AbortSignal;
}

/** One stretch of the disk and which layer answers it, with what. */
export interface ChainRun {
  offsetBytes: number;
  lengthBytes: number;
  /** 'data' from `layer` (its file at fileOffsetBytes); 'zero' reads as zeros; 'unallocated' no layer has it. */
  kind: GrainKind;
  layer: number;
  file?: VmdkFile;
  fileOffsetBytes: number;
}

export const descriptorMaxBytes = 64 * 1024;
const defaultMaxDepth = 255;

function hex(cid: number): string {
  return cid.toString(16).padStart(8, '0');
}

export class VmdkChain {
  readonly layers: ChainLayer[];
  readonly capacityBytes: number;
  readonly tableCache: TableCache;
  readonly #maxInFlight: number;
  /** File reads issued for data (for tests and the bench). */
  dataReads = 0;
  dataBytesRead = 0;

  constructor(layers: ChainLayer[], tableCache: TableCache, maxInFlight: number) {
    this.layers = layers;
    this.capacityBytes = layers[0].descriptor.capacityBytes;
    this.tableCache = tableCache;
    this.#maxInFlight = maxInFlight;
  }

  /** The runs of [offsetBytes, +lengthBytes): which layer and file offset holds each byte. */
  async map(offsetBytes: number, lengthBytes: number, signal?: AbortSignal): Promise<ChainRun[]> {
    const runs: ChainRun[] = [];
    await this.#mapLayer(0, offsetBytes, offsetBytes + lengthBytes, runs, signal);
    return runs;
  }

  async #mapLayer(level: number, start: number, end: number, out: ChainRun[], signal?: AbortSignal): Promise<void> {
    if (level === this.layers.length) {
      out.push({ offsetBytes: start, lengthBytes: end - start, kind: 'unallocated', layer: level, fileOffsetBytes: 0 });
      return;
    }
    for (const extent of this.layers[level].extents) {
      const from = Math.max(start, extent.diskOffsetBytes);
      const to = Math.min(end, extent.diskOffsetBytes + extent.sizeBytes);
      if (from >= to) continue;
      if (!extent.sparse) {
        out.push({ offsetBytes: from, lengthBytes: to - from, kind: 'data', layer: level, file: extent.file, fileOffsetBytes: extent.fileOffsetBytes + (from - extent.diskOffsetBytes) });
        continue;
      }
      for (const run of await extent.sparse.map(from - extent.diskOffsetBytes, to - from, signal)) {
        const diskOffset = extent.diskOffsetBytes + run.offsetBytes;
        if (run.kind === 'unallocated') {
          await this.#mapLayer(level + 1, diskOffset, diskOffset + run.lengthBytes, out, signal);
        } else {
          out.push({ offsetBytes: diskOffset, lengthBytes: run.lengthBytes, kind: run.kind, layer: level, file: run.kind === 'data' ? extent.file : undefined, fileOffsetBytes: run.fileOffsetBytes });
        }
      }
    }
  }

  /** Fills target with the disk's bytes at offsetBytes, reading only the grains it needs. */
  async read(offsetBytes: number, target: Uint8Array, signal?: AbortSignal): Promise<void> {
    const runs = await this.map(offsetBytes, target.length, signal);
    let next = 0;
    const worker = async () => {
      while (next < runs.length) {
        const run = runs[next++];
        const slice = target.subarray(run.offsetBytes - offsetBytes, run.offsetBytes - offsetBytes + run.lengthBytes);
        if (run.kind !== 'data' || !run.file) {
          slice.fill(0);
          continue;
        }
        this.dataReads++;
        this.dataBytesRead += run.lengthBytes;
        await run.file.read(run.fileOffsetBytes, slice, signal);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#maxInFlight, runs.length) }, worker));
  }

  async close(): Promise<void> {
    const files = new Set(this.layers.flatMap((l) => l.extents.map((e) => e.file)));
    await Promise.allSettled([...files].map((f) => f.close()));
  }
}

async function openExtents(files: VmdkFiles, name: string, descriptor: Descriptor, cache: TableCache, signal?: AbortSignal): Promise<ChainExtent[]> {
  const directory = posix.dirname(name);
  const extents: ChainExtent[] = [];
  let diskOffsetBytes = 0;
  try {
    for (const line of descriptor.extents) {
      const sizeBytes = line.sectors * sectorBytes;
      const fileName = posix.isAbsolute(line.file) ? line.file : posix.join(directory, line.file);
      const known = flatExtentTypes.has(line.type) || sparseExtentTypes.has(line.type);
      if (!known || line.access === 'NOACCESS') {
        throw new VmdkError('VMDK_EXTENT_TYPE', `${name}: extent "${line.file}" is ${line.access} ${line.type}; vcbt reads VMFS/FLAT, VMFSSPARSE and SESPARSE extents (an RDM, vSAN or hosted sparse disk needs --transport nbd or vddk)`, { file: name, offsetBytes: 0, extentType: line.type });
      }
      const file = await files.open(fileName, signal);
      const extent: ChainExtent = { diskOffsetBytes, sizeBytes, file, fileOffsetBytes: 0 };
      extents.push(extent);
      if (flatExtentTypes.has(line.type)) {
        extent.fileOffsetBytes = line.offsetSectors * sectorBytes;
        if (extent.fileOffsetBytes + sizeBytes > file.sizeBytes) {
          throw new VmdkError('VMDK_TRUNCATED', `${fileName}: flat extent of ${sizeBytes} bytes at offset ${extent.fileOffsetBytes} ends past the end of the file (${file.sizeBytes} bytes)`, { file: fileName, offsetBytes: extent.fileOffsetBytes, fileBytes: file.sizeBytes });
        }
      } else {
        const format = line.type === 'SESPARSE' ? await openSeSparse(file, signal) : await openCowd(file, signal);
        if (format.capacityBytes !== sizeBytes) {
          throw new VmdkError('VMDK_HEADER', `${fileName}: the ${line.type} header says ${format.capacityBytes} bytes, the descriptor ${name} ${sizeBytes}`, { file: fileName, offsetBytes: 0 });
        }
        extent.sparse = new SparseExtent(format, cache);
      }
      diskOffsetBytes += sizeBytes;
    }
  } catch (error) {
    await Promise.allSettled(extents.map((e) => e.file.close()));
    throw error;
  }
  return extents;
}

/** Opens the chain below a snapshot's descriptor, checking it as it goes. */
export async function openVmdkChain(options: OpenChainOptions): Promise<VmdkChain> {
  const { files, signal } = options;
  const maxDepth = options.maxDepth ?? defaultMaxDepth;
  const cache = new TableCache(options.tableCacheBytes);
  const layers: ChainLayer[] = [];
  const seen = new Set<string>();
  let name: string | undefined = options.descriptor;
  try {
    while (name !== undefined) {
      const normalized = posix.normalize(name);
      if (seen.has(normalized) || layers.length >= maxDepth) {
        const chain = [...layers.map((l) => l.descriptorName), name].join(' -> ');
        throw new VmdkError('VMDK_PARENT_CYCLE', seen.has(normalized) ? `${name}: parentFileNameHint leads back to a disk already in the chain (${chain})` : `${options.descriptor}: the chain is deeper than ${maxDepth} disks`, { file: name, offsetBytes: 0, chain: [...seen] });
      }
      seen.add(normalized);
      const descriptor = parseDescriptor(await files.readText(name, descriptorMaxBytes, signal), name);
      const child = layers.at(-1);
      if (child) {
        if (descriptor.cid !== child.descriptor.parentCid) {
          throw new VmdkError('VMDK_CID_MISMATCH', `${child.descriptorName} was created on ${name} with CID ${hex(child.descriptor.parentCid)}, but ${name} now has CID ${hex(descriptor.cid)}: the parent changed after the delta was made`, { file: child.descriptorName, offsetBytes: 0, parent: name, parentCid: hex(child.descriptor.parentCid), cid: hex(descriptor.cid) });
        }
        if (descriptor.capacityBytes !== child.descriptor.capacityBytes) {
          throw new VmdkError('VMDK_HEADER', `${name} holds ${descriptor.capacityBytes} bytes, its delta ${child.descriptorName} ${child.descriptor.capacityBytes}`, { file: name, offsetBytes: 0 });
        }
      }
      const extents = await openExtents(files, name, descriptor, cache, signal);
      layers.push({ descriptorName: name, descriptor, extents });
      const hint = descriptor.parentFileNameHint;
      if (hint === undefined) {
        if (descriptor.parentCid !== noParentCid) {
          throw new VmdkError('VMDK_DESCRIPTOR', `${name} names a parent CID ${hex(descriptor.parentCid)} but no parentFileNameHint`, { file: name, offsetBytes: 0 });
        }
        name = undefined;
      } else {
        if (descriptor.parentCid === noParentCid) {
          throw new VmdkError('VMDK_CID_MISMATCH', `${name} names the parent "${hint}" but its parentCID is ffffffff (no parent)`, { file: name, offsetBytes: 0, parent: hint });
        }
        name = posix.isAbsolute(hint) ? hint : posix.join(posix.dirname(name), hint);
      }
    }
  } catch (error) {
    await Promise.allSettled(layers.flatMap((l) => l.extents.map((e) => e.file.close())));
    throw error;
  }
  return new VmdkChain(layers, cache, options.maxInFlight ?? 8);
}
