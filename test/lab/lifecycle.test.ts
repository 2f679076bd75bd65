// Proof that labs start quickly, run side by side, and leave nothing behind: not on stop(),
// and not when the process that started them is killed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { access, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildLabBinaries } from './build.ts';
import { startLab } from './lab.ts';

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Processes whose command line mentions `needle` (e.g. nbdkit serving a file in a state dir). */
async function processesMentioning(needle: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = await readFile(join('/proc', entry, 'cmdline'), 'utf8');
      if (cmdline.includes(needle)) found.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return found;
}

/** Polls until `done` holds (bounded, so a broken cleanup fails instead of hanging). */
async function eventually(what: string, done: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await done()) return;
    await sleep(50);
  }
  assert.fail(`not cleaned up: ${what}`);
}

test('two labs run at once, independently, and stop() removes processes and state', async () => {
  const [a, b] = await Promise.all([startLab(), startLab({ diskSizes: [3 * 1024 * 1024 + 1024] })]);
  try {
    assert.notEqual(a.info.sdk, b.info.sdk);
    assert.notEqual(a.stateDir, b.stateDir);
    const vmB = b.info.vms.find((v) => v.name === 'DC0_H0_VM0')!;
    assert.deepEqual(vmB.disks.map((d) => d.capacityBytes), [3 * 1024 * 1024 + 1024]);
    await a.write('DC0_H0_VM0', 2000, 0, new Uint8Array([1, 2, 3]));
    const [shaA, shaB] = await Promise.all([a.sha256('DC0_H0_VM0', 2000), b.sha256('DC0_H0_VM0', 2000)]);
    assert.notEqual(shaA.sha256, shaB.sha256);
    assert.ok((await b.content('DC0_H0_VM0', 2000)).every((x) => x === 0));
    await a.nbdExport('DC0_H0_VM0', 2000);
    assert.equal((await processesMentioning(a.stateDir)).length >= 2, true, 'the lab and nbdkit for the export run');
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
  for (const lab of [a, b]) {
    assert.equal(alive(lab.info.pid), false);
    assert.equal(await exists(lab.stateDir), false);
    assert.deepEqual(await processesMentioning(lab.stateDir), []);
  }
});

test('when the process that started a lab dies, the lab and its nbdkit exit and remove their files', async () => {
  const labModule = join(import.meta.dirname, 'lab.ts');
  const script = `
    const { startLab } = await import(${JSON.stringify(labModule)});
    const lab = await startLab();
    await lab.nbdExport('DC0_H0_VM0', 2000);
    console.log(JSON.stringify({ pid: lab.info.pid, stateDir: lab.stateDir }));
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`orphan script exited early with ${code}`)));
  });
  const { pid, stateDir } = JSON.parse(line) as { pid: number; stateDir: string };
  assert.equal(alive(pid), true);
  assert.equal((await processesMentioning(stateDir)).length >= 2, true, 'lab and nbdkit are running');
  child.kill('SIGKILL');
  await eventually('lab process', async () => !alive(pid));
  await eventually('nbdkit and other processes', async () => (await processesMentioning(stateDir)).length === 0);
  await eventually('state directory', async () => !(await exists(stateDir)));
});

test('lab builds are cached by source hash and safe to request concurrently', async () => {
  const [first, second] = await Promise.all([buildLabBinaries(), buildLabBinaries()]);
  assert.deepEqual(first, second);
  assert.match(first.lab, /\.lab-cache\/vcbt-lab-[0-9a-f]{16}$/);
  assert.match(first.govmomi, /\.lab-cache\/vcbt-govmomi-[0-9a-f]{16}$/);
  const leftovers = (await readdir(join(import.meta.dirname, '..', '..', '.lab-cache'))).filter((n) => n.includes('.tmp-'));
  assert.deepEqual(leftovers.filter((n) => n.includes(`.tmp-${process.pid}-`)), []);
});
