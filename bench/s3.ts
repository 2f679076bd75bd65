// Backup and restore throughput to Ceph RGW next to the local repository and next to restic
// on the same RGW bucket, with S3 requests per GiB (bench/README.md, "Object storage").
//
// Usage: node bench/s3.ts [--size-mib N] [--reps N]
// One image file (half random, a quarter compressible text, a quarter zeros; default 512 MiB)
// is backed up in full, then restored, by: vcbt into a local directory, vcbt into
// s3://bucket/vcbt (the repository API in this process, chunk workers as in `vcbt backup`),
// and restic 0.14 into s3:http://.../bucket/restic (its own process). Each restore is checked
// by sha256. Requests are the gateway's own count (radosgw `perf dump`, rgw.req) across each
// step, so they include every HEAD, GET, PUT and LIST of that contender.
// The gateway is the one-node test cluster of test/s3/rgw.ts (memstore, loopback), so times
// are CPU-bound on this machine, not network-bound: they compare the clients' work.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { promisify } from 'node:util';
import { Repository } from '../src/repository/repository.ts';
import type { DiskSource, DiskTarget } from '../src/repository/disk-source.ts';
import { startRgw, type Rgw } from '../test/s3/rgw.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;

async function fileSha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const piece of createReadStream(file)) hash.update(piece as Buffer);
  return hash.digest('hex');
}

async function makeImage(file: string, sizeBytes: number): Promise<void> {
  const handle = await fsp.open(file, 'w', 0o600);
  try {
    const text = Buffer.from('vcbt object storage bench line of text, compressible enough. '.repeat(70000));
    for (let at = 0, k = 0; at < sizeBytes; at += 4 * MiB, k++) {
      const n = Math.min(4 * MiB, sizeBytes - at);
      const kind = k % 4;
      const piece = kind < 2 ? randomBytes(n) : kind === 2 ? text.subarray(0, n) : Buffer.alloc(n);
      await handle.write(piece, 0, n, at);
    }
  } finally {
    await handle.close();
  }
}

async function requests(rgw: Rgw): Promise<number> {
  const { stdout } = await run('ceph', ['--admin-daemon', path.join(rgw.dir, 'run', 'client.rgw.asok'), 'perf', 'dump']);
  return (JSON.parse(stdout) as { rgw: { req: number } }).rgw.req;
}

interface Result {
  contender: string;
  step: string;
  seconds: number;
  mibPerSecond: number;
  requests: number;
  requestsPerGiB: number;
}

async function measure(rgw: Rgw | undefined, sizeBytes: number, contender: string, step: string, work: () => Promise<void>): Promise<Result> {
  const before = rgw ? await requests(rgw) : 0;
  const start = process.hrtime.bigint();
  await work();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const count = rgw ? (await requests(rgw)) - before : 0;
  return { contender, step, seconds, mibPerSecond: sizeBytes / MiB / seconds, requests: count, requestsPerGiB: count / (sizeBytes / (1024 * MiB)) };
}

async function vcbtBackupRestore(location: string, env: NodeJS.ProcessEnv, image: string, sizeBytes: number, restoreFile: string, rgw: Rgw | undefined, name: string): Promise<Result[]> {
  await Repository.init(location, { env });
  const repo = await Repository.open(location, { env });
  const results: Result[] = [];
  try {
    const source = await fsp.open(image, 'r');
    let pointId = '';
    try {
      const reader: DiskSource = {
        read: async (offsetBytes, target) => {
          await source.read(target, 0, target.length, offsetBytes);
        },
      };
      results.push(
        await measure(rgw, sizeBytes, name, 'full backup', async () => {
          const writer = await repo.beginRestorePoint({ vm: { id: 'bench', name: 'bench' } });
          await writer.writeDisk({ deviceKey: 1, label: 'disk', capacityBytes: sizeBytes, changeId: null, reader });
          pointId = await writer.commit();
        }),
      );
    } finally {
      await source.close();
    }
    const out = await fsp.open(restoreFile, 'w', 0o600);
    try {
      await out.truncate(sizeBytes);
      const target: DiskTarget = {
        write: async (offsetBytes, data) => {
          await out.write(data, 0, data.length, offsetBytes);
        },
      };
      results.push(
        await measure(rgw, sizeBytes, name, 'restore', async () => {
          const disk = await repo.openDisk(pointId, 1);
          try {
            await disk.restoreTo(target);
          } finally {
            await disk.close();
          }
          await out.sync();
        }),
      );
    } finally {
      await out.close();
    }
  } finally {
    await repo.close();
  }
  return results;
}

const { values } = parseArgs({ options: { 'size-mib': { type: 'string', default: '512' }, reps: { type: 'string', default: '1' } } });
const sizeBytes = Number(values['size-mib']) * MiB;
const reps = Number(values.reps);
const work = await fsp.mkdtemp(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'vcbt-s3-bench-'));
const rgw = await startRgw();
try {
  const image = path.join(work, 'disk.raw');
  await makeImage(image, sizeBytes);
  const expected = await fileSha256(image);
  const all: Result[] = [];
  for (let rep = 0; rep < reps; rep++) {
    const restored = path.join(work, 'restored.raw');
    const local = await vcbtBackupRestore(path.join(work, `local-${rep}`), process.env, image, sizeBytes, restored, undefined, 'vcbt local');
    if ((await fileSha256(restored)) !== expected) throw new Error('vcbt local restore differs');
    const s3 = await vcbtBackupRestore(`s3://${rgw.plainBucket}/vcbt-${rep}`, rgw.env(), image, sizeBytes, restored, rgw, 'vcbt s3');
    if ((await fileSha256(restored)) !== expected) throw new Error('vcbt s3 restore differs');
    const resticEnv = { ...process.env, AWS_ACCESS_KEY_ID: rgw.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey, RESTIC_PASSWORD: 'bench', RESTIC_REPOSITORY: `s3:${rgw.endpoint}/${rgw.plainBucket}/restic-${rep}`, RESTIC_CACHE_DIR: path.join(work, `restic-cache-${rep}`) };
    await run('restic', ['init'], { env: resticEnv });
    const resticResults = [
      await measure(rgw, sizeBytes, 'restic s3', 'full backup', async () => {
        await run('restic', ['backup', '--quiet', image], { env: resticEnv, maxBuffer: 64 * MiB });
      }),
      await measure(rgw, sizeBytes, 'restic s3', 'restore', async () => {
        const target = path.join(work, `restic-restore-${rep}`);
        await run('restic', ['restore', 'latest', '--target', target], { env: resticEnv, maxBuffer: 64 * MiB });
        const file = path.join(target, image);
        await run('sync', [file]);
        if ((await fileSha256(file)) !== expected) throw new Error('restic restore differs');
        await fsp.rm(target, { recursive: true, force: true });
      }),
    ];
    all.push(...local, ...s3, ...resticResults);
  }
  process.stdout.write(`image ${sizeBytes / MiB} MiB (half random, a quarter text, a quarter zeros), ${reps} repetition(s), ${os.cpus().length} cores\n`);
  process.stdout.write('contender      step          seconds  MiB/s  requests  requests/GiB\n');
  for (const r of all) {
    process.stdout.write(`${r.contender.padEnd(14)} ${r.step.padEnd(12)} ${r.seconds.toFixed(1).padStart(8)} ${r.mibPerSecond.toFixed(0).padStart(6)} ${String(r.requests).padStart(9)} ${r.requestsPerGiB.toFixed(0).padStart(13)}\n`);
  }
} finally {
  await rgw.stop();
  await fsp.rm(work, { recursive: true, force: true });
}
