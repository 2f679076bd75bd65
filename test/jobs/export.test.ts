// `vcbt export` serves a restore point's disk over NBD to real clients: nbdcopy copies it
// byte-identical to `vcbt restore`'s output, and `nbdinfo --map` reports exactly the zero
// chunks of the index as holes. Restores onto NBD targets (the lab's writable scratch
// exports, served by nbdkit) are byte-identical too, and a too-small one is refused.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { exportDisk } from '../../src/jobs/export.ts';
import { Repository } from '../../src/repository/repository.ts';
import { startLab, type Lab } from '../lab/lab.ts';
import { labConnection, runCli } from '../helpers/cli-runner.ts';
import { connectRaw, infoFlood, unreadReads, type RawClient } from '../nbd/hostile-clients.ts';

const run = promisify(execFile);
const vm = 'DC0_H0_VM0';
const chunkBytes = 64 * 1024;
let lab: Lab;
let dir: string;
let repo: string;
let pointId: string;
let restored: Buffer;

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

before(async () => {
  lab = await startLab({ diskSizes: [6 * 1024 * 1024 + 3072, 2 * 1024 * 1024] });
  dir = await mkdtemp(join(tmpdir(), 'vcbt-export-'));
  repo = join(dir, 'repo');
  const connection = labConnection(lab);
  const enabled = await runCli(['cbt', 'enable', '--vm', vm, ...connection.flags], connection.env);
  assert.equal(enabled.code, 0, enabled.stderr);
  const init = await runCli(['init', '--repo', repo, '--chunk-size', String(chunkBytes)]);
  assert.equal(init.code, 0, init.stderr);
  // Data, holes between, a chunk of written zeroes (stored as a zero chunk) and the odd tail.
  await lab.write(vm, 2000, 0, randomBytes(300_000));
  await lab.write(vm, 2000, 2 * 1024 * 1024 + 100, randomBytes(500_000));
  await lab.write(vm, 2000, 4 * 1024 * 1024, Buffer.alloc(chunkBytes));
  await lab.write(vm, 2000, 6 * 1024 * 1024 + 3000, randomBytes(72));
  const backedUp = await runCli(['backup', '--vm', vm, '--repo', repo, '--disk', '2000', '--json', ...connection.flags], connection.env);
  assert.equal(backedUp.code, 0, backedUp.stderr);
  pointId = (JSON.parse(backedUp.stdout) as { pointId: string }).pointId;
  const target = join(dir, 'restored.raw');
  const restoredRun = await runCli(['restore', '--repo', repo, '--point', pointId, '--disk', '2000', '--to', target]);
  assert.equal(restoredRun.code, 0, restoredRun.stderr);
  restored = await readFile(target);
  assert.equal(sha(restored), (await lab.sha256(vm, 2000)).sha256);
});

after(async () => {
  await lab?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The holes a chunk-granular index must report: every all-zero chunk, adjacent ones merged. */
function zeroChunkRuns(image: Buffer): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  for (let at = 0; at < image.length; at += chunkBytes) {
    const chunk = image.subarray(at, Math.min(at + chunkBytes, image.length));
    if (!chunk.every((b) => b === 0)) continue;
    const last = runs[runs.length - 1];
    if (last && last[0] + last[1] === at) last[1] += chunk.length;
    else runs.push([at, chunk.length]);
  }
  return runs;
}

async function waitFor(path: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await access(path).then(() => true, () => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  assert.fail(`${path} never appeared`);
}

test('vcbt export: nbdcopy reads the restore byte for byte; nbdinfo --map shows the zero chunks as holes', async () => {
  const socket = join(dir, 'export.sock');
  const stop = new AbortController();
  const serving = runCli(['export', '--repo', repo, '--point', pointId, '--disk', '2000', '--socket', socket, '--name', 'disk', '--json'], {}, stop.signal);
  try {
    await waitFor(socket);
    const uri = `nbd+unix:///disk?socket=${socket}`;
    const copy = join(dir, 'nbdcopy.raw');
    await run('nbdcopy', [uri, copy]);
    assert.equal(sha(await readFile(copy)), sha(restored));

    const { stdout } = await run('nbdinfo', ['--map', '--json', uri]);
    const map = JSON.parse(stdout) as Array<{ offset: number; length: number; type: number }>;
    const holes = map.filter((e) => (e.type & 3) === 3).map((e) => [e.offset, e.length]);
    const expectedHoles = zeroChunkRuns(restored);
    assert.deepEqual(holes, expectedHoles);
    assert.ok(expectedHoles.some(([offset, length]) => offset <= 4 * 1024 * 1024 && offset + length >= 4 * 1024 * 1024 + chunkBytes), 'a chunk of written zeroes is a hole too');
    assert.ok(holes.length >= 2 && holes.length < map.length, 'data and holes alternate');
    assert.equal(map.reduce((sum, e) => sum + e.length, 0), restored.length, 'the map covers the disk');
  } finally {
    stop.abort();
  }
  const result = await serving;
  assert.equal(result.code, 0, result.stderr);
  const printed = JSON.parse(result.stdout) as { uri: string; pointId: string; capacityBytes: number };
  assert.match(printed.uri, /^nbd\+unix:\/\/\/disk\?socket=/);
  assert.equal(printed.pointId, pointId);
  assert.equal(printed.capacityBytes, restored.length);
});

test('export job over TCP: a real client sees the size and the bytes; closing releases the restore point', async () => {
  const repository = await Repository.open(repo);
  try {
    const running = await exportDisk({ repository, pointId, deviceKey: 2000, listen: { host: '127.0.0.1', port: 0 } });
    try {
      assert.match(running.uri, /^nbd:\/\/127\.0\.0\.1:\d+\//);
      const { stdout } = await run('nbdinfo', ['--size', running.uri]);
      assert.equal(Number(stdout.trim()), restored.length);
      const copy = join(dir, 'tcp.raw');
      await run('nbdcopy', [running.uri, copy]);
      assert.equal(sha(await readFile(copy)), sha(restored));
    } finally {
      await running.close();
    }
    // With the export closed, its shared lock is gone: prune's exclusive lock can be taken.
    const lock = await repository.lock('exclusive', 'test');
    await lock.release();
  } finally {
    await repository.close();
  }
});

test('restore onto NBD targets: byte-identical on an exact-size export; a too-small one is refused', async () => {
  const exact = await lab.scratchExport(restored.length);
  const ok = await runCli(['restore', '--repo', repo, '--point', pointId, '--disk', '2000', '--to', exact.uri, '--json']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(sha(await readFile(exact.path)), sha(restored));

  const small = await lab.scratchExport(1024 * 1024);
  const refused = await runCli(['restore', '--repo', repo, '--point', pointId, '--disk', '2000', '--to', small.uri]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /RESTORE_TARGET_SIZE: target nbd:\/\/\S+ has 1048576 bytes, less than the disk's 6294528/);
});

test('export errors: unknown point and disk are refused before serving', async () => {
  const noPoint = await runCli(['export', '--repo', repo, '--point', 'nope', '--disk', '2000', '--listen', '127.0.0.1:0']);
  assert.equal(noPoint.code, 1);
  assert.match(noPoint.stderr, /REPO_POINT_NOT_FOUND/);
  const noDisk = await runCli(['export', '--repo', repo, '--point', pointId, '--disk', '2001', '--listen', '127.0.0.1:0']);
  assert.equal(noDisk.code, 1);
  assert.match(noDisk.stderr, /REPO_DISK_NOT_FOUND/);
  const badListen = await runCli(['export', '--repo', repo, '--point', pointId, '--disk', '2000', '--listen', 'localhost']);
  assert.equal(badListen.code, 2);
});

test('export on an address in use fails with EXPORT_LISTEN and releases the restore point', async () => {
  const repository = await Repository.open(repo);
  try {
    const first = await exportDisk({ repository, pointId, deviceKey: 2000, listen: { host: '127.0.0.1', port: 0 } });
    try {
      const port = Number(/:(\d+)\//.exec(first.uri)?.[1]);
      await assert.rejects(exportDisk({ repository, pointId, deviceKey: 2000, listen: { host: '127.0.0.1', port } }), { code: 'EXPORT_LISTEN', message: new RegExp(`127\\.0\\.0\\.1:${port}: EADDRINUSE`) });
    } finally {
      await first.close();
    }
    const lock = await repository.lock('exclusive', 'test');
    await lock.release();
  } finally {
    await repository.close();
  }
});

test('boot/browse with writes: a qcow2 overlay on the export takes the writes, the restore point stays intact', async () => {
  const socket = join(dir, 'boot.sock');
  const stop = new AbortController();
  const serving = runCli(['export', '--repo', repo, '--point', pointId, '--disk', '2000', '--socket', socket, '--name', 'boot'], {}, stop.signal);
  try {
    await waitFor(socket);
    const uri = `nbd+unix:///boot?socket=${socket}`;
    const overlay = join(dir, 'boot-overlay.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', uri, overlay]);
    // What a booted guest does: writes land in the overlay, reads fall through to the export.
    await run('qemu-io', ['-c', 'write -P 0x42 4096 8192', overlay]);
    const flattened = join(dir, 'booted.raw');
    await run('qemu-img', ['convert', '-O', 'raw', overlay, flattened]);
    const expected = Buffer.from(restored).fill(0x42, 4096, 4096 + 8192);
    assert.equal(sha(await readFile(flattened)), sha(expected));
  } finally {
    stop.abort();
  }
  assert.equal((await serving).code, 0);
  const verify = await runCli(['verify', '--repo', repo, '--point', pointId, '--read-data']);
  assert.equal(verify.code, 0, verify.stdout);
  const again = join(dir, 'restored-again.raw');
  assert.equal((await runCli(['restore', '--repo', repo, '--point', pointId, '--disk', '2000', '--to', again])).code, 0);
  assert.equal(sha(await readFile(again)), sha(restored), 'the restore point is unchanged by the guest writes');
});

/** A process's memory figure from /proc (kB there), in bytes. */
async function procMemoryBytes(pid: number, field: 'VmRSS' | 'VmHWM'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  assert.ok(match, `${field} in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/**
 * The bound documented in docs/nbd.md: the payload budget (64 MiB), the reply buffer pool
 * (32 MiB), per connection at most 256 KiB of unread input and 64 KiB of handshake replies,
 * and the repository's transient buffers for the reads the budget lets through.
 */
const EXPORT_PEAK_GROWTH_BOUND_BYTES = 256 * 1024 * 1024;

test('vcbt export under hostile clients: peak RSS stays bounded, extra connections are refused, SIGINT stops it while replies sit unread', async (t) => {
  const socket = join(dir, 'hostile.sock');
  const child = spawn(process.execPath, [join(import.meta.dirname, '../../bin/vcbt.ts'), 'export', '--repo', repo, '--point', pointId, '--disk', '2000', '--socket', socket, '--name', 'disk', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const clients: RawClient[] = [];
  try {
    await waitFor(socket);
    const where = { socketPath: socket };
    const baselineBytes = await procMemoryBytes(child.pid!, 'VmRSS');
    // 35 MiB of NBD_OPT_INFO whose answers are never read, and 15 connections with 16
    // whole-disk reads each whose replies are never read (16 connections: the default cap).
    clients.push(await infoFlood(where, 'disk', 35 * 1024 * 1024));
    for (let i = 0; i < 15; i++) clients.push(await unreadReads(where, 'disk', 16, restored.length));
    // Many more connections that would never finish the handshake: refused at once.
    const refused = await Promise.all(Array.from({ length: 100 }, () => connectRaw(where)));
    await Promise.all(refused.map((c) => c.closed()));
    assert.deepEqual(refused.map((c) => c.receivedBytes()), Array(100).fill(0), 'refused before the greeting');
    // Let the server do all it will do for these clients: until its RSS stops growing.
    let lastBytes = 0;
    for (let i = 0; i < 40; i++) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      const now = await procMemoryBytes(child.pid!, 'VmRSS');
      if (now === lastBytes) break;
      lastBytes = now;
    }
    const peakBytes = await procMemoryBytes(child.pid!, 'VmHWM');
    t.diagnostic(`export RSS ${(baselineBytes / 1048576).toFixed(0)} MiB serving, peak ${(peakBytes / 1048576).toFixed(0)} MiB under the hostile clients`);
    assert.ok(
      peakBytes - baselineBytes < EXPORT_PEAK_GROWTH_BOUND_BYTES,
      `export peak RSS grew by ${((peakBytes - baselineBytes) / 1048576).toFixed(0)} MiB (from ${(baselineBytes / 1048576).toFixed(0)} MiB), over the ${EXPORT_PEAK_GROWTH_BOUND_BYTES / 1048576} MiB bound`,
    );
    // Ctrl-C while every client still holds unread replies: export stops.
    child.kill('SIGINT');
    const guard = setTimeout(() => child.kill('SIGKILL'), 15_000);
    const { code, signal } = await exited;
    clearTimeout(guard);
    assert.equal(signal, null, `export did not stop on SIGINT (killed): ${stderr}`);
    assert.ok(code === 0 || code === 130, `exit code ${code}: ${stderr}`);
    assert.doesNotMatch(stderr, /INTERNAL|\n\s+at /);
    await Promise.all(clients.map((c) => c.closed()));
  } finally {
    child.kill('SIGKILL');
    for (const c of clients) c.socket.destroy();
  }
});
