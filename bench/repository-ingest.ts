// Repository benchmark (run by hand: node_modules/.bin/node bench/repository-ingest.ts).
//
// 1. Makes a disk image (default 1 GiB; BENCH_SIZE_MIB to change) of a realistic mix: runs
//    of zeros (unallocated space), text-like compressible data and random (already
//    compressed or encrypted) data, in runs of 64 KiB .. 8 MiB.
// 2. Ingest (full backup) and restore throughput at the default chunk size, next to `cp`
//    and `zstd -1` on the same file (every tool ends with an fsync of its output).
// 3. For chunk sizes 64 KiB .. 4 MiB: full-backup and restore throughput, chunk files, stored bytes, and
//    the bytes stored per changed byte for scattered 64 KiB changes (an incremental).
// Results print as a Markdown table (pasted into bench/README.md).
import { execFileSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { union, type Extent } from '../src/extents/extent.ts';
import type { DiskSource, DiskTarget } from '../src/repository/disk-source.ts';
import { defaultChunkBytes, Repository } from '../src/repository/repository.ts';

const MiB = 1024 * 1024;
const sizeBytes = Number(process.env.BENCH_SIZE_MIB ?? 1024) * MiB;
const changeBytes = 64 * 1024;
const changeCount = Number(process.env.BENCH_CHANGES ?? 256);
const chunkSizes = [64 * 1024, 256 * 1024, MiB, 4 * MiB];
const work = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'vcbt-bench-'));

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

function mibPerS(bytes: number, s: number): string {
  return (bytes / MiB / s).toFixed(0);
}

function textPool(): Buffer {
  const words = ['the', 'disk', 'backup', 'virtual', 'machine', 'log', 'error', 'INFO', '2026-11-25', 'user', 'GET /index.html', '200', 'kernel:', 'systemd[1]:', 'Started', 'session'];
  let text = '';
  while (text.length < 4 * MiB) text += `${words[randomInt(words.length)]}${randomInt(10) === 0 ? '\n' : ' '}${randomInt(4) === 0 ? randomInt(100000) + ' ' : ''}`;
  return Buffer.from(text);
}

function makeImage(file: string): { zero: number; text: number; random: number } {
  const pool = textPool();
  const fd = fs.openSync(file, 'w');
  const mix = { zero: 0, text: 0, random: 0 };
  for (let at = 0; at < sizeBytes; ) {
    const n = Math.min(sizeBytes - at, 64 * 1024 * (1 + randomInt(128)));
    const kind = randomInt(100);
    if (kind < 35) mix.zero += n; // left as a hole, reads as zeros
    else if (kind < 75) {
      for (let done = 0; done < n; ) {
        const from = randomInt(pool.length - MiB);
        const piece = Math.min(n - done, MiB);
        fs.writeSync(fd, pool, from, piece, at + done);
        done += piece;
      }
      mix.text += n;
    } else {
      fs.writeSync(fd, randomBytes(n), 0, n, at);
      mix.random += n;
    }
    at += n;
  }
  fs.ftruncateSync(fd, sizeBytes);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  return mix;
}

function fileSource(fd: number): DiskSource {
  return {
    async read(offsetBytes, target) {
      let done = 0;
      while (done < target.length) {
        const n = await new Promise<number>((resolve, reject) => fs.read(fd, target, done, target.length - done, offsetBytes + done, (e, r) => (e ? reject(e) : resolve(r))));
        if (n === 0) throw new Error(`short read at ${offsetBytes + done}`);
        done += n;
      }
    },
  };
}

function fileTarget(fd: number): DiskTarget {
  return {
    async write(offsetBytes, data) {
      await new Promise<void>((resolve, reject) => fs.write(fd, data, 0, data.length, offsetBytes, (e) => (e ? reject(e) : resolve())));
    },
  };
}

function duBytes(dir: string): number {
  return Number(execFileSync('du', ['-sb', dir], { encoding: 'utf8' }).split('\t')[0]);
}

function countFiles(dir: string): number {
  return Number(execFileSync('sh', ['-c', `find "${dir}" -type f | wc -l`], { encoding: 'utf8' }).trim());
}

function timeShell(script: string): number {
  const start = process.hrtime.bigint();
  execFileSync('sh', ['-c', script], { stdio: 'inherit' });
  return seconds(start);
}

async function fullBackup(repoDir: string, chunkBytes: number, image: string): Promise<{ s: number; pointId: string; storedBytes: number }> {
  await Repository.init(repoDir, { chunkBytes });
  const repo = await Repository.open(repoDir);
  const fd = fs.openSync(image, 'r');
  try {
    const start = process.hrtime.bigint();
    const writer = await repo.beginRestorePoint({ vm: { id: 'bench', name: 'bench' } });
    const record = await writer.writeDisk({ deviceKey: 2000, label: 'disk', capacityBytes: sizeBytes, changeId: null, reader: fileSource(fd) });
    const pointId = await writer.commit();
    return { s: seconds(start), pointId, storedBytes: record.stats.bytesStored };
  } finally {
    fs.closeSync(fd);
    await repo.close();
  }
}

async function main(): Promise<void> {
  const image = path.join(work, 'image.raw');
  console.log(`# vcbt repository bench: ${sizeBytes / MiB} MiB image in ${work}, ${os.availableParallelism()} cores, ${process.version}`);
  const mix = makeImage(image);
  console.log(`image mix: zeros ${(mix.zero / MiB).toFixed(0)} MiB, text ${(mix.text / MiB).toFixed(0)} MiB, random ${(mix.random / MiB).toFixed(0)} MiB`);

  const rows: string[] = [];
  const cpS = timeShell(`cp "${image}" "${work}/cp.raw" && sync "${work}/cp.raw"`);
  rows.push(`| cp (+ fsync) | ${mibPerS(sizeBytes, cpS)} | - | ${(duBytes(`${work}/cp.raw`) / MiB).toFixed(0)} MiB |`);
  fs.rmSync(`${work}/cp.raw`);
  const zS = timeShell(`zstd -1 -q -f "${image}" -o "${work}/img.zst" && sync "${work}/img.zst"`);
  const zdS = timeShell(`zstd -d -q -f "${work}/img.zst" -o "${work}/unz.raw" && sync "${work}/unz.raw"`);
  rows.push(`| zstd -1 (+ fsync) | ${mibPerS(sizeBytes, zS)} | ${mibPerS(sizeBytes, zdS)} | ${(fs.statSync(`${work}/img.zst`).size / MiB).toFixed(0)} MiB |`);
  fs.rmSync(`${work}/img.zst`);
  fs.rmSync(`${work}/unz.raw`);

  const sizeRows: string[] = [];
  for (const chunkBytes of chunkSizes) {
    const repoDir = path.join(work, `repo-${chunkBytes}`);
    const full = await fullBackup(repoDir, chunkBytes, image);
    const chunkFiles = countFiles(path.join(repoDir, 'chunks'));
    const fullDu = duBytes(repoDir);
    const repo = await Repository.open(repoDir);
    const out = path.join(work, 'restored.raw');
    const outFd = fs.openSync(out, 'w');
    fs.ftruncateSync(outFd, sizeBytes);
    const restoreStart = process.hrtime.bigint();
    const disk = await repo.openDisk(full.pointId, 2000);
    await disk.restoreTo(fileTarget(outFd));
    fs.fsyncSync(outFd);
    const restoreS = seconds(restoreStart);
    await disk.close();
    fs.closeSync(outFd);
    const same = execFileSync('cmp', [image, out]).length === 0;
    fs.rmSync(out);
    if (chunkBytes === defaultChunkBytes) {
      rows.push(`| vcbt full backup / restore, ${chunkBytes / 1024} KiB chunks | ${mibPerS(sizeBytes, full.s)} | ${mibPerS(sizeBytes, restoreS)} | ${(fullDu / MiB).toFixed(0)} MiB (${same ? 'restore identical' : 'RESTORE DIFFERS'}) |`);
    }
    // Scattered 64 KiB changes at 4 KiB-aligned random offsets, written into a copy of the image.
    const changes: Extent[] = [];
    const fd = fs.openSync(image, 'r+');
    for (let i = 0; i < changeCount; i++) {
      const offsetBytes = randomInt((sizeBytes - changeBytes) / 4096) * 4096;
      changes.push({ offsetBytes, lengthBytes: changeBytes });
    }
    const changed = union(changes);
    const saved = changed.map((c) => {
      const before = Buffer.alloc(c.lengthBytes);
      fs.readSync(fd, before, 0, c.lengthBytes, c.offsetBytes);
      fs.writeSync(fd, randomBytes(c.lengthBytes), 0, c.lengthBytes, c.offsetBytes);
      return before;
    });
    const start = process.hrtime.bigint();
    const writer = await repo.beginRestorePoint({ vm: { id: 'bench', name: 'bench' } });
    const record = await writer.writeDisk({ deviceKey: 2000, label: 'disk', capacityBytes: sizeBytes, changeId: null, reader: fileSource(fd), previous: { pointId: full.pointId, deviceKey: 2000 }, changedAreas: changed });
    await writer.commit();
    const incS = seconds(start);
    changed.forEach((c, i) => fs.writeSync(fd, saved[i], 0, c.lengthBytes, c.offsetBytes)); // put the image back
    fs.closeSync(fd);
    await repo.close();
    const changedBytes = changed.reduce((s, c) => s + c.lengthBytes, 0);
    const indexBytes = fs.statSync(path.join(repoDir, 'indexes', `${record.index.sha256}.idx`)).size;
    sizeRows.push(
      `| ${chunkBytes / 1024} KiB | ${mibPerS(sizeBytes, full.s)} | ${mibPerS(sizeBytes, restoreS)}${same ? '' : ' (DIFFERS)'} | ${chunkFiles} | ${(fullDu / MiB).toFixed(0)} MiB | ${(changedBytes / MiB).toFixed(1)} MiB | ${(record.stats.bytesStored / MiB).toFixed(1)} MiB | ${(record.stats.bytesStored / changedBytes).toFixed(2)} | ${(indexBytes / 1024).toFixed(0)} KiB | ${incS.toFixed(2)} s |`,
    );
    fs.rmSync(repoDir, { recursive: true, force: true });
  }
  console.log('\n| tool | write MiB/s | restore MiB/s | stored |\n| --- | --- | --- | --- |');
  for (const r of rows) console.log(r);
  console.log(`\n${changeCount} scattered 64 KiB changes (random data, 4 KiB-aligned offsets):\n`);
  console.log('| chunk size | full ingest MiB/s | restore MiB/s | chunk files | repo size after full | changed | stored by incremental | stored / changed | index per disk | incremental time |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of sizeRows) console.log(r);
  console.log(`\npeak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
  fs.rmSync(work, { recursive: true, force: true });
}

await main();
