// Random guest writes for the job tests: per disk of a VM, the last byte (a disk whose size
// is not a multiple of the CBT block), a write straddling a 64 KiB boundary, and `count`
// writes of random length and place, from a seeded generator so a failing pattern replays.
import { randomBytes } from 'node:crypto';
import { seededRandom } from '../helpers/seeded-random.ts';
import type { Lab } from './lab.ts';

export async function randomGuestWrites(lab: Lab, vm: string, seed: number, options: { count: number; maxWriteBytes: number }): Promise<void> {
  const rand = seededRandom(seed);
  const disks = lab.info.vms.find((v) => v.name === vm)?.disks ?? [];
  for (const disk of disks) {
    const capacity = disk.capacityBytes;
    const writes: Array<[number, number]> = [
      [capacity - 1, 1],
      [65536 - 100, 300],
    ];
    for (let i = 0; i < options.count; i++) {
      const length = 1 + Math.floor(rand() * options.maxWriteBytes);
      writes.push([Math.floor(rand() * (capacity - length)), length]);
    }
    for (const [offset, length] of writes) await lab.write(vm, disk.key, offset, randomBytes(length));
  }
}
