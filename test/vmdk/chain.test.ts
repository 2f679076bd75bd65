import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { openVmdkChain, type VmdkChain } from '../../src/vmdk/chain.ts';
import { localVmdkFiles } from '../../src/vmdk/files.ts';
import { seededRandom } from '../helpers/seeded-random.ts';
import { descriptorText, writeChain, type DeltaFormat, type DeltaSpec } from './delta-writer.ts';

const run = promisify(execFile);
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function withDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'vcbt-vmdk-'));
  try {
    await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function readAll(chain: VmdkChain, pieceBytes = 1 << 20): Promise<Buffer> {
  const out = Buffer.alloc(chain.capacityBytes);
  for (let at = 0; at < out.length; at += pieceBytes) await chain.read(at, out.subarray(at, Math.min(out.length, at + pieceBytes)));
  return out;
}

async function qemuSha256(top: string, dir: string): Promise<string> {
  const out = join(dir, 'qemu.raw');
  await run('qemu-img', ['convert', '-f', 'vmdk', '-O', 'raw', top, out]);
  return sha256(await readFile(out));
}

/** Random guest writes: unaligned data, partial grains, zeroing, unmap, overlaps. */
function randomDeltas(formats: DeltaFormat[], capacityBytes: number, seed: number): DeltaSpec[] {
  const random = seededRandom(seed);
  const int = (n: number) => Math.floor(random() * n);
  return formats.map((format) => {
    const writes: DeltaSpec['writes'] = [];
    for (let i = 0; i < 12; i++) {
      const offsetBytes = int(capacityBytes - 70_000);
      const length = 1 + int(65_536);
      const choice = int(5);
      if (choice === 0) writes.push({ offsetBytes, zeroBytes: length });
      else if (choice === 1) writes.push({ offsetBytes: offsetBytes - (offsetBytes % 4096), zeroBytes: 8192 * (1 + int(4)), unmap: true });
      else writes.push({ offsetBytes, data: Uint8Array.from({ length }, () => int(256)) });
    }
    return { format, writes };
  });
}

function randomBase(capacityBytes: number, seed: number): Uint8Array {
  const random = seededRandom(seed);
  const base = new Uint8Array(capacityBytes);
  for (let at = 0; at < capacityBytes; at += 65_536) if (random() < 0.5) base.fill(1 + Math.floor(random() * 255), at, at + 65_536);
  return base;
}

const chains: { name: string; formats: DeltaFormat[] }[] = [
  { name: 'one vmfsSparse delta', formats: ['vmfsSparse'] },
  { name: 'one SEsparse delta', formats: ['seSparse'] },
  { name: 'three vmfsSparse deltas', formats: ['vmfsSparse', 'vmfsSparse', 'vmfsSparse'] },
  { name: 'five SEsparse deltas', formats: ['seSparse', 'seSparse', 'seSparse', 'seSparse', 'seSparse'] },
  { name: 'mixed: vmfsSparse under SEsparse', formats: ['vmfsSparse', 'seSparse', 'vmfsSparse'] },
];

for (const [i, { name, formats }] of chains.entries()) {
  test(`chain reader: ${name} reads as qemu-img converts it, at every layer`, async () => {
    await withDir(async (dir) => {
      const capacityBytes = 4 * 1024 * 1024 + 3 * 1024; // not a multiple of 4 KiB grains
      const { top, sha256: expected } = await writeChain(dir, randomBase(capacityBytes, 10 + i), randomDeltas(formats, capacityBytes, 20 + i));
      for (let layer = formats.length; layer >= 0; layer--) {
        const descriptor = layer === 0 ? join(dir, 'disk.vmdk') : join(dir, `disk-${String(layer).padStart(6, '0')}.vmdk`);
        const chain = await openVmdkChain({ files: localVmdkFiles(), descriptor });
        try {
          assert.equal(chain.layers.length, layer + 1);
          assert.equal(sha256(await readAll(chain, 100_000)), expected[layer], `vcbt reads layer ${layer}`);
        } finally {
          await chain.close();
        }
        assert.equal(await qemuSha256(descriptor, dir), expected[layer], `qemu-img reads layer ${layer}`);
      }
      assert.equal(top, join(dir, `disk-${String(formats.length).padStart(6, '0')}.vmdk`));
    });
  });
}

test('chain reader: only the grains a range needs are read, and grain tables come from the cache', async () => {
  await withDir(async (dir) => {
    const capacityBytes = 8 * 1024 * 1024;
    const data = Buffer.alloc(8192, 7);
    const { top } = await writeChain(dir, new Uint8Array(capacityBytes), [{ format: 'seSparse', writes: [{ offsetBytes: 1 << 20, data }] }]);
    const chain = await openVmdkChain({ files: localVmdkFiles(), descriptor: top });
    try {
      const target = Buffer.alloc(16384);
      await chain.read((1 << 20) - 4096, target);
      assert.deepEqual(target, Buffer.concat([Buffer.alloc(4096), data, Buffer.alloc(4096)]));
      // One read from the delta's grains, two from the flat base around it.
      assert.equal(chain.dataReads, 3);
      assert.equal(chain.dataBytesRead, 16384);
      await chain.read(0, Buffer.alloc(4096));
      assert.equal(chain.tableCache.tablesRead, 1);
      const runs = await chain.map(0, capacityBytes);
      assert.deepEqual(runs.map((r) => [r.offsetBytes, r.lengthBytes, r.layer]), [[0, 1 << 20, 1], [1 << 20, 8192, 0], [(1 << 20) + 8192, capacityBytes - (1 << 20) - 8192, 1]]);
    } finally {
      await chain.close();
    }
  });
});

/** Builds a one-delta chain and lets `damage` change its files, then expects `code`. */
async function expectBroken(format: DeltaFormat, damage: (dir: string) => Promise<void>, code: string, message: RegExp, readAfterOpen = false): Promise<void> {
  await withDir(async (dir) => {
    const capacityBytes = 2 * 1024 * 1024;
    const { top } = await writeChain(dir, new Uint8Array(capacityBytes).fill(5), [{ format, writes: [{ offsetBytes: 4096, data: Buffer.alloc(4096, 9) }] }]);
    await damage(dir);
    const attempt = async () => {
      const chain = await openVmdkChain({ files: localVmdkFiles(), descriptor: top });
      try {
        if (readAfterOpen) await chain.read(0, Buffer.alloc(16384));
      } finally {
        await chain.close();
      }
    };
    await assert.rejects(attempt, (e: { code?: string; message?: string; context?: { file?: string; offsetBytes?: number } }) => {
      assert.equal(e.code, code, e.message);
      assert.match(e.message ?? '', message);
      assert.ok(e.context?.file, 'names the file');
      assert.equal(typeof e.context?.offsetBytes, 'number', 'names the offset');
      return true;
    });
  });
}

async function patch(path: string, offsetBytes: number, bytes: number[]): Promise<void> {
  const data = await readFile(path);
  data.set(bytes, offsetBytes);
  await writeFile(path, data);
}

test('malformed chains: wrong magic (COWD and SEsparse)', async () => {
  await expectBroken('vmfsSparse', (dir) => patch(join(dir, 'disk-000001-delta.vmdk'), 0, [0x58]), 'VMDK_MAGIC', /disk-000001-delta\.vmdk.*"XOWD"/);
  await expectBroken('seSparse', (dir) => patch(join(dir, 'disk-000001-sesparse.vmdk'), 0, [0]), 'VMDK_MAGIC', /constant header magic/);
  await expectBroken('seSparse', (dir) => patch(join(dir, 'disk-000001-sesparse.vmdk'), 512, [0]), 'VMDK_MAGIC', /volatile header magic/);
});

test('malformed chains: truncated grain table and grain directory', async () => {
  // COWD: directory at sector 4 (1 entry), table at sector 5 (16 KiB): cut inside the table.
  await expectBroken('vmfsSparse', (dir) => truncate(join(dir, 'disk-000001-delta.vmdk'), 5 * 512 + 1000), 'VMDK_TRUNCATED', /grain directory entry 0/, true);
  await expectBroken('vmfsSparse', (dir) => truncate(join(dir, 'disk-000001-delta.vmdk'), 2050), 'VMDK_TRUNCATED', /grain directory at offset 2048/);
  await expectBroken('seSparse', (dir) => truncate(join(dir, 'disk-000001-sesparse.vmdk'), 9 * 512 + 100), 'VMDK_TRUNCATED', /grain directory entry 0/, true);
});

test('malformed chains: a grain table or grain entry pointing outside the file', async () => {
  // COWD grain table entry 8 (the grain at 4096) -> sector 0x00ffffff.
  await expectBroken('vmfsSparse', (dir) => patch(join(dir, 'disk-000001-delta.vmdk'), 5 * 512 + 8 * 4, [0xff, 0xff, 0xff, 0]), 'VMDK_OUT_OF_BOUNDS', /grain 8 .*outside the file/, true);
  // COWD directory entry 0 -> far beyond the end.
  await expectBroken('vmfsSparse', (dir) => patch(join(dir, 'disk-000001-delta.vmdk'), 4 * 512, [0, 0, 0, 1]), 'VMDK_OUT_OF_BOUNDS', /grain directory entry 0/, true);
  // SEsparse grain table entry 1 -> grain number far beyond the grains area.
  await expectBroken('seSparse', (dir) => patch(join(dir, 'disk-000001-sesparse.vmdk'), 9 * 512 + 8, [0, 0, 0, 1, 0, 0, 0, 0x30]), 'VMDK_OUT_OF_BOUNDS', /grains area/, true);
  // SEsparse grain table entry of type 7.
  await expectBroken('seSparse', (dir) => patch(join(dir, 'disk-000001-sesparse.vmdk'), 9 * 512 + 8, [0, 0, 0, 0, 0, 0, 0, 0x70]), 'VMDK_GRAIN_ENTRY', /no known type/, true);
});

test('malformed chains: CID mismatch, cyclic parent hint, unknown extent type', async () => {
  await expectBroken('vmfsSparse', (dir) => writeFile(join(dir, 'disk.vmdk'), descriptorText({ cid: 0x1234, createType: 'vmfs', extents: [`RW ${4096} VMFS "disk-flat.vmdk"`] })), 'VMDK_CID_MISMATCH', /disk-000001\.vmdk was created on .*disk\.vmdk with CID 00001000, but .* now has CID 00001234/);
  await expectBroken('vmfsSparse', (dir) => writeFile(join(dir, 'disk.vmdk'), descriptorText({ cid: 0x1000, parentCid: 0x2000, createType: 'vmfsSparse', parentHint: 'disk-000001.vmdk', extents: [`RW ${4096} VMFS "disk-flat.vmdk"`] })), 'VMDK_PARENT_CYCLE', /leads back/);
  await expectBroken('vmfsSparse', (dir) => writeFile(join(dir, 'disk.vmdk'), descriptorText({ cid: 0x1000, createType: 'vmfsRawDeviceMap', extents: [`RW ${4096} VMFSRDM "disk-rdm.vmdk"`] })), 'VMDK_EXTENT_TYPE', /VMFSRDM/);
  await expectBroken('seSparse', (dir) => patch(join(dir, 'disk-000001-sesparse.vmdk'), 8 * 3, [16]), 'VMDK_HEADER', /grain size 16/);
});
