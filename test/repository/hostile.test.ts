// A hostile or damaged repository (issue: bounded under damaged files): planted FIFOs and
// directories, a zstd bomb, manifests/config/locks of the wrong shape, names that try to leave
// the repository, temp files of live writers, locks from the future or of garbage. Every case
// is a named error or a report naming the path, never a hang, a stack trace or INTERNAL.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { resourceUsage } from 'node:process';
import { test } from 'node:test';
import * as zlib from 'node:zlib';
import { IndexReader } from '../../src/repository/disk-index.ts';
import { sha256Hex } from '../../src/repository/crypto.ts';
import { Repository } from '../../src/repository/repository.ts';
import { runCli } from '../helpers/cli-runner.ts';
import { chunkRecordIn, indexPath, local, manifestPath, memorySource, sha256, tempDir } from './helpers.ts';

const chunkBytes = 64 * 1024;

interface Fixture {
  dir: string;
  p1: string;
  p2: string;
  image2: Buffer;
  /** A chunk only p1 uses, and p1's index. */
  chunk1: string;
  index1: string;
}

/** Two points of two VMs sharing no chunk; the repository is closed again. */
async function fixture(t: { after(fn: () => void): void }): Promise<Fixture> {
  const dir = path.join(tempDir(t), 'repo');
  await Repository.init(dir, { chunkBytes });
  const repo = await Repository.open(dir, { workers: 1 });
  try {
    const image1 = randomBytes(3 * chunkBytes);
    const image2 = randomBytes(2 * chunkBytes + 100);
    const w1 = await repo.beginRestorePoint({ vm: { id: 'vm-1', name: 'one' }, createdAt: new Date('2026-01-01T00:00:00Z') });
    await w1.writeDisk({ deviceKey: 2000, label: 'a', capacityBytes: image1.length, changeId: null, reader: memorySource(image1) });
    const p1 = await w1.commit();
    const w2 = await repo.beginRestorePoint({ vm: { id: 'vm-2', name: 'two' }, createdAt: new Date('2026-01-02T00:00:00Z') });
    await w2.writeDisk({ deviceKey: 2000, label: 'b', capacityBytes: image2.length, changeId: null, reader: memorySource(image2) });
    const p2 = await w2.commit();
    const disk = (await repo.readManifest(p1)).disks[0];
    const index = await IndexReader.open(repo.storage, disk.index, undefined);
    const chunk1 = Buffer.from(await index.entry(1)).toString('hex');
    await index.close();
    return { dir, p1, p2, image2, chunk1, index1: disk.index.sha256 };
  } finally {
    await repo.close();
  }
}

async function vcbt(args: string[]) {
  const result = await runCli(args, {});
  assert.doesNotMatch(result.stderr + result.stdout, /INTERNAL|\n\s+at /, `no INTERNAL or stack trace for ${args.join(' ')}`);
  return result;
}

function plant(file: string, what: 'fifo' | 'dir'): void {
  fs.rmSync(file, { force: true });
  if (what === 'fifo') execFileSync('mkfifo', [file]);
  else fs.mkdirSync(file);
}

/** Rewrites a plain manifest with `point` replaced, keeping its checksum valid. */
function rewriteManifest(file: string, point: unknown): void {
  const body = JSON.stringify(point);
  fs.writeFileSync(file, `{"format":"vcbt-restore-point","version":1,"sha256":"${sha256Hex(body)}","point":${body}}\n`);
}

for (const what of ['fifo', 'dir'] as const) {
  test(`a ${what} planted where a chunk, index, manifest, lock or config should be: named errors naming the path, other points go on`, { timeout: 90_000 }, async (t) => {
    const f = await fixture(t);
    const restoreTo = (point: string, name: string) => vcbt(['restore', '--repo', f.dir, '--point', point, '--disk', '2000', '--to', path.join(path.dirname(f.dir), name)]);

    // Format v2: the chunk is a record in a pack; the pack file is what gets replaced.
    const chunk = (await chunkRecordIn(f.dir, f.chunk1)).file;
    const chunkBytesOnDisk = fs.readFileSync(chunk);
    plant(chunk, what);
    const restored = await restoreTo(f.p1, 'p1.raw');
    assert.equal(restored.code, 1);
    assert.match(restored.stderr, new RegExp(`REPO_NOT_REGULAR_FILE.*${chunk}`));
    assert.equal((await restoreTo(f.p2, 'p2.raw')).code, 0);
    assert.equal(sha256(fs.readFileSync(path.join(path.dirname(f.dir), 'p2.raw'))), sha256(f.image2));
    // verify names it, then moves it aside (quarantine): the name is free for a backup to rewrite.
    const verify = await vcbt(['verify', '--repo', f.dir]);
    assert.equal(verify.code, 1);
    assert.match(verify.stdout, new RegExp(`CORRUPT chunk ${f.chunk1}: REPO_NOT_REGULAR_FILE: .*${chunk}.*\\n  affects restore points: ${f.p1}\\n`));
    assert.ok(!fs.existsSync(chunk), 'quarantined');
    fs.rmSync(chunk, { recursive: true, force: true });
    fs.writeFileSync(chunk, chunkBytesOnDisk);

    const index = indexPath(f.dir, f.index1);
    const indexBytes = fs.readFileSync(index);
    plant(index, what);
    assert.match((await restoreTo(f.p1, 'p1-again.raw')).stderr, new RegExp(`REPO_NOT_REGULAR_FILE.*${index}`));
    const verifyIndex = await vcbt(['verify', '--repo', f.dir]);
    assert.equal(verifyIndex.code, 1);
    assert.match(verifyIndex.stdout, new RegExp(`CORRUPT index ${f.index1}: REPO_NOT_REGULAR_FILE: .*${index}`));
    fs.rmSync(index, { recursive: true, force: true });
    fs.writeFileSync(index, indexBytes);

    const manifest = manifestPath(f.dir, f.p1);
    const manifestBytes = fs.readFileSync(manifest);
    plant(manifest, what);
    const points = await vcbt(['points', '--repo', f.dir, '--json']);
    assert.equal(points.code, 0);
    // Listed, marked damaged, never hidden.
    const listed = JSON.parse(points.stdout).points as Array<{ id: string; damaged: boolean; manifestProblem: { code: string; message: string } | null }>;
    assert.deepEqual(listed.map((p) => [p.id, p.damaged]), [[f.p1, true], [f.p2, false]]);
    assert.equal(listed[0].manifestProblem?.code, 'REPO_NOT_REGULAR_FILE');
    assert.ok(listed[0].manifestProblem?.message.includes(manifest));
    assert.match((await vcbt(['verify', '--repo', f.dir])).stdout, new RegExp(`CORRUPT manifest ${f.p1}: REPO_NOT_REGULAR_FILE`));
    assert.equal((await restoreTo(f.p2, 'p2-again.raw')).code, 0);
    fs.rmSync(manifest, { recursive: true });
    fs.writeFileSync(manifest, manifestBytes);

    const lock = path.join(f.dir, 'locks', '00000000000000ff.json');
    plant(lock, what);
    const verifyLock = await vcbt(['verify', '--repo', f.dir]);
    assert.equal(verifyLock.code, 0, `a lock that is not a file blocks nobody: ${verifyLock.stdout}${verifyLock.stderr}`);
    if (what === 'fifo') {
      const unlocked = await vcbt(['unlock', '--repo', f.dir]);
      assert.equal(unlocked.code, 0);
      assert.match(unlocked.stdout, /^removed 00000000000000ff {2}unreadable: not a regular file$/m);
      assert.ok(!fs.existsSync(lock));
    } else {
      fs.rmdirSync(lock);
    }

    const config = path.join(f.dir, 'config.json');
    plant(config, what);
    const noConfig = await vcbt(['points', '--repo', f.dir]);
    assert.equal(noConfig.code, 1);
    assert.match(noConfig.stderr, new RegExp(`REPO_NOT_REGULAR_FILE: ${config} is`));
  });
}

test('a zstd bomb in a chunk is REPO_CORRUPT without decompressing past the chunk size', { timeout: 60_000 }, async (t) => {
  const f = await fixture(t);
  const compress = zlib.createZstdCompress();
  const frames: Buffer[] = [];
  compress.on('data', (d: Buffer) => frames.push(d));
  const zeroMiB = Buffer.alloc(1 << 20);
  for (let i = 0; i < 512; i++) compress.write(zeroMiB);
  compress.end();
  await new Promise((resolve) => compress.on('end', resolve));
  const bomb = Buffer.concat(frames); // a few KiB that expand to 512 MiB
  const header = Buffer.alloc(16);
  header.write('VCBC', 0, 'latin1');
  header[4] = 1;
  header[5] = 1; // zstd
  header.writeUInt32LE(chunkBytes, 8);
  // In place of the chunk's record in its pack, padded to the record's length (the header
  // claims all of it, so only decompressing can find the damage).
  const record = await chunkRecordIn(f.dir, f.chunk1);
  assert.ok(bomb.length + 16 <= record.lengthBytes, `the bomb (${bomb.length} bytes) fits the record`);
  header.writeUInt32LE(record.lengthBytes - 16, 12);
  const pack = fs.readFileSync(record.file);
  Buffer.concat([header, bomb, Buffer.alloc(record.lengthBytes - 16 - bomb.length)]).copy(pack, record.offsetBytes);
  fs.writeFileSync(record.file, pack);

  const peakBeforeKiB = resourceUsage().maxRSS;
  const restored = await vcbt(['restore', '--repo', f.dir, '--point', f.p1, '--disk', '2000', '--to', path.join(path.dirname(f.dir), 'bomb.raw')]);
  assert.equal(restored.code, 1);
  assert.match(restored.stderr, /REPO_CORRUPT/);
  const verify = await vcbt(['verify', '--repo', f.dir, '--read-data']);
  assert.equal(verify.code, 1);
  assert.match(verify.stdout, new RegExp(`CORRUPT chunk ${f.chunk1}: REPO_CORRUPT: .*zstd frame does not decode`));
  const grownMiB = (resourceUsage().maxRSS - peakBeforeKiB) / 1024;
  assert.ok(grownMiB < 128, `peak memory grew by ${grownMiB.toFixed(0)} MiB decoding a 512 MiB bomb`);
});

test('manifests of the wrong shape (null, disks: [null], wrong types, an index id that leaves the repository) are REPO_CORRUPT for that point only', { timeout: 90_000 }, async (t) => {
  const f = await fixture(t);
  const file = manifestPath(f.dir, f.p1);
  const original = JSON.parse(fs.readFileSync(file, 'utf8')).point;
  const variants: Array<[string, () => void]> = [
    ['the file is null', () => fs.writeFileSync(file, 'null')],
    ['point is null', () => rewriteManifest(file, null)],
    ['disks: [null]', () => rewriteManifest(file, { ...original, disks: [null] })],
    ['capacityBytes is a string', () => rewriteManifest(file, { ...original, disks: [{ ...original.disks[0], capacityBytes: 'big' }] })],
    ['index id ../../../../etc/passwd', () => rewriteManifest(file, { ...original, disks: [{ ...original.disks[0], index: { ...original.disks[0].index, sha256: '../../../../etc/passwd' } }] })],
  ];
  for (const [name, damage] of variants) {
    damage();
    const points = await vcbt(['points', '--repo', f.dir, '--json']);
    assert.equal(points.code, 0, name);
    // Listed and marked damaged, never hidden.
    const listed = JSON.parse(points.stdout).points as Array<{ id: string; damaged: boolean; vm: unknown; manifestProblem: { code: string } | null }>;
    assert.deepEqual(listed.map((p) => [p.id, p.damaged, p.manifestProblem?.code ?? null]), [[f.p1, true, 'REPO_CORRUPT'], [f.p2, false, null]], name);
    assert.equal(listed[0].vm, null, name);
    const verify = await vcbt(['verify', '--repo', f.dir]);
    assert.equal(verify.code, 1, name);
    assert.match(verify.stdout, new RegExp(`CORRUPT manifest ${f.p1}: REPO_CORRUPT: .*\\n  affects restore points: ${f.p1}\\n`), name);
    assert.match(verify.stdout, /1 problem\(s\): 2 restore points/, name);
    const bad = await vcbt(['restore', '--repo', f.dir, '--point', f.p1, '--disk', '2000', '--to', path.join(path.dirname(f.dir), 'bad.raw')]);
    assert.match(bad.stderr, /REPO_CORRUPT/, name);
  }
  assert.equal((await vcbt(['restore', '--repo', f.dir, '--point', f.p2, '--disk', '2000', '--to', path.join(path.dirname(f.dir), 'good.raw')])).code, 0);
  // A new backup goes on next to the damaged point.
  const repo = await Repository.open(f.dir, { workers: 1 });
  try {
    assert.deepEqual((await repo.listRestorePoints()).map((p) => p.id), [f.p2]);
    const writer = await repo.beginRestorePoint({ vm: { id: 'vm-1', name: 'one' } });
    await writer.writeDisk({ deviceKey: 2000, label: 'a', capacityBytes: 4096, changeId: null, reader: memorySource(Buffer.alloc(4096, 1)) });
    await writer.commit();
    assert.equal((await repo.listRestorePoints()).length, 2);
  } finally {
    await repo.close();
  }
});

test('names from the command line or from files never become paths outside the repository', async (t) => {
  const f = await fixture(t);
  const escaped = await vcbt(['restore', '--repo', f.dir, '--point', '../config', '--disk', '2000', '--to', path.join(path.dirname(f.dir), 'x.raw')]);
  assert.equal(escaped.code, 1);
  assert.match(escaped.stderr, /REPO_POINT_NOT_FOUND: no restore point "\.\.\/config" in .* \(not a restore point id/);
  await assert.rejects(IndexReader.open(local(f.dir), { sha256: '../../../../etc/passwd', entryCount: 1 }, undefined), { code: 'REPO_INVALID_NAME' });
  assert.ok(!fs.existsSync(path.join(path.dirname(f.dir), 'x.raw')));
});

test('broken configs and layouts are named errors: chunkBytes, null, wrong types, huge scrypt, --repo a file, no points/', { timeout: 60_000 }, async (t) => {
  const f = await fixture(t);
  const configFile = path.join(f.dir, 'config.json');
  const good = JSON.parse(fs.readFileSync(configFile, 'utf8'));
  const cases: Array<[string, unknown, string]> = [
    ['chunkBytes 2^40', { ...good, chunkBytes: 2 ** 40 }, 'REPO_FORMAT'],
    ['chunkBytes 5000', { ...good, chunkBytes: 5000 }, 'REPO_FORMAT'],
    ['chunkBytes a string', { ...good, chunkBytes: '65536' }, 'REPO_FORMAT'],
    ['null', null, 'REPO_CORRUPT'],
    ['compression null', { ...good, compression: null }, 'REPO_CORRUPT'],
    ['huge scrypt', { ...good, encryption: { kdf: 'scrypt', scrypt: { N: 2 ** 30, r: 8, p: 1, saltBase64: 'AAAA' }, cipher: 'aes-256-gcm', sealedKeyBase64: 'AAAA' } }, 'REPO_FORMAT'],
  ];
  for (const [name, config, code] of cases) {
    fs.writeFileSync(configFile, JSON.stringify(config));
    const result = await vcbt(['points', '--repo', f.dir]);
    assert.equal(result.code, 1, name);
    assert.match(result.stderr, new RegExp(`${code}: .*${configFile}`), name);
  }
  fs.writeFileSync(configFile, JSON.stringify(good));

  const aFile = path.join(path.dirname(f.dir), 'a-file');
  fs.writeFileSync(aFile, 'not a repository');
  for (const command of ['points', 'verify', 'prune --keep-last 1', 'unlock']) {
    const result = await vcbt([...command.split(' '), '--repo', aFile]);
    assert.equal(result.code, 1, command);
    assert.match(result.stderr, /REPO_NOT_FOUND: no repository at/, command);
  }
  const init = await vcbt(['init', '--repo', aFile]);
  assert.equal(init.code, 1);
  assert.match(init.stderr, /REPO_EXISTS: .* is a file/);

  fs.rmSync(path.join(f.dir, 'points'), { recursive: true });
  const noPoints = await vcbt(['points', '--repo', f.dir]);
  assert.equal(noPoints.code, 1);
  assert.match(noPoints.stderr, new RegExp(`REPO_CORRUPT: repository directory ${path.join(f.dir, 'points')} is missing`));
});

test('prune never removes a temp file a live writer may be writing; old ones and stray directories are handled', async (t) => {
  const f = await fixture(t);
  const tmp = path.join(f.dir, 'tmp');
  const fresh = path.join(tmp, `${'a'.repeat(24)}.tmp`); // e.g. a backup's lock file on its way in
  const old = path.join(tmp, `${'b'.repeat(24)}.tmp`);
  fs.writeFileSync(fresh, '{"kind":"shared"}');
  fs.writeFileSync(old, 'left over by a crash');
  const hourAgo = new Date(Date.now() - 3_600_000);
  fs.utimesSync(old, hourAgo, hourAgo);
  fs.mkdirSync(path.join(tmp, 'stray-dir'));
  const pruned = await vcbt(['prune', '--repo', f.dir, '--keep-last', '5', '--json']);
  assert.equal(pruned.code, 0, pruned.stderr);
  const gc = JSON.parse(pruned.stdout).gc;
  assert.deepEqual([gc.tempFilesDeleted, gc.tempFilesKept], [1, 1]);
  assert.ok(fs.existsSync(fresh), 'the live writer\'s temp file is still there');
  assert.ok(!fs.existsSync(old));
});

test('locks: a heartbeat far in the future or a garbage file is reported as such and does not block; vcbt unlock removes stale ones, a live one only with --force, never one of a live local process', async (t) => {
  const f = await fixture(t);
  const locks = path.join(f.dir, 'locks');
  const future = new Date(Date.now() + 30 * 24 * 3_600_000).toISOString();
  fs.writeFileSync(path.join(locks, '00000000000000f0.json'), JSON.stringify({ kind: 'exclusive', pid: 7, host: 'clock-ahead', purpose: 'prune', createdAt: future, heartbeatAt: future }));
  const hourAgo = new Date(Date.now() - 3_600_000);
  fs.utimesSync(path.join(locks, '00000000000000f0.json'), hourAgo, hourAgo);
  fs.writeFileSync(path.join(locks, '00000000000000ba.json'), 'garbage{');

  const verify = await vcbt(['verify', '--repo', f.dir]);
  assert.equal(verify.code, 0, verify.stderr);
  const pruned = await vcbt(['prune', '--repo', f.dir, '--keep-last', '5', '--dry-run']);
  assert.equal(pruned.code, 0, pruned.stderr);
  assert.match(pruned.stdout, /stale lock 00000000000000f0 \(exclusive lock: heartbeat \d+ s in the future \(wrong clock\?\), file written 36\d\d s ago/);
  assert.match(pruned.stdout, /stale lock 00000000000000ba \(unknown lock: unreadable lock file \(it is not JSON\)\)/);

  // A live-looking lock of another host, and one of this very process.
  const now = new Date().toISOString();
  fs.writeFileSync(path.join(locks, '0000000000000aaa.json'), JSON.stringify({ kind: 'shared', pid: 7, host: 'other-host', purpose: 'backup', createdAt: now, heartbeatAt: now }));
  fs.writeFileSync(path.join(locks, '0000000000000bbb.json'), JSON.stringify({ kind: 'shared', pid: process.pid, host: os.hostname(), purpose: 'backup', createdAt: now, heartbeatAt: now }));
  const unlocked = await vcbt(['unlock', '--repo', f.dir]);
  assert.equal(unlocked.code, 0);
  assert.match(unlocked.stdout, /^removed 00000000000000f0 {2}exclusive lock of pid 7 on clock-ahead for prune/m);
  assert.match(unlocked.stdout, /^removed 00000000000000ba {2}unreadable/m);
  assert.match(unlocked.stdout, /^kept {4}0000000000000aaa/m);
  assert.deepEqual(fs.readdirSync(locks).sort(), ['0000000000000aaa.json', '0000000000000bbb.json']);

  const refused = await vcbt(['unlock', '--repo', f.dir, '--lock', '0000000000000aaa']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /REPO_LOCK_LIVE: lock 0000000000000aaa looks live .*give --force/);
  const own = await vcbt(['unlock', '--repo', f.dir, '--lock', '0000000000000bbb', '--force']);
  assert.equal(own.code, 1);
  assert.match(own.stderr, new RegExp(`REPO_LOCK_LIVE: lock 0000000000000bbb belongs to process ${process.pid}, which is running on this host`));
  const forced = await vcbt(['unlock', '--repo', f.dir, '--lock', '0000000000000aaa', '--force']);
  assert.equal(forced.code, 0);
  assert.match(forced.stdout, /^removed 0000000000000aaa/m);
  assert.match((await vcbt(['unlock', '--repo', f.dir, '--lock', '../config'])).stderr, /REPO_INVALID_NAME/);
  assert.match((await vcbt(['unlock', '--repo', f.dir, '--lock', '0000000000000ccc'])).stderr, /REPO_LOCK_NOT_FOUND/);
  assert.equal((await vcbt(['unlock', '--repo', f.dir, '--force'])).code, 2, '--force alone is a usage error');
});
