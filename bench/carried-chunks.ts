// Carried-over chunk check benchmark (run by hand: node_modules/.bin/node bench/carried-chunks.ts).
//
// What an incremental pays to prove that every chunk it carries over from its baseline still
// exists (src/repository/restore-point-writer.ts: one stat per carried slot, many in flight).
// Simulates the worst case of a 1 TiB disk at the default 256 KiB chunks: a baseline index of
// BENCH_SLOTS (default 4,194,304) distinct non-zero chunk ids, every chunk file present (hard
// links to a few real chunk files, so the directory entries are real and the disk stays small),
// and an incremental with nothing changed: every slot is carried over. It times that
// incremental with the check off and on (BENCH_REPS times each, alternating) and prints the
// medians and the cost per slot. The dentry/inode caches are warm after the first run (the
// links were just made); a cold cache costs more, which the figures in bench/README.md say.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { encodeChunk } from '../src/repository/chunk-codec.ts';
import { chunkId } from '../src/repository/crypto.ts';
import { IndexWriter } from '../src/repository/disk-index.ts';
import { encodeManifest, pointRef } from '../src/repository/manifest.ts';
import { writeCommittedRecord } from '../src/repository/point-records.ts';
import { Repository } from '../src/repository/repository.ts';
import { LocalStorage } from '../src/repository/storage/local.ts';

const chunkBytes = 256 * 1024;
const slots = Number(process.env.BENCH_SLOTS ?? 4 * 1024 * 1024);
const reps = Number(process.env.BENCH_REPS ?? 3);
const capacityBytes = slots * chunkBytes;
const work = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'vcbt-bench-carried-'));
const dir = path.join(work, 'repo');

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

try {
  await Repository.init(dir, { chunkBytes });
  const storage = new LocalStorage(dir);
  // One real chunk file; every slot's "chunk" is a link to it under its own id.
  const plaintext = randomBytes(chunkBytes);
  const encoded = Buffer.concat(encodeChunk(plaintext, chunkId(plaintext, undefined), 1, undefined));
  const linksPerFile = 60_000; // ext4 allows 65,000 links to one inode
  const masterOf = (slot: number) => {
    const file = path.join(work, `chunk-${Math.floor(slot / linksPerFile)}`);
    if (slot % linksPerFile === 0) fs.writeFileSync(file, encoded);
    return file;
  };
  let start = process.hrtime.bigint();
  const index = await IndexWriter.create(storage, undefined, chunkBytes, capacityBytes);
  for (let slot = 0; slot < slots; slot++) {
    const id = randomBytes(32);
    fs.linkSync(masterOf(slot), storage.pathOf({ kind: 'chunk', name: id.toString('hex') }));
    await index.append(id);
  }
  const ref = await index.finish();
  const baseline = '20260101T000000Z-00000001';
  await storage.put(pointRef(baseline), encodeManifest({
    id: baseline,
    createdAt: '2026-01-01T00:00:00.000Z',
    vm: { id: 'bench', name: 'bench' },
    source: null,
    snapshot: null,
    vmConfig: null,
    disks: [{ deviceKey: 2000, label: 'disk', capacityBytes, changeId: 'c1', chunkBytes, kind: 'full', basedOn: null, index: ref, stats: { bytesRead: 0, bytesStored: 0, chunksNew: 0, chunksReused: slots, chunksZero: 0 } }],
  }, undefined));
  await writeCommittedRecord(storage, baseline);
  console.log(`baseline: ${slots} slots (${(capacityBytes / 2 ** 40).toFixed(2)} TiB at ${chunkBytes / 1024} KiB chunks), made in ${seconds(start).toFixed(1)} s`);

  const repo = await Repository.open(dir);
  const times: Record<'off' | 'on', number[]> = { off: [], on: [] };
  try {
    for (let rep = 0; rep < reps; rep++) {
      for (const mode of rep % 2 === 0 ? (['off', 'on'] as const) : (['on', 'off'] as const)) {
        const writer = await repo.beginRestorePoint({ vm: { id: 'bench', name: 'bench' } });
        start = process.hrtime.bigint();
        await writer.writeDisk({
          deviceKey: 2000,
          label: 'disk',
          capacityBytes,
          changeId: 'c2',
          reader: { read: async () => { throw new Error('nothing changed: nothing to read'); } },
          previous: { pointId: baseline, deviceKey: 2000 },
          changedAreas: [],
          checkCarried: mode === 'on',
        });
        times[mode].push(seconds(start));
        await writer.abort();
      }
    }
  } finally {
    await repo.close();
  }
  const off = median(times.off);
  const on = median(times.on);
  console.log(`| slots | incremental, check off (s) | incremental, check on (s) | check cost (s) | per slot (µs) |`);
  console.log(`| --- | --- | --- | --- | --- |`);
  console.log(`| ${slots} | ${off.toFixed(1)} (${times.off.map((t) => t.toFixed(1)).join(', ')}) | ${on.toFixed(1)} (${times.on.map((t) => t.toFixed(1)).join(', ')}) | ${(on - off).toFixed(1)} | ${(((on - off) / slots) * 1e6).toFixed(2)} |`);
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
