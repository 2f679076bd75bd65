// The streamOptimized encoder against qemu-img, which reads VMware's format on its own: every
// encoded disk converts back to the exact bytes (sha256) - capacities that are not a multiple
// of a grain, more than one grain table, a source that tells its zero ranges and one that does
// not; zero grains take no room; the stream's metadata sits where the specification says.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { encodeStreamOptimized, grainBytes, type StreamSource, type StreamStats } from '../../src/vmdk/stream-optimized.ts';
import { seededRandom } from '../helpers/seeded-random.ts';

const run = promisify(execFile);
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function withDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'vcbt-streamopt-'));
  try {
    await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A disk in memory with scattered random writes (some grain-crossing, some tiny). */
function sparseDisk(capacityBytes: number, seed: number, writes: number): Buffer {
  const disk = Buffer.alloc(capacityBytes);
  const random = seededRandom(seed);
  const int = (n: number) => Math.floor(random() * n);
  for (let i = 0; i < writes; i++) {
    const length = 1 + int(200_000);
    const at = int(capacityBytes - length);
    for (let j = 0; j < length; j++) disk[at + j] = int(4) === 0 ? 0 : int(256);
  }
  disk[capacityBytes - 1] = 0x5a; // the partial last grain
  return disk;
}

function memorySource(disk: Buffer, withAllocation: boolean): StreamSource & { reads: number } {
  const source = {
    sizeBytes: disk.length,
    reads: 0,
    async read(offsetBytes: number, target: Uint8Array) {
      source.reads++;
      target.set(disk.subarray(offsetBytes, offsetBytes + target.length));
    },
  };
  if (!withAllocation) return source;
  return Object.assign(source, {
    // Zero runs of whole 64 KiB pieces, as a repository's zero chunks are.
    async allocation(range: { offsetBytes: number; lengthBytes: number }) {
      const out: Array<{ offsetBytes: number; lengthBytes: number; zero: boolean }> = [];
      for (let at = range.offsetBytes; at < range.offsetBytes + range.lengthBytes; ) {
        const end = Math.min(range.offsetBytes + range.lengthBytes, (Math.floor(at / 65536) + 1) * 65536);
        const zero = disk.subarray(at, end).every((b) => b === 0);
        const last = out.at(-1);
        if (last && last.zero === zero) last.lengthBytes += end - at;
        else out.push({ offsetBytes: at, lengthBytes: end - at, zero });
        at = end;
      }
      return out;
    },
  });
}

async function encodeToFile(source: StreamSource, file: string, stats?: StreamStats): Promise<void> {
  await pipeline(Readable.from(encodeStreamOptimized(source, { fileName: 'disk.vmdk', grainsInFlight: 4 }, stats)), createWriteStream(file));
}

async function qemuRawSha256(vmdk: string, dir: string): Promise<string> {
  const out = join(dir, 'out.raw');
  await run('qemu-img', ['convert', '-f', 'vmdk', '-O', 'raw', vmdk, out]);
  return sha256(await readFile(out));
}

const cases = [
  { name: 'a capacity that is not a multiple of a grain (20 MiB + 3 KiB)', capacityBytes: 20 * 1048576 + 3072, writes: 30, allocation: false },
  { name: 'two grain tables and a sparse middle (40 MiB), with zero ranges told', capacityBytes: 40 * 1048576, writes: 12, allocation: true },
  { name: 'a one-sector disk', capacityBytes: 512, writes: 0, allocation: false },
];

for (const [i, c] of cases.entries()) {
  test(`streamOptimized: ${c.name} converts with qemu-img to the same bytes`, async () => {
    await withDir(async (dir) => {
      const disk = sparseDisk(c.capacityBytes, 40 + i, c.writes);
      const vmdk = join(dir, 'disk.vmdk');
      const stats: StreamStats = { streamBytes: 0, grainsWritten: 0, grainsZero: 0 };
      await encodeToFile(memorySource(disk, c.allocation), vmdk, stats);
      assert.equal(await qemuRawSha256(vmdk, dir), sha256(disk));
      const info = JSON.parse((await run('qemu-img', ['info', '--output=json', vmdk])).stdout) as { 'virtual-size': number; format: string; 'format-specific': { data: { 'create-type': string } } };
      assert.equal(info['virtual-size'], c.capacityBytes);
      assert.equal(info['format-specific'].data['create-type'], 'streamOptimized');
      const grains = Math.ceil(c.capacityBytes / grainBytes);
      let nonZero = 0;
      for (let g = 0; g < grains; g++) if (!disk.subarray(g * grainBytes, (g + 1) * grainBytes).every((b) => b === 0)) nonZero++;
      assert.equal(stats.grainsWritten, nonZero);
      assert.equal(stats.grainsZero, grains - nonZero);
      assert.equal((await readFile(vmdk)).length, stats.streamBytes);
    });
  });
}

test('streamOptimized: an all-zero disk is metadata only, and a source with allocation is not read where it is zero', async () => {
  await withDir(async (dir) => {
    const disk = Buffer.alloc(64 * 1048576);
    const source = memorySource(disk, true);
    const vmdk = join(dir, 'zero.vmdk');
    const stats: StreamStats = { streamBytes: 0, grainsWritten: 0, grainsZero: 0 };
    await encodeToFile(source, vmdk, stats);
    assert.equal(source.reads, 0);
    assert.equal(stats.grainsWritten, 0);
    assert.ok(stats.streamBytes < 64 * 1024, `${stats.streamBytes} bytes of stream`);
    assert.equal(await qemuRawSha256(vmdk, dir), sha256(disk));
  });
});

test('streamOptimized: layout per the specification (header, footer, markers, end of stream)', async () => {
  await withDir(async (dir) => {
    const disk = sparseDisk(3 * 1048576, 7, 3);
    const vmdk = join(dir, 'layout.vmdk');
    await encodeToFile(memorySource(disk, false), vmdk);
    const bytes = await readFile(vmdk);
    assert.equal(bytes.subarray(0, 4).toString('latin1'), 'KDMV');
    assert.equal(bytes.readUInt32LE(4), 3, 'version 3');
    assert.equal(bytes.readUInt32LE(8), 0x30001, 'newline test, compressed grains, markers');
    assert.equal(bytes.readBigUInt64LE(12), BigInt(disk.length / 512), 'capacity in sectors');
    assert.equal(bytes.readBigUInt64LE(20), 128n, 'grain of 128 sectors');
    assert.equal(bytes.readBigUInt64LE(56), 0xffffffffffffffffn, 'GD_AT_END in the header');
    assert.equal(bytes.readUInt16LE(77), 1, 'deflate');
    assert.match(bytes.subarray(512, 1024).toString('latin1'), /createType="streamOptimized"/);
    const end = bytes.length;
    assert.ok(bytes.subarray(end - 512).every((b) => b === 0), 'end-of-stream marker');
    const footer = bytes.subarray(end - 1024, end - 512);
    const footerMarker = bytes.subarray(end - 1536, end - 1024);
    assert.equal(footerMarker.readUInt32LE(12), 3, 'footer marker');
    assert.equal(footer.subarray(0, 4).toString('latin1'), 'KDMV');
    const gdOffset = Number(footer.readBigUInt64LE(56));
    assert.equal(bytes.readUInt32LE((gdOffset - 1) * 512 + 12), 2, 'GD marker before the GD');
    const gtOffset = bytes.readUInt32LE(gdOffset * 512);
    assert.equal(bytes.readUInt32LE((gtOffset - 1) * 512 + 12), 1, 'GT marker before the GT');
    let grains = 0;
    for (let i = 0; i < 512; i++) {
      const entry = bytes.readUInt32LE(gtOffset * 512 + 4 * i);
      if (entry === 0) continue;
      grains++;
      assert.ok(entry >= 21, 'grains start after the header and descriptor');
      assert.equal(bytes.readBigUInt64LE(entry * 512), BigInt(i * 128), `grain marker ${i} names its LBA`);
    }
    assert.ok(grains > 0);
  });
});
