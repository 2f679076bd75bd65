// A/B of two checkouts of the repository code (bench/README.md, "Pack format v2, A/B"): the
// same image, the same steps, each step one child process per checkout, checkouts
// alternating within each repetition, so both run on the same machine load.
//
// Terms: a *checkout* is a directory holding src/ of one vcbt version (e.g. `git archive` of
// main's commit); a *step*: full = full backup of the image into a fresh repository;
// incremental = the image with `--change-percent` of it rewritten in 64 KiB writes (random
// data on data-holding blocks), backed up as an incremental of the full; nochange = an
// incremental with nothing changed (the fixed cost); restore = the incremental's point
// restored to a file, fsynced, and its sha256 checked against the image. Every step times
// only the repository work (open, write or read, commit, close) and reports the child's peak
// RSS. Each step's output is the same JSON line whichever checkout ran it.
//
// Usage: node bench/pack-ab.ts --a DIR --b DIR [--mib 512] [--reps 3] [--dir DIR]
//        (child mode: node bench/pack-ab.ts --child STEP --src DIR --work DIR)
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';

const MiB = 1024 * 1024;
const { values: options } = parseArgs({
  options: {
    a: { type: 'string' },
    b: { type: 'string' },
    mib: { type: 'string', default: '512' },
    reps: { type: 'string', default: '3' },
    'change-percent': { type: 'string', default: '2' },
    dir: { type: 'string', default: process.env.BENCH_DIR ?? os.tmpdir() },
    child: { type: 'string' },
    src: { type: 'string' },
    work: { type: 'string' },
  },
});

interface StepResult {
  step: string;
  seconds: number;
  peakRssMiB: number;
  storedBytes: number;
  files: number;
}

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

async function child(step: string, src: string, work: string): Promise<void> {
  const { Repository } = (await import(pathToFileURL(path.join(src, 'src/repository/repository.ts')).href)) as typeof import('../src/repository/repository.ts');
  const image = path.join(work, step === 'full' ? 'image-0.raw' : 'image-1.raw');
  const repoDir = path.join(work, 'repo');
  const state = path.join(work, 'state.json');
  const sizeBytes = fs.statSync(image).size;
  const fd = fs.openSync(image, 'r');
  const reader = {
    async read(offsetBytes: number, target: Uint8Array) {
      let done = 0;
      while (done < target.length) {
        const n = await new Promise<number>((resolve, reject) => fs.read(fd, target, done, target.length - done, offsetBytes + done, (e, r) => (e ? reject(e) : resolve(r))));
        if (n === 0) throw new Error(`short read at ${offsetBytes + done}`);
        done += n;
      }
    },
  };
  const start = process.hrtime.bigint();
  let storedBytes = 0;
  if (step === 'full') {
    await Repository.init(repoDir, {});
    const repo = await Repository.open(repoDir);
    const writer = await repo.beginRestorePoint({ vm: { id: 'bench', name: 'bench' } });
    storedBytes = (await writer.writeDisk({ deviceKey: 2000, label: 'disk', capacityBytes: sizeBytes, changeId: null, reader })).stats.bytesStored;
    fs.writeFileSync(state, JSON.stringify({ full: await writer.commit() }));
    await repo.close();
  } else if (step === 'incremental' || step === 'nochange') {
    const saved = JSON.parse(fs.readFileSync(state, 'utf8')) as { full: string; incremental?: string; changed: Array<{ offsetBytes: number; lengthBytes: number }> };
    const repo = await Repository.open(repoDir);
    const previous = step === 'incremental' ? saved.full : (saved.incremental as string);
    const changedAreas = step === 'incremental' ? saved.changed : [];
    const writer = await repo.beginRestorePoint({ vm: { id: 'bench', name: 'bench' } });
    storedBytes = (await writer.writeDisk({ deviceKey: 2000, label: 'disk', capacityBytes: sizeBytes, changeId: null, reader, previous: { pointId: previous, deviceKey: 2000 }, changedAreas })).stats.bytesStored;
    const id = await writer.commit();
    if (step === 'incremental') fs.writeFileSync(state, JSON.stringify({ ...saved, incremental: id }));
    await repo.close();
  } else if (step === 'restore') {
    const saved = JSON.parse(fs.readFileSync(state, 'utf8')) as { incremental: string };
    const repo = await Repository.open(repoDir);
    const out = path.join(work, 'restored.raw');
    const outFd = fs.openSync(out, 'w', 0o600);
    fs.ftruncateSync(outFd, sizeBytes);
    const disk = await repo.openDisk(saved.incremental, 2000);
    await disk.restoreTo({
      write: (offsetBytes: number, data: Uint8Array) => new Promise<void>((resolve, reject) => fs.write(outFd, data, 0, data.length, offsetBytes, (e) => (e ? reject(e) : resolve()))),
    });
    await disk.close();
    fs.fsyncSync(outFd);
    fs.closeSync(outFd);
    await repo.close();
  }
  const elapsed = seconds(start);
  fs.closeSync(fd);
  const files = Number(execFileSync('sh', ['-c', `find "${repoDir}" -type f | wc -l`], { encoding: 'utf8' }).trim());
  const result: StepResult = { step, seconds: elapsed, peakRssMiB: process.resourceUsage().maxRSS / 1024, storedBytes, files };
  console.log(JSON.stringify(result));
}

function sha256File(file: string): string {
  return execFileSync('sha256sum', [file], { encoding: 'utf8' }).split(' ')[0];
}

/** The image: a realistic mix (zeros, text-like, random) in runs of 64 KiB .. 8 MiB; image-1 = image-0 with changes. */
function makeImages(work: string, sizeBytes: number, changePercent: number): Array<{ offsetBytes: number; lengthBytes: number }> {
  const words = ['the', 'disk', 'backup', 'virtual', 'machine', 'log', 'error', 'INFO', '2026-11-25', 'user', 'GET /index.html', '200', 'kernel:', 'systemd[1]:', 'Started'];
  let text = '';
  while (text.length < 4 * MiB) text += `${words[randomInt(words.length)]}${randomInt(10) === 0 ? '\n' : ' '}${randomInt(4) === 0 ? randomInt(100000) + ' ' : ''}`;
  const pool = Buffer.from(text);
  const file = path.join(work, 'image-0.raw');
  const fd = fs.openSync(file, 'w');
  const data: number[] = [];
  for (let at = 0; at < sizeBytes; ) {
    const n = Math.min(sizeBytes - at, 64 * 1024 * (1 + randomInt(128)));
    const kind = randomInt(100);
    if (kind >= 35) {
      for (let done = 0; done < n; done += 64 * 1024) {
        const piece = Math.min(n - done, 64 * 1024);
        fs.writeSync(fd, kind < 75 ? pool : randomBytes(piece), kind < 75 ? randomInt(pool.length - MiB) : 0, piece, at + done);
        data.push(at + done);
      }
    }
    at += n;
  }
  fs.ftruncateSync(fd, sizeBytes);
  fs.closeSync(fd);
  fs.copyFileSync(file, path.join(work, 'image-1.raw'));
  const fd1 = fs.openSync(path.join(work, 'image-1.raw'), 'r+');
  const writes = Math.round((sizeBytes * changePercent) / 100 / (64 * 1024));
  const changed: Array<{ offsetBytes: number; lengthBytes: number }> = [];
  for (let i = 0; i < writes; i++) {
    const offsetBytes = data[randomInt(data.length)];
    fs.writeSync(fd1, randomBytes(64 * 1024), 0, 64 * 1024, offsetBytes);
    changed.push({ offsetBytes, lengthBytes: 64 * 1024 });
  }
  fs.closeSync(fd1);
  return changed.sort((x, y) => x.offsetBytes - y.offsetBytes).filter((c, i, all) => i === 0 || c.offsetBytes !== all[i - 1].offsetBytes);
}

function median(values: number[]): number {
  const s = [...values].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function main(): Promise<void> {
  if (!options.a || !options.b) throw new Error('usage: node bench/pack-ab.ts --a DIR --b DIR [--mib 512] [--reps 3]');
  const checkouts = { a: path.resolve(options.a), b: path.resolve(options.b) };
  const sizeBytes = Number(options.mib) * MiB;
  const reps = Number(options.reps);
  const base = fs.mkdtempSync(path.join(options.dir, 'vcbt-pack-ab-'));
  const changed = makeImages(base, sizeBytes, Number(options['change-percent']));
  const expected = sha256File(path.join(base, 'image-1.raw'));
  const steps = ['full', 'incremental', 'nochange', 'restore'];
  const results: Record<string, Record<string, StepResult[]>> = { a: {}, b: {} };
  console.log(`# pack A/B: ${options.mib} MiB image in ${base}, ${reps} repetitions, load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  for (let rep = 0; rep < reps; rep++) {
    const order = rep % 2 === 0 ? (['a', 'b'] as const) : (['b', 'a'] as const);
    for (const which of order) {
      const work = path.join(base, `run-${which}`);
      fs.rmSync(work, { recursive: true, force: true });
      fs.mkdirSync(work);
      for (const f of ['image-0.raw', 'image-1.raw']) fs.linkSync(path.join(base, f), path.join(work, f));
      fs.writeFileSync(path.join(work, 'state.json'), JSON.stringify({ changed }));
      for (const step of steps) {
        if (step === 'full') fs.writeFileSync(path.join(work, 'state.json'), JSON.stringify({ changed }));
        execFileSync('sync');
        const out = spawnSync(process.execPath, [import.meta.filename, '--child', step, '--src', checkouts[which], '--work', work], { encoding: 'utf8' });
        if (out.status !== 0) throw new Error(`${which} ${step} failed: ${out.stderr}`);
        if (step === 'full') {
          const saved = JSON.parse(fs.readFileSync(path.join(work, 'state.json'), 'utf8'));
          fs.writeFileSync(path.join(work, 'state.json'), JSON.stringify({ ...saved, changed }));
        }
        const result = JSON.parse(out.stdout.trim().split('\n').at(-1) as string) as StepResult;
        (results[which][step] ??= []).push(result);
        console.log(`rep ${rep + 1} ${which} ${step}: ${result.seconds.toFixed(2)} s, ${result.peakRssMiB.toFixed(0)} MiB RSS, ${(result.storedBytes / MiB).toFixed(1)} MiB stored, ${result.files} files`);
      }
      const got = sha256File(path.join(work, 'restored.raw'));
      if (got !== expected) throw new Error(`${which}: restored image differs (${got} != ${expected})`);
    }
  }
  console.log(`\n| step | A s (median) | B s (median) | B/A per rep | A peak RSS MiB | B peak RSS MiB | A files | B files |\n| --- | --- | --- | --- | --- | --- | --- | --- |`);
  for (const step of steps) {
    const a = results.a[step];
    const b = results.b[step];
    const ratios = a.map((r, i) => (b[i].seconds / r.seconds).toFixed(2)).join(', ');
    console.log(`| ${step} | ${median(a.map((r) => r.seconds)).toFixed(2)} | ${median(b.map((r) => r.seconds)).toFixed(2)} | ${ratios} (median ${median(a.map((r, i) => b[i].seconds / r.seconds)).toFixed(2)}) | ${Math.max(...a.map((r) => r.peakRssMiB)).toFixed(0)} | ${Math.max(...b.map((r) => r.peakRssMiB)).toFixed(0)} | ${a.at(-1)?.files} | ${b.at(-1)?.files} |`);
  }
  fs.rmSync(base, { recursive: true, force: true });
}

if (options.child) await child(options.child, path.resolve(options.src as string), options.work as string);
else await main();
