// File-level restore against real guest file systems: restore points built by test/files/
// fixture.ts (GPT with ext4 + FAT + an empty partition, a whole-disk ext4, a blank disk) are
// read by libguestfs through vcbt's own NBD export. Every file the fixture wrote is listed with
// its size and extracted byte-identical (sha256) from the right restore point; a tar stream holds
// exactly the tree asked for; the named errors come out for what cannot be browsed.
//
// Slow (each test boots a libguestfs appliance: 12-20 s emulated): run with `npm run test:files`,
// not part of `npm test`. The appliance runs emulated (TCG) unless VCBT_TEST_KVM=1.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { FilesBrowser, withFilesBrowser } from '../../src/jobs/files.ts';
import { VcbtError } from '../../src/errors.ts';
import { runCli } from '../helpers/cli-runner.ts';
import { buildFixture, DEVICE_KEY, FIXTURE_MTIME_S, gptFiles, type Fixture } from './fixture.ts';

const run = promisify(execFile);
const env: NodeJS.ProcessEnv = process.env.VCBT_TEST_KVM === '1' ? {} : { LIBGUESTFS_BACKEND_SETTINGS: 'force_tcg' };
const sha = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
let fixture: Fixture;
let out: string;

before(async () => {
  fixture = await buildFixture();
  out = await mkdtemp(join(tmpdir(), 'vcbt-files-out-'));
});

after(async () => {
  await fixture?.close();
  if (out) await rm(out, { recursive: true, force: true });
});

const open = (pointId: string) => ({ repository: fixture.repository, pointId, deviceKey: DEVICE_KEY, env });

async function rejectsWithCode(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof VcbtError, String(error));
    assert.equal(error.code, code, error.message);
    return true;
  });
}

test('the older point: partitions, every file listed with its size, extracted byte-identical, a tar of exactly the tree', async () => {
  const [older] = fixture.gptPoints;
  const files = fixture.filesOf.get(older)!;
  await withFilesBrowser(open(older), async (browser: FilesBrowser) => {
    assert.deepEqual(
      browser.filesystems.map((f) => [f.partition, f.device, f.type, f.sizeBytes, f.browsable]),
      [[1, '/dev/sda1', 'ext4', 12 * 1024 * 1024, true], [2, '/dev/sda2', 'vfat', 10 * 1024 * 1024, true], [3, '/dev/sda3', '', 512 * 1024, false]],
    );
    for (const [path, data] of Object.entries(files)) {
      const [entry] = await browser.list(path);
      assert.equal(entry.path, path);
      assert.equal(entry.kind, 'file');
      assert.equal(entry.sizeBytes, data.length, path);
      assert.equal(Date.parse(entry.modifiedAt) / 1000, FIXTURE_MTIME_S, path);
    }
    const alice = await browser.list('1:/home/alice');
    assert.deepEqual(alice.map((e) => [e.name, e.sizeBytes, e.mode & 0o777, e.uid]), [['data.bin', 300_000, 0o640, 0], ['notes.txt', files['1:/home/alice/notes.txt'].length, 0o640, 0]]);
    // Every regular file on both file systems (lost+found is empty), names across partitions.
    assert.deepEqual(await browser.find('*.*'), Object.keys(files).filter((p) => /\/[^/]*\.[^/]*$/.test(p)).sort());
    // Extract one file of each file system and a whole tree.
    const to = join(out, 'older');
    const copied = await browser.get(['1:/home', '2:/EFI', '1:/etc/hostname'], to);
    assert.deepEqual(copied.map((c) => [c.path, c.kind]), [['1:/home', 'directory'], ['2:/EFI', 'directory'], ['1:/etc/hostname', 'file']]);
    for (const [path, data] of Object.entries(files)) {
      const local = path.startsWith('1:/home/') ? join(to, path.slice(3)) : path.startsWith('2:/EFI/') ? join(to, path.slice(3)) : path === '1:/etc/hostname' ? join(to, 'hostname') : null;
      if (local === null) continue;
      assert.equal(sha(await readFile(local)), sha(data), path);
      assert.equal(Math.round((await stat(local)).mtimeMs / 1000), FIXTURE_MTIME_S, path);
    }
    // The older version, not the newer one.
    assert.equal((await readFile(join(to, 'hostname'), 'utf8')), 'guest-v1\n');
    assert.equal((await stat(join(to, 'home/alice/notes.txt'))).mode & 0o777, 0o640);
    // A tar of 1:/home holds exactly home/ and what the fixture put below it.
    const chunks: Buffer[] = [];
    const sink = new (await import('node:stream')).PassThrough();
    sink.on('data', (d: Buffer) => chunks.push(d));
    await browser.tar(['1:/home'], sink);
    const tarFile = join(out, 'older.tar');
    await (await import('node:fs/promises')).writeFile(tarFile, Buffer.concat(chunks));
    const { stdout } = await run('tar', ['-t', '-f', tarFile]);
    assert.deepEqual(stdout.split('\n').filter((l) => l !== '').map((l) => l.replace(/\/$/, '')).sort(), ['home', 'home/alice', 'home/alice/data.bin', 'home/alice/notes.txt']);
    const { stdout: data } = await run('tar', ['-x', '-O', '-f', tarFile, 'home/alice/data.bin'], { encoding: 'buffer', maxBuffer: 1 << 24 });
    assert.equal(sha(data), sha(files['1:/home/alice/data.bin']));
  });
});

test('the older point: named errors for a missing path, a bare path on a multi-partition disk, no such partition, no file system', async () => {
  await withFilesBrowser(open(fixture.gptPoints[0]), async (browser) => {
    await rejectsWithCode(browser.list('1:/home/alice/new-in-v2.txt'), 'FILES_PATH_NOT_FOUND');
    await rejectsWithCode(browser.get(['2:/nope/x'], join(out, 'none')), 'FILES_PATH_NOT_FOUND');
    await rejectsWithCode(browser.list('/etc'), 'FILES_PATH_SYNTAX');
    await rejectsWithCode(browser.list('etc'), 'FILES_PATH_SYNTAX');
    await rejectsWithCode(browser.list('7:/'), 'FILES_PARTITION_NOT_FOUND');
    await rejectsWithCode(browser.list('3:/'), 'FILES_FILESYSTEM_UNKNOWN');
    // The session still answers after the errors.
    assert.equal((await browser.list('1:/etc/hostname'))[0].sizeBytes, 'guest-v1\n'.length);
  });
});

test('vcbt files ls and get on the newer point: the newer versions, byte-identical', async () => {
  const newer = fixture.gptPoints[1];
  const listed = await runCli(['files', 'ls', '--repo', fixture.repoPath, '--point', newer, '1:/home/alice', '--json'], env);
  assert.equal(listed.code, 0, listed.stderr);
  const document = JSON.parse(listed.stdout) as { type: string; filesystems: Array<{ partition: number; type: string }>; entries: Array<{ name: string; sizeBytes: number }> };
  assert.equal(document.type, 'files-ls');
  assert.deepEqual(document.filesystems.map((f) => [f.partition, f.type]), [[1, 'ext4'], [2, 'vfat'], [3, '']]);
  const v2 = gptFiles(2).ext4;
  assert.deepEqual(document.entries.map((e) => [e.name, e.sizeBytes]), [['data.bin', v2['home/alice/data.bin'].length], ['new-in-v2.txt', v2['home/alice/new-in-v2.txt'].length], ['notes.txt', v2['home/alice/notes.txt'].length]]);
  const to = join(out, 'newer');
  const got = await runCli(['files', 'get', '--repo', fixture.repoPath, '--point', newer, '1:/home/alice/notes.txt', '1:/home/alice/data.bin', '2:/README.TXT', '--to', to], env);
  assert.equal(got.code, 0, got.stderr);
  assert.equal(sha(await readFile(join(to, 'notes.txt'))), sha(v2['home/alice/notes.txt']));
  assert.equal(sha(await readFile(join(to, 'data.bin'))), sha(v2['home/alice/data.bin']));
  assert.equal(sha(await readFile(join(to, 'README.TXT'))), sha(gptFiles(2).fat['README.TXT']));
  assert.notEqual(sha(v2['home/alice/data.bin']), sha(gptFiles(1).ext4['home/alice/data.bin']));
});

test('vcbt files get --tar - on a whole-disk file system streams exactly the tree asked for', async () => {
  const point = fixture.wholeDiskPoint;
  const files = fixture.filesOf.get(point)!;
  const tarFile = join(out, 'whole.tar');
  const bin = resolve(import.meta.dirname, '../../bin/vcbt.ts');
  const child = spawn(process.execPath, [bin, 'files', 'get', '--repo', fixture.repoPath, '--point', point, '/dir', '/hello.txt', '--tar', '-'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const chunks: Buffer[] = [];
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => chunks.push(d));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((done) => child.on('close', done));
  assert.equal(code, 0, stderr);
  await (await import('node:fs/promises')).writeFile(tarFile, Buffer.concat(chunks));
  const { stdout } = await run('tar', ['-t', '-f', tarFile]);
  assert.deepEqual(stdout.split('\n').filter((l) => l !== '').map((l) => l.replace(/\/$/, '')).sort(), ['dir', 'dir/sub', 'dir/sub/deep.bin', 'hello.txt']);
  for (const [member, path] of [['dir/sub/deep.bin', '/dir/sub/deep.bin'], ['hello.txt', '/hello.txt']]) {
    const { stdout: data } = await run('tar', ['-x', '-O', '-f', tarFile, member], { encoding: 'buffer', maxBuffer: 1 << 24 });
    assert.equal(sha(data), sha(files[path]), member);
  }
});

test('vcbt files ls on a blank disk fails with FILES_NO_FILESYSTEM and leaves no engine running', async () => {
  const result = await runCli(['files', 'ls', '--repo', fixture.repoPath, '--point', fixture.blankPoint, '--json'], env);
  assert.equal(result.code, 1, result.stderr);
  const document = JSON.parse(result.stdout) as { type: string; code: string };
  assert.deepEqual([document.type, document.code], ['error', 'FILES_NO_FILESYSTEM']);
  // The export was stopped: an exclusive lock (taken by prune) is free again.
  const lock = await fixture.repository.lock('exclusive', 'test');
  await lock.release();
});
