// Proof that the lab's snapshot deltas are real VMware formats: after every snapshot and
// every removal, each snapshot's delta chain (and the live disk's) converts with qemu-img -
// which reads VMFSSPARSE and SESPARSE itself - and reads through vcbt's chain reader to the
// lab's own sha256 of that disk state. Guest writes land in partly written grains, zeroing
// and unmap included.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { openVmdkChain } from '../../src/vmdk/chain.ts';
import { localVmdkFiles } from '../../src/vmdk/files.ts';
import { seededRandom } from '../helpers/seeded-random.ts';
import { startLab, type Lab } from './lab.ts';

const run = promisify(execFile);
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const KiB = 1024;
const MiB = 1024 * KiB;
const key = 2000;
const capacityBytes = 3 * MiB + 5 * KiB;

interface Snap {
  moref: string;
  disks: { key: number; file: string }[];
}

let lab: Lab;
let scratch: string;
before(async () => {
  lab = await startLab({ diskSizes: [capacityBytes, 1 * MiB] });
  scratch = await mkdtemp(join(tmpdir(), 'vcbt-lab-deltas-'));
});
after(async () => {
  await lab?.stop();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/** sha256 of the chain below a descriptor, read by qemu-img and by vcbt: both must agree. */
async function chainSha256(descriptor: string): Promise<string> {
  const out = join(scratch, 'convert.raw');
  await run('qemu-img', ['convert', '-f', 'vmdk', '-O', 'raw', descriptor, out]);
  const viaQemu = sha256(await readFile(out));
  const chain = await openVmdkChain({ files: localVmdkFiles(), descriptor });
  try {
    const bytes = Buffer.alloc(chain.capacityBytes);
    await chain.read(0, bytes);
    assert.equal(sha256(bytes), viaQemu, `vcbt and qemu-img read ${descriptor} alike`);
  } finally {
    await chain.close();
  }
  return viaQemu;
}

async function checkAll(vm: string): Promise<void> {
  const snaps = (await lab.snapshots(vm)) as Snap[];
  for (const snap of snaps) {
    const file = snap.disks.find((d) => d.key === key)!.file;
    assert.equal(await chainSha256(await lab.localPath(file)), (await lab.sha256(vm, key, snap.moref)).sha256, `snapshot ${snap.moref} (${file})`);
  }
  const info = await lab.refreshInfo();
  const live = info.vms.find((v) => v.name === vm)!.disks.find((d) => d.key === key)!.file;
  assert.equal(await chainSha256(await lab.localPath(live)), (await lab.sha256(vm, key)).sha256, `live disk (${live})`);
}

async function guestRound(vm: string, random: () => number): Promise<void> {
  const int = (n: number) => Math.floor(random() * n);
  for (let i = 0; i < 6; i++) {
    const offset = int(capacityBytes - 40 * KiB);
    const length = 1 + int(32 * KiB);
    const choice = int(4);
    if (choice === 0) await lab.unmap(vm, key, offset - (offset % 4096), 8 * KiB + int(3) * 4096);
    else if (choice === 1) await lab.write(vm, key, offset, Buffer.alloc(length));
    else await lab.write(vm, key, offset, Buffer.from(Array.from({ length }, () => 1 + int(255))));
  }
}

for (const [n, { vm, format }] of [
  { vm: 'DC0_H0_VM0', format: 'vmfsSparse' as const },
  { vm: 'DC0_H0_VM0', format: 'seSparse' as const },
].entries()) {
  test(`lab deltas (${format}): every snapshot's chain converts with qemu-img to the lab's sha256, through writes and removals`, async () => {
    await lab.deltaFormat(vm, format);
    const random = seededRandom(100 + n);
    await guestRound(vm, random);
    const snaps: Snap[] = [];
    for (let i = 0; i < 4; i++) {
      snaps.push((await lab.govmomi(['snapshot-create', vm, `s${i}`])) as Snap);
      await guestRound(vm, random);
      await checkAll(vm);
    }
    const dir = await lab.localPath(snaps[0].disks.find((d) => d.key === key)!.file.replace(/[^/]+$/, ''));
    const extents = (await readdir(dir)).filter((f) => f.endsWith(format === 'seSparse' ? '-sesparse.vmdk' : '-delta.vmdk'));
    assert.equal(extents.length, 4 * 2, `a ${format} extent per snapshot and disk: ${extents.join(', ')}`);
    // Remove one in the middle, then the oldest, then the rest: consolidation keeps every chain exact.
    for (const s of [snaps[2], snaps[0]]) {
      assert.deepEqual(await lab.govmomi(['snapshot-remove', vm, s.moref]), { ok: true });
      await guestRound(vm, random);
      await checkAll(vm);
    }
    for (const s of [snaps[1], snaps[3]]) assert.deepEqual(await lab.govmomi(['snapshot-remove', vm, s.moref]), { ok: true });
    await checkAll(vm);
    const left = (await readdir(dir)).filter((f) => /^disk1/.test(f)).sort();
    assert.deepEqual(left, ['disk1-flat.vmdk', 'disk1.vmdk']);
  });
}
