// Test-side encoders of VMware delta files, written from the formats (docs/vmdk.md) and not
// from vcbt's readers: a COWD (VMFSSPARSE) or SEsparse extent holding given grains, and the
// descriptors of a chain. qemu-img reads what these write (test/vmdk/chain.test.ts proves it).
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const sector = 512;
export type GrainContent = Uint8Array | 'zero' | 'unmap';

/** A COWD extent: header, directory at sector 4, then tables and grains in grain order. */
export function cowdExtent(capacityBytes: number, grains: ReadonlyMap<number, Uint8Array>, grainSectors = 1): Buffer {
  const grainBytes = grainSectors * sector;
  const capacitySectors = capacityBytes / sector;
  const gdEntries = Math.ceil(capacitySectors / (grainSectors * 4096));
  const gdSector = 4;
  let nextSector = gdSector + Math.ceil((gdEntries * 4) / sector);
  const chunks: { sector: number; data: Uint8Array }[] = [];
  const directory = Buffer.alloc(gdEntries * 4);
  const tables = new Map<number, Buffer>();
  for (const grain of [...grains.keys()].sort((a, b) => a - b)) {
    const t = Math.floor(grain / 4096);
    let table = tables.get(t);
    if (!table) {
      table = Buffer.alloc(4096 * 4);
      tables.set(t, table);
      directory.writeUInt32LE(nextSector, t * 4);
      chunks.push({ sector: nextSector, data: table });
      nextSector += (4096 * 4) / sector;
    }
    table.writeUInt32LE(nextSector, (grain % 4096) * 4);
    const data = Buffer.alloc(grainBytes);
    data.set(grains.get(grain)!.subarray(0, grainBytes));
    chunks.push({ sector: nextSector, data });
    nextSector += grainSectors;
  }
  const header = Buffer.alloc(2048);
  header.write('COWD', 0, 'latin1');
  header.writeUInt32LE(1, 4); // version
  header.writeUInt32LE(3, 8); // flags
  header.writeUInt32LE(capacitySectors, 12);
  header.writeUInt32LE(grainSectors, 16);
  header.writeUInt32LE(gdSector, 20);
  header.writeUInt32LE(gdEntries, 24);
  header.writeUInt32LE(nextSector, 28); // freeSector
  const file = Buffer.alloc(nextSector * sector);
  header.copy(file, 0);
  directory.copy(file, gdSector * sector);
  for (const c of chunks) file.set(c.data, c.sector * sector);
  return file;
}

/** An SEsparse extent: headers, directory, every table area, grains packed by first use. */
export function seSparseExtent(capacityBytes: number, grains: ReadonlyMap<number, GrainContent>): Buffer {
  const grainBytes = 4096;
  const capacitySectors = capacityBytes / sector;
  const tableCount = Math.ceil(capacityBytes / (grainBytes * 4096));
  const gdSectors = Math.ceil((tableCount * 8) / sector);
  const gdSector = 8;
  const tablesSector = gdSector + gdSectors;
  const tablesSectors = tableCount * 64;
  const bitmapSector = tablesSector + tablesSectors;
  const backmapSector = bitmapSector + 1;
  const grainsSector = backmapSector + 1;
  const grainsSectors = Math.ceil(capacityBytes / grainBytes) * 8;
  const dataGrains = [...grains.entries()].filter(([, c]) => typeof c !== 'string').length;
  const file = Buffer.alloc((grainsSector + dataGrains * 8) * sector);
  const words = [
    0xcafebaben, 0x200000001n, BigInt(capacitySectors), 8n, 64n, 0n, 0n, 0n, 0n, 0n,
    1n, 1n, 2n, 1n, 3n, 5n,
    BigInt(gdSector), BigInt(gdSectors), BigInt(tablesSector), BigInt(tablesSectors),
    BigInt(bitmapSector), 1n, BigInt(backmapSector), 1n, BigInt(grainsSector), BigInt(grainsSectors),
  ];
  words.forEach((w, i) => file.writeBigUInt64LE(w, i * 8));
  file.writeBigUInt64LE(0xcafecafen, sector);
  const tableNumber = new Map<number, number>();
  let nextGrain = 0;
  for (const grain of [...grains.keys()].sort((a, b) => a - b)) {
    const t = Math.floor(grain / 4096);
    if (!tableNumber.has(t)) {
      tableNumber.set(t, tableNumber.size);
      file.writeBigUInt64LE(0x1000000000000000n | BigInt(tableNumber.get(t)!), gdSector * sector + t * 8);
    }
    const entryAt = (tablesSector + tableNumber.get(t)! * 64) * sector + (grain % 4096) * 8;
    const content = grains.get(grain)!;
    if (content === 'zero') file.writeBigUInt64LE(0x2000000000000000n, entryAt);
    else if (content === 'unmap') file.writeBigUInt64LE(0x1000000000000000n, entryAt);
    else {
      const n = BigInt(nextGrain);
      file.writeBigUInt64LE(0x3000000000000000n | ((n & 0xfffn) << 48n) | (n >> 12n), entryAt);
      file.set(content.subarray(0, grainBytes), (grainsSector + nextGrain * 8) * sector);
      nextGrain++;
    }
  }
  file.writeBigUInt64LE(BigInt(tableNumber.size), sector + 8); // free GT number
  return file;
}

export interface DescriptorSpec {
  cid: number;
  parentCid?: number;
  createType: string;
  parentHint?: string;
  extents: string[];
}

export function descriptorText(spec: DescriptorSpec): string {
  const hex = (n: number) => n.toString(16).padStart(8, '0');
  return [
    '# Disk DescriptorFile', 'version=1', 'encoding="UTF-8"',
    `CID=${hex(spec.cid)}`, `parentCID=${hex(spec.parentCid ?? 0xffffffff)}`, `createType="${spec.createType}"`,
    ...(spec.parentHint ? [`parentFileNameHint="${spec.parentHint}"`] : []),
    '', '# Extent description', ...spec.extents, '', '# The Disk Data Base', '#DDB', '', 'ddb.adapterType = "lsilogic"', '',
  ].join('\n');
}

export type DeltaFormat = 'vmfsSparse' | 'seSparse';

/** One delta: grain size follows the format (COWD 512 B, SEsparse 4 KiB). */
export interface DeltaSpec {
  format: DeltaFormat;
  /** Writes applied in this delta, as (offsetBytes, bytes | 'zero' | 'unmap' with a length). */
  writes: { offsetBytes: number; data?: Uint8Array; zeroBytes?: number; unmap?: boolean }[];
}

export function grainBytesOf(format: DeltaFormat): number {
  return format === 'seSparse' ? 4096 : 512;
}

/**
 * Writes a chain into dir: base `disk.vmdk` + `disk-flat.vmdk`, then `disk-00000N.vmdk` per
 * delta. Returns the top descriptor's path and the image every layer shows (sha256 and bytes).
 */
export async function writeChain(dir: string, base: Uint8Array, deltas: DeltaSpec[]): Promise<{ top: string; images: Buffer[]; sha256: string[] }> {
  const capacityBytes = base.length;
  const sectors = capacityBytes / sector;
  await writeFile(join(dir, 'disk-flat.vmdk'), base);
  await writeFile(join(dir, 'disk.vmdk'), descriptorText({ cid: 0x1000, createType: 'vmfs', extents: [`RW ${sectors} VMFS "disk-flat.vmdk"`] }));
  let image = Buffer.from(base);
  const images = [Buffer.from(image)];
  let parent = 'disk.vmdk';
  let parentCid = 0x1000;
  for (const [i, delta] of deltas.entries()) {
    const grainBytes = grainBytesOf(delta.format);
    const grains = new Map<number, GrainContent>();
    for (const w of delta.writes) {
      const length = w.data?.length ?? w.zeroBytes ?? 0;
      const first = Math.floor(w.offsetBytes / grainBytes);
      const last = Math.floor((w.offsetBytes + length - 1) / grainBytes);
      if (w.data) image.set(w.data, w.offsetBytes);
      else image.fill(0, w.offsetBytes, w.offsetBytes + length);
      for (let g = first; g <= last; g++) {
        const whole = g * grainBytes >= w.offsetBytes && (g + 1) * grainBytes <= w.offsetBytes + length;
        // Whole grains zeroed/unmapped become SEsparse zero/unmap entries; anything else holds data.
        if (!w.data && whole && delta.format === 'seSparse') grains.set(g, w.unmap ? 'unmap' : 'zero');
        else grains.set(g, image.subarray(g * grainBytes, (g + 1) * grainBytes));
      }
    }
    // Grain contents are views of `image`: freeze them now.
    for (const [g, c] of grains) if (typeof c !== 'string') grains.set(g, Buffer.from(c));
    const name = `disk-${String(i + 1).padStart(6, '0')}`;
    const cid = 0x2000 + i;
    const extentName = delta.format === 'seSparse' ? `${name}-sesparse.vmdk` : `${name}-delta.vmdk`;
    const extent = delta.format === 'seSparse'
      ? seSparseExtent(capacityBytes, grains)
      : cowdExtent(capacityBytes, grains as Map<number, Uint8Array>);
    await writeFile(join(dir, extentName), extent);
    await writeFile(join(dir, `${name}.vmdk`), descriptorText({ cid, parentCid, createType: delta.format, parentHint: parent, extents: [`RW ${sectors} ${delta.format === 'seSparse' ? 'SESPARSE' : 'VMFSSPARSE'} "${extentName}"`] }));
    images.push(Buffer.from(image));
    image = Buffer.from(image);
    parent = `${name}.vmdk`;
    parentCid = cid;
  }
  return { top: join(dir, parent), images, sha256: images.map((b) => createHash('sha256').update(b).digest('hex')) };
}
