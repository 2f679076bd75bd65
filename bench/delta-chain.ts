// Reading a disk through a three-deep delta chain over datastore HTTP (vcbt's http transport,
// src/vmdk), next to `qemu-img convert` of the same chain from the lab's local files, and next
// to reading the flat base over HTTP. Every result is checked against the lab's sha256.
// Usage: node bench/delta-chain.ts [sizeMiB=256] [format=vmfsSparse|seSparse] [writtenPercent=10]
import { defaultMaxInFlight } from '../src/jobs/copy-areas.ts';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { openSnapshotDisk } from '../src/jobs/snapshot-source.ts';
import { connect, createSnapshot, datacenterOf, findVm, readSnapshotDisks, removeSnapshot } from '../src/vsphere/vsphere.ts';
import { startLab } from '../test/lab/lab.ts';
import { seededRandom } from '../test/helpers/seeded-random.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const sizeMiB = Number(process.argv[2] ?? 256);
const format = (process.argv[3] ?? 'vmfsSparse') as 'vmfsSparse' | 'seSparse';
const writtenPercent = Number(process.argv[4] ?? 10);
const sizeBytes = sizeMiB * MiB;
const name = 'DC0_H0_VM0';
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

const lab = await startLab({ diskSizes: [sizeBytes, MiB] });
const scratch = await mkdtemp(join(tmpdir(), 'vcbt-bench-chain-'));
try {
  const key = lab.info.vms.find((v) => v.name === name)!.disks[0].key;
  await lab.deltaFormat(name, format);
  for (let at = 0; at < sizeBytes; at += 16 * MiB) await lab.write(name, key, at, randomBytes(Math.min(16 * MiB, sizeBytes - at)));
  const session = await connect({ server: lab.info.sdk, username: lab.info.username, password: lab.info.password, thumbprint: lab.info.thumbprintSha1 });
  const vm = await findVm(session, { name });
  const datacenter = (await datacenterOf(session, vm.moref)).name;
  const random = seededRandom(7);
  const snapshots: { type: string; value: string }[] = [];
  // Three snapshots, each followed by writes of writtenPercent of the disk in 64 KiB pieces.
  for (let i = 0; i < 3; i++) {
    snapshots.push(await createSnapshot(session, vm, { purpose: 'bench' }));
    for (let n = 0; n < (sizeBytes * writtenPercent) / 100 / 65536; n++) await lab.write(name, key, Math.floor(random() * (sizeBytes / 4096 - 16)) * 4096, randomBytes(65536));
  }
  const top = await createSnapshot(session, vm, { purpose: 'bench' });
  const readAll = async (snapshot: { type: string; value: string }) => {
    const disk = (await readSnapshotDisks(session, vm, snapshot)).find((d) => d.key === key)!;
    const reader = await openSnapshotDisk({ session, vm, snapshot, disk, datacenter }, { transport: 'http' });
    const out = Buffer.alloc(reader.sizeBytes);
    let next = 0;
    const worker = async () => {
      while (next < out.length) {
        const at = next;
        next += MiB;
        await reader.read(at, out.subarray(at, Math.min(out.length, at + MiB)));
      }
    };
    // As many reads in flight as a copy keeps (src/jobs/copy-areas.ts).
    await Promise.all(Array.from({ length: defaultMaxInFlight }, worker));
    await reader.close();
    return out;
  };
  const timed = async (label: string, body: () => Promise<Buffer>, want: string) => {
    const start = performance.now();
    const bytes = await body();
    const ms = performance.now() - start;
    if (sha(bytes) !== want) throw new Error(`${label}: sha256 differs from the lab's`);
    console.log(`${label.padEnd(44)} ${(ms / 1000).toFixed(2)} s  ${(sizeMiB / (ms / 1000)).toFixed(0)} MiB/s`);
  };
  console.log(`${sizeMiB} MiB disk, ${format}, 3 deltas each rewriting ${writtenPercent} % in 64 KiB writes`);
  await timed('vcbt http, three-deep chain', () => readAll(top), (await lab.sha256(name, key, top.value)).sha256);
  await timed('vcbt http, flat base (no earlier snapshot)', () => readAll(snapshots[0]), (await lab.sha256(name, key, snapshots[0].value)).sha256);
  const descriptor = await lab.localPath((await lab.snapshots(name)).at(-1)!.disks.find((d) => d.key === key)!.file);
  const convertStart = performance.now();
  await run('qemu-img', ['convert', '-f', 'vmdk', '-O', 'raw', descriptor, join(scratch, 'out.raw')]);
  const convertMs = performance.now() - convertStart;
  if (sha(await readFile(join(scratch, 'out.raw'))) !== (await lab.sha256(name, key, top.value)).sha256) throw new Error('qemu-img: sha256 differs from the lab\'s');
  console.log(`${'qemu-img convert, same chain, local files'.padEnd(44)} ${(convertMs / 1000).toFixed(2)} s  ${(sizeMiB / (convertMs / 1000)).toFixed(0)} MiB/s`);
  for (const s of [top, ...snapshots.reverse()]) await removeSnapshot(session, vm, s);
  await session.logout();
} finally {
  await lab.stop();
  await rm(scratch, { recursive: true, force: true });
}
