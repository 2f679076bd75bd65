// What the benchmarks share: timing, hashing, sizes, measured child processes and guest data
// written into a lab disk.
//
// Terms: a *contender* is one program doing one path's work (vcbt or a peer); a *measured
// run* is one child process timed by wall clock (performance.now around spawn + exit) with
// its peak RSS from GNU time (`/usr/bin/time -f %M`: the wait4 ru_maxrss of the child, i.e.
// the largest resident set of any one process it waited for; for `sh -c 'a && sync f'` that
// is the larger of `a` and `sync`, never a sum). A *run* of guest data is a 64 KiB-aligned
// byte range written through the lab's control API (docs/lab.md); *text-like* data is words
// and lines that zstd compresses about 3-4x, *random* data does not compress, and what is
// never written stays a hole of the sparse disk file.
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Lab } from '../test/lab/lab.ts';
import { seededRandom } from '../test/helpers/seeded-random.ts';

export const run = promisify(execFile);
export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;
/** The guest's write size for scattered changes: one CBT block of the lab. */
export const blockBytes = 64 * 1024;

export async function timed<T>(work: () => Promise<T>): Promise<{ value: T; seconds: number }> {
  const start = performance.now();
  const value = await work();
  return { value, seconds: (performance.now() - start) / 1000 };
}

export async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * MiB })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export async function sparseFile(path: string, sizeBytes: number): Promise<string> {
  const handle = await open(path, 'w');
  await handle.truncate(sizeBytes);
  await handle.close();
  return path;
}

/** Bytes allocated on disk (du -sB1): a sparse file's data, a directory tree's files. */
export async function allocatedBytes(path: string): Promise<number> {
  const { stdout } = await run('du', ['-sB1', path]);
  return Number(stdout.split('\t')[0]);
}

/** Apparent bytes of a file or of every file under a directory (du -sb). */
export async function apparentBytes(path: string): Promise<number> {
  const { stdout } = await run('du', ['-sb', path]);
  return Number(stdout.split('\t')[0]);
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** `values` rotated left by `by` (alternating the order of contenders between repetitions). */
export function rotated<T>(values: T[], by: number): T[] {
  const shift = ((by % values.length) + values.length) % values.length;
  return [...values.slice(shift), ...values.slice(0, shift)];
}

/** The vcbt CLI as a child process under the Node running this bench (Node 24 from npm). */
export function vcbtCommand(args: string[]): string[] {
  return [process.execPath, join(import.meta.dirname, '..', 'bin', 'vcbt.ts'), ...args];
}

export interface MeasuredRun {
  seconds: number;
  peakRssMiB: number;
  stdout: string;
}

/**
 * Runs `command` (argv) as a measured run; rejects with its stderr when it exits non-zero.
 * Peak RSS comes from GNU time (scripts/install-bench-packages.sh installs it).
 */
export async function measure(command: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<MeasuredRun> {
  const dir = await mkdtemp(join(tmpdir(), 'vcbt-bench-time-'));
  const rusageFile = join(dir, 'rusage');
  try {
    let stdout = '';
    let stderr = '';
    const start = performance.now();
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn('/usr/bin/time', ['-o', rusageFile, '-f', '%M', ...command], { env: { ...process.env, ...options.env }, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', resolve);
    });
    const seconds = (performance.now() - start) / 1000;
    if (code !== 0) throw new Error(`${command.join(' ')} exited ${code}: ${stderr.trim().slice(-2000)}`);
    // GNU time writes "Command exited with non-zero status" lines before the format; the last line is %M.
    const lines = (await readFile(rusageFile, 'utf8')).trim().split('\n');
    return { seconds, peakRssMiB: Number(lines[lines.length - 1]) / 1024, stdout };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Random data in 64 KiB-aligned runs of `minBlocks`..`maxBlocks` blocks until `percent` of the
 * disk is newly written; answers the bytes newly written and the bytes written in all
 * (rewrites of earlier blocks are changes too).
 */
export async function writeRandomRuns(lab: Lab, disk: { vm: string; key: number; sizeBytes: number }, written: Set<number>, percent: number, minBlocks: number, maxBlocks: number): Promise<{ newBytes: number; writtenBytes: number }> {
  const diskBlocks = disk.sizeBytes / blockBytes;
  const wantedBlocks = Math.round((diskBlocks * percent) / 100);
  let newBlocks = 0;
  let writtenBlocks = 0;
  while (newBlocks < wantedBlocks) {
    const blocks = Math.min(minBlocks + Math.floor(Math.random() * (maxBlocks - minBlocks + 1)), wantedBlocks - newBlocks);
    const first = Math.floor(Math.random() * (diskBlocks - blocks + 1));
    for (let b = first; b < first + blocks; b++) {
      if (written.has(b)) continue;
      written.add(b);
      newBlocks++;
    }
    await lab.write(disk.vm, disk.key, first * blockBytes, randomBytes(blocks * blockBytes));
    writtenBlocks += blocks;
  }
  return { newBytes: newBlocks * blockBytes, writtenBytes: writtenBlocks * blockBytes };
}

/** Text-like bytes: lines of pseudo-words drawn from a fixed vocabulary (seeded). */
export class TextSource {
  readonly #pool: Buffer;
  readonly #rand: () => number;

  /** `poolBytes` of text are made once; each `next` is new pieces (1-8 KiB, random places) of it. */
  constructor(seed: number, poolBytes = 32 * MiB) {
    this.#rand = seededRandom(seed);
    const letters = 'etaoinshrdlucmfwypvbgkjqxz';
    const words: Buffer[] = [];
    for (let i = 0; i < 4096; i++) {
      let word = '';
      const length = 2 + Math.floor(this.#rand() * this.#rand() * 12);
      for (let c = 0; c < length; c++) word += letters[Math.floor(this.#rand() * this.#rand() * letters.length)];
      words.push(Buffer.from(word));
    }
    this.#pool = Buffer.alloc(poolBytes);
    let at = 0;
    let lineBytes = 0;
    while (at < poolBytes) {
      const word = words[Math.floor(this.#rand() * this.#rand() * words.length)];
      at += word.copy(this.#pool, at);
      lineBytes += word.length + 1;
      if (at < poolBytes) this.#pool[at++] = lineBytes > 72 ? 0x0a : 0x20;
      if (lineBytes > 72) lineBytes = 0;
    }
  }

  /** `lengthBytes` of text, made of pieces taken from random places of the pool. */
  next(lengthBytes: number): Buffer {
    const out = Buffer.allocUnsafe(lengthBytes);
    let at = 0;
    while (at < lengthBytes) {
      const pieceBytes = Math.min(1024 + Math.floor(this.#rand() * 7168), lengthBytes - at);
      const from = Math.floor(this.#rand() * (this.#pool.length - pieceBytes));
      at += this.#pool.copy(out, at, from, from + pieceBytes);
    }
    return out;
  }
}

/** A 64 KiB-aligned range of a disk that holds data. */
export interface DataRun {
  offsetBytes: number;
  lengthBytes: number;
  kind: 'text' | 'random';
}

/**
 * Fills a lab disk: the disk is cut into 64 KiB-aligned runs of 64 KiB..8 MiB (seeded), runs
 * are picked at random until exactly `allocatedBytes` are chosen (the last one cut to fit),
 * and each chosen run is written with text-like or random data (half each, by coin); the rest
 * stay holes. Answers the written runs in disk order.
 */
export async function fillDisk(lab: Lab, disk: { vm: string; key: number; sizeBytes: number }, allocatedBytes: number, seed: number): Promise<DataRun[]> {
  const rand = seededRandom(seed);
  const text = new TextSource(seed + 1);
  const runs: DataRun[] = [];
  for (let offsetBytes = 0; offsetBytes < disk.sizeBytes; ) {
    const lengthBytes = Math.min((1 + Math.floor(rand() * 128)) * blockBytes, disk.sizeBytes - offsetBytes);
    runs.push({ offsetBytes, lengthBytes, kind: rand() < 0.5 ? 'text' : 'random' });
    offsetBytes += lengthBytes;
  }
  for (let i = runs.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [runs[i], runs[j]] = [runs[j], runs[i]];
  }
  const chosen: DataRun[] = [];
  let chosenBytes = 0;
  for (const r of runs) {
    if (chosenBytes >= allocatedBytes) break;
    const lengthBytes = Math.min(r.lengthBytes, Math.ceil((allocatedBytes - chosenBytes) / blockBytes) * blockBytes);
    chosen.push({ ...r, lengthBytes });
    chosenBytes += lengthBytes;
  }
  chosen.sort((a, b) => a.offsetBytes - b.offsetBytes);
  const pieceBytes = 4 * MiB;
  for (const r of chosen) {
    for (let at = 0; at < r.lengthBytes; at += pieceBytes) {
      const length = Math.min(pieceBytes, r.lengthBytes - at);
      await lab.write(disk.vm, disk.key, r.offsetBytes + at, r.kind === 'text' ? text.next(length) : randomBytes(length));
    }
  }
  return chosen;
}

/**
 * Rewrites `percent` of the disk in single 64 KiB writes of random data, at distinct blocks
 * picked at random among the blocks of `runs` (data that is already there: the allocation
 * stays the same, as when a guest updates its files). Answers the bytes written.
 */
export async function rewriteBlocks(lab: Lab, disk: { vm: string; key: number; sizeBytes: number }, runs: DataRun[], percent: number): Promise<number> {
  const blocks: number[] = [];
  for (const r of runs) for (let at = 0; at < r.lengthBytes; at += blockBytes) blocks.push(r.offsetBytes + at);
  const wanted = Math.min(blocks.length, Math.round((disk.sizeBytes / blockBytes) * (percent / 100)));
  for (let i = 0; i < wanted; i++) {
    const j = i + Math.floor(Math.random() * (blocks.length - i));
    [blocks[i], blocks[j]] = [blocks[j], blocks[i]];
    await lab.write(disk.vm, disk.key, blocks[i], randomBytes(blockBytes));
  }
  return wanted * blockBytes;
}
