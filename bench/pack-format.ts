// What it costs, on this file system, to store N MiB of 256 KiB chunks durably, laid out as
// one file per chunk (repository format v1, today) or as pack files; the figures that choose
// the pack format (bench/README.md, "Pack format").
//
// Terms: a *chunk* is 256 KiB of stored bytes named by a 32-byte id (random here: hashing
// and compression cost the same in every layout, so they are left out); a *pack* is one file
// holding many chunks back to back followed by its *trailer*, the per-pack index (per chunk:
// id, offset, length; then the entry count and a magic), so a pack describes itself and an
// index can be rebuilt from packs alone; the *run index* is the one file a run writes at the
// end listing where every chunk went (v1 writes a disk index there too), written atomically
// in every layout. A *durable commit* is fsync + rename of a file, and the fsync of the
// directory that holds the new name before anything refers to it.
//
// Layouts, each run on the same chunks, alternating the order between repetitions:
//   v1 file per chunk  per chunk: existence check (fails), temp file written (open, write,
//                      close), then open + fsync + close + rename into chunks/<2 hex>/, 16 in
//                      flight (the file system groups concurrent fsyncs); the touched fan-out
//                      directories fsynced once at the end; exactly what v1 does
//                      (src/repository/files.ts, restore-point-writer.ts), here on libuv's
//                      thread pool instead of the two ingest workers;
//   pack M MiB         chunks appended to one open temp pack, trailer, then one fsync +
//                      rename into packs/<2 hex>/ and an fsync of that directory per pack
//                      (the next pack is written while the previous one commits; at most 2
//                      committing);
//   + index file       the same plus the per-pack index as its own small file beside the
//                      pack (temp, fsync, rename): what an object store listing or a reader
//                      without ranged reads would want;
//   dir batched        the pack layout with the directory fsyncs held back and done once
//                      per touched directory at the end, before the run index (as v1 does
//                      for chunk fan-outs).
// Then a read-back of every chunk with the page cache warm (v1: open + read + close per
// chunk; packs: one open per pack, one pread per chunk): the open() cost of a restore.
//
// Usage: node bench/pack-format.ts [--mib 1024] [--reps 3] [--dir DIR]
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { median, MiB, rotated, run } from './harness.ts';

const { values: options } = parseArgs({
  options: {
    mib: { type: 'string', default: '1024' },
    reps: { type: 'string', default: '3' },
    dir: { type: 'string', default: process.env.BENCH_DIR ?? tmpdir() },
  },
});
const totalMiB = Number(options.mib);
const repetitions = Number(options.reps);
const chunkBytes = 256 * 1024;
const chunkCount = (totalMiB * MiB) / chunkBytes;
const idBytes = 32;
/** id, offset (u64), length (u32) per chunk in a pack trailer. */
const trailerEntryBytes = idBytes + 8 + 4;
const v1DurableInFlight = 16;
const packsCommitting = 2;

/** System calls that cost on a local file system and requests on an object store. */
interface Ops {
  opens: number;
  fileFsyncs: number;
  dirFsyncs: number;
  renames: number;
  failedExistenceChecks: number;
  files: number;
}
const noOps = (): Ops => ({ opens: 0, fileFsyncs: 0, dirFsyncs: 0, renames: 0, failedExistenceChecks: 0, files: 0 });

interface Layout {
  name: string;
  /** Pack size in MiB; 0 = file per chunk. */
  packMiB: number;
  indexFile: boolean;
  dirBatched: boolean;
}

// The chunks: views into one random pool (file systems do not look at content), ids random.
const poolBytes = 64 * MiB;
const pool = randomBytes(poolBytes);
const chunks = Array.from({ length: chunkCount }, (_, i) => ({
  id: randomBytes(idBytes),
  data: pool.subarray((i * chunkBytes) % poolBytes, ((i * chunkBytes) % poolBytes) + chunkBytes),
}));
const fanout = (id: Buffer) => id.toString('hex').slice(0, 2);

async function makeRepo(root: string, top: string): Promise<void> {
  await fsp.mkdir(join(root, 'tmp'), { recursive: true });
  for (let i = 0; i < 256; i++) await fsp.mkdir(join(root, top, i.toString(16).padStart(2, '0')), { recursive: true });
}

async function fsyncDir(dir: string, ops: Ops): Promise<void> {
  const handle = await fsp.open(dir, 'r');
  ops.opens++;
  await handle.sync();
  ops.dirFsyncs++;
  await handle.close();
}

/** temp file, write, fsync, rename; the caller fsyncs the directory (or batches it). */
async function writeDurable(root: string, finalPath: string, data: Uint8Array, ops: Ops): Promise<void> {
  const tempPath = join(root, 'tmp', `${randomBytes(12).toString('hex')}.tmp`);
  const handle = await fsp.open(tempPath, 'wx', 0o600);
  ops.opens++;
  await handle.writeFile(data);
  await handle.sync();
  ops.fileFsyncs++;
  await handle.close();
  await fsp.rename(tempPath, finalPath);
  ops.renames++;
  ops.files++;
}

/** The run index: every chunk's id and place, one atomic file. */
async function writeRunIndex(root: string, entries: number, ops: Ops): Promise<void> {
  await writeDurable(root, join(root, 'run.idx'), randomBytes(entries * trailerEntryBytes), ops);
  await fsyncDir(root, ops);
}

async function writeV1(root: string, ops: Ops): Promise<void> {
  await makeRepo(root, 'chunks');
  const touched = new Set<string>();
  const storeOne = async (chunk: (typeof chunks)[number]): Promise<void> => {
    const finalPath = join(root, 'chunks', fanout(chunk.id), chunk.id.toString('hex'));
    const exists = await fsp.access(finalPath).then(() => true, () => false);
    if (exists) throw new Error(`${finalPath} exists`);
    ops.failedExistenceChecks++;
    const tempPath = join(root, 'tmp', `${randomBytes(12).toString('hex')}.tmp`);
    const writer = await fsp.open(tempPath, 'wx', 0o600);
    ops.opens++;
    await writer.write(chunk.data, 0, chunk.data.length, 0);
    await writer.close();
    const syncer = await fsp.open(tempPath, 'r+');
    ops.opens++;
    await syncer.sync();
    ops.fileFsyncs++;
    await syncer.close();
    await fsp.rename(tempPath, finalPath);
    ops.renames++;
    ops.files++;
    touched.add(fanout(chunk.id));
  };
  const inFlight = new Set<Promise<void>>();
  for (const chunk of chunks) {
    const p = storeOne(chunk).finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= v1DurableInFlight) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  for (const dir of touched) await fsyncDir(join(root, 'chunks', dir), ops);
  await writeRunIndex(root, chunks.length, ops);
}

async function writePacks(root: string, layout: Layout, ops: Ops): Promise<void> {
  await makeRepo(root, 'packs');
  const packBytes = layout.packMiB * MiB;
  const touched = new Set<string>();
  const committing = new Set<Promise<void>>();
  let pack: { handle: fsp.FileHandle; tempPath: string; sizeBytes: number; entries: Array<{ id: Buffer; offset: number; length: number }> } | null = null;

  const commit = async (p: NonNullable<typeof pack>): Promise<void> => {
    const trailer = Buffer.alloc(p.entries.length * trailerEntryBytes + 12);
    p.entries.forEach((e, i) => {
      const at = i * trailerEntryBytes;
      e.id.copy(trailer, at);
      trailer.writeBigUInt64LE(BigInt(e.offset), at + idBytes);
      trailer.writeUInt32LE(e.length, at + idBytes + 8);
    });
    trailer.writeUInt32LE(p.entries.length, trailer.length - 12);
    trailer.write('vcbtpack', trailer.length - 8, 'latin1');
    await p.handle.write(trailer, 0, trailer.length, p.sizeBytes);
    await p.handle.sync();
    ops.fileFsyncs++;
    await p.handle.close();
    const packId = randomBytes(idBytes).toString('hex');
    const dir = join(root, 'packs', packId.slice(0, 2));
    await fsp.rename(p.tempPath, join(dir, packId));
    ops.renames++;
    ops.files++;
    if (layout.indexFile) await writeDurable(root, join(dir, `${packId}.idx`), trailer, ops);
    if (layout.dirBatched) touched.add(dir);
    else await fsyncDir(dir, ops);
  };

  for (const chunk of chunks) {
    if (!pack) {
      const tempPath = join(root, 'tmp', `${randomBytes(12).toString('hex')}.tmp`);
      const handle = await fsp.open(tempPath, 'wx', 0o600);
      ops.opens++;
      pack = { handle, tempPath, sizeBytes: 0, entries: [] };
    }
    await pack.handle.write(chunk.data, 0, chunk.data.length, pack.sizeBytes);
    pack.entries.push({ id: chunk.id, offset: pack.sizeBytes, length: chunk.data.length });
    pack.sizeBytes += chunk.data.length;
    if (pack.sizeBytes + chunkBytes > packBytes) {
      const c = commit(pack).finally(() => committing.delete(c));
      committing.add(c);
      pack = null;
      if (committing.size >= packsCommitting) await Promise.race(committing);
    }
  }
  if (pack) {
    const c = commit(pack);
    committing.add(c);
  }
  await Promise.all(committing);
  for (const dir of touched) await fsyncDir(dir, ops);
  await writeRunIndex(root, chunks.length, ops);
}

/** Reads every chunk back (page cache warm): the opens a restore pays. */
async function readBack(root: string, layout: Layout): Promise<void> {
  const buffer = Buffer.alloc(chunkBytes);
  if (layout.packMiB === 0) {
    for (const chunk of chunks) {
      const handle = await fsp.open(join(root, 'chunks', fanout(chunk.id), chunk.id.toString('hex')), 'r');
      await handle.read(buffer, 0, chunkBytes, 0);
      await handle.close();
    }
    return;
  }
  for (const dir of await fsp.readdir(join(root, 'packs'))) {
    for (const name of await fsp.readdir(join(root, 'packs', dir))) {
      if (name.endsWith('.idx')) continue;
      const handle = await fsp.open(join(root, 'packs', dir, name), 'r');
      const { size } = await handle.stat();
      const tail = Buffer.alloc(12);
      await handle.read(tail, 0, 12, size - 12);
      const count = tail.readUInt32LE(0);
      const trailer = Buffer.alloc(count * trailerEntryBytes);
      await handle.read(trailer, 0, trailer.length, size - 12 - trailer.length);
      for (let i = 0; i < count; i++) {
        const at = i * trailerEntryBytes;
        await handle.read(buffer, 0, trailer.readUInt32LE(at + idBytes + 8), Number(trailer.readBigUInt64LE(at + idBytes)));
      }
      await handle.close();
    }
  }
}

const layouts: Layout[] = [{ name: 'v1 file per chunk', packMiB: 0, indexFile: false, dirBatched: false }];
for (const packMiB of [4, 16, 64]) {
  layouts.push({ name: `pack ${packMiB} MiB`, packMiB, indexFile: false, dirBatched: false });
  layouts.push({ name: `pack ${packMiB} MiB + index file`, packMiB, indexFile: true, dirBatched: false });
  layouts.push({ name: `pack ${packMiB} MiB, dir batched`, packMiB, indexFile: false, dirBatched: true });
}

interface Result {
  writeSeconds: number[];
  readSeconds: number[];
  ops: Ops;
}
const results = new Map<string, Result>();
const base = await fsp.mkdtemp(join(options.dir, 'vcbt-bench-pack-'));
const fileSystem = (await run('findmnt', ['-no', 'FSTYPE,OPTIONS', '-T', base])).stdout.trim();
const load = [loadavg()[0]];
try {
  for (let rep = 0; rep < repetitions; rep++) {
    for (const layout of rotated(layouts, rep)) {
      const root = join(base, `${rep}-${layout.name.replace(/[^a-z0-9]+/gi, '-')}`);
      const ops = noOps();
      await run('sync');
      const start = performance.now();
      if (layout.packMiB === 0) await writeV1(root, ops);
      else await writePacks(root, layout, ops);
      const writeSeconds = (performance.now() - start) / 1000;
      const readStart = performance.now();
      await readBack(root, layout);
      const readSeconds = (performance.now() - readStart) / 1000;
      const r = results.get(layout.name) ?? { writeSeconds: [], readSeconds: [], ops };
      r.writeSeconds.push(writeSeconds);
      r.readSeconds.push(readSeconds);
      results.set(layout.name, r);
      console.error(`${rep + 1}/${repetitions} ${layout.name}: write ${(totalMiB / writeSeconds).toFixed(0)} MiB/s, read back ${(totalMiB / readSeconds).toFixed(0)} MiB/s`);
      await fsp.rm(root, { recursive: true, force: true });
    }
    load.push(loadavg()[0]);
  }
} finally {
  await fsp.rm(base, { recursive: true, force: true });
}

const perGiB = (n: number) => Math.round((n * 1024) / totalMiB);
console.log(`${totalMiB} MiB in ${chunkCount} chunks of 256 KiB on ${fileSystem}, ${repetitions} repetitions, load average ${load.map((l) => l.toFixed(1)).join(' / ')}`);
console.log('');
console.log('| layout | write MiB/s, median | each | read back MiB/s (warm cache) | per GiB: opens | file fsyncs | dir fsyncs | renames | failed existence checks | files |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const layout of layouts) {
  const r = results.get(layout.name);
  if (!r) continue;
  const speeds = r.writeSeconds.map((s) => totalMiB / s);
  const o = r.ops;
  console.log(`| ${layout.name} | ${median(speeds).toFixed(0)} | ${speeds.map((s) => s.toFixed(0)).join(', ')} | ${median(r.readSeconds.map((s) => totalMiB / s)).toFixed(0)} | ${perGiB(o.opens)} | ${perGiB(o.fileFsyncs)} | ${perGiB(o.dirFsyncs)} | ${perGiB(o.renames)} | ${perGiB(o.failedExistenceChecks)} | ${perGiB(o.files)} |`);
}
console.log('');
console.log('Object store, requests per GiB stored (one PUT per file; v1 also a HEAD per chunk for the existence check; restore: one ranged GET per chunk, or one GET per whole pack):');
console.log('');
console.log('| layout | PUT | HEAD | restore GETs, ranged per chunk | restore GETs, whole packs |');
console.log('| --- | --- | --- | --- | --- |');
for (const layout of layouts.filter((l) => !l.dirBatched)) {
  const o = results.get(layout.name)?.ops;
  if (!o) continue;
  const chunksPerGiB = perGiB(chunkCount);
  const packsPerGiB = layout.packMiB ? Math.ceil(1024 / layout.packMiB) : chunksPerGiB;
  console.log(`| ${layout.name} | ${perGiB(o.files)} | ${perGiB(o.failedExistenceChecks)} | ${chunksPerGiB} | ${layout.packMiB ? packsPerGiB : '-'} |`);
}
