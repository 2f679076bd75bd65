// A disk in memory for server tests, with a known allocation map: bytes outside `allocated`
// are zero and reported as holes, so what nbdinfo --map and nbdcopy see can be predicted.

import { subtract, union, type Extent } from '../../src/extents/extent.ts';
import type { AllocationExtent, Disk } from '../../src/transport/disk.ts';

export class MemoryDisk implements Disk {
  readonly bytes: Buffer;
  readonly sizeBytes: number;
  allocated: Extent[];
  /** When set, reads overlapping this offset fail with this error. */
  failReadAt: { offsetBytes: number; error: Error } | null = null;

  constructor(sizeBytes: number, allocated: Extent[], fill: (offsetBytes: number) => number = (i) => (i * 7 + 3) & 0xff) {
    this.sizeBytes = sizeBytes;
    this.bytes = Buffer.alloc(sizeBytes);
    this.allocated = union(allocated);
    for (const e of this.allocated) for (let i = e.offsetBytes; i < e.offsetBytes + e.lengthBytes; i++) this.bytes[i] = fill(i) || 1;
  }

  async read(offsetBytes: number, target: Uint8Array): Promise<void> {
    await Promise.resolve();
    const f = this.failReadAt;
    if (f && f.offsetBytes >= offsetBytes && f.offsetBytes < offsetBytes + target.length) throw f.error;
    target.set(this.bytes.subarray(offsetBytes, offsetBytes + target.length));
  }

  async allocation(range: Extent): Promise<AllocationExtent[]> {
    await Promise.resolve();
    const data = union(this.allocated.map((e) => ({
      offsetBytes: Math.max(e.offsetBytes, range.offsetBytes),
      lengthBytes: Math.min(e.offsetBytes + e.lengthBytes, range.offsetBytes + range.lengthBytes) - Math.max(e.offsetBytes, range.offsetBytes),
    })).filter((e) => e.lengthBytes > 0));
    const holes = subtract([range], data);
    return [
      ...data.map((e) => ({ ...e, hole: false, zero: false })),
      ...holes.map((e) => ({ ...e, hole: true, zero: true })),
    ].sort((a, b) => a.offsetBytes - b.offsetBytes);
  }

  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    await Promise.resolve();
    this.bytes.set(data, offsetBytes);
    this.allocated = union([...this.allocated, { offsetBytes, lengthBytes: data.length }]);
  }

  async writeZeroes(offsetBytes: number, lengthBytes: number): Promise<void> {
    await Promise.resolve();
    this.bytes.fill(0, offsetBytes, offsetBytes + lengthBytes);
    this.allocated = subtract(this.allocated, [{ offsetBytes, lengthBytes }]);
  }

  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}
