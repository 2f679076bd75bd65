import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { listLocks, RepositoryLock } from '../../src/repository/lock.ts';
import { prune } from '../../src/repository/prune.ts';
import { local, newRepository, tempDir, vm } from './helpers.ts';

const policy = { keepLast: 1, keepDaily: 0, keepWeekly: 0, keepMonthly: 0 };

function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(child.stdout);
}

// Lock names are 16 hex digits; these spell what each planted lock is.
const lockNames = { dead: '00000000000000de', expired: '00000000000000e0', live: '0000000000000011' } as const;

function plantLock(dir: string, name: keyof typeof lockNames, record: Record<string, unknown>): string {
  const file = path.join(dir, 'locks', `${lockNames[name]}.json`);
  fs.writeFileSync(file, JSON.stringify(record));
  return file;
}

test('shared locks coexist; exclusive conflicts with shared and with exclusive, naming the holder', async (t) => {
  const dir = tempDir(t);
  const repo = await newRepository(dir);
  t.after(() => repo.close());
  const a = await repo.lock('shared', 'backup a');
  const b = await repo.lock('shared', 'backup b');
  await assert.rejects(repo.lock('exclusive', 'prune'), (error: Error & { code: string }) => {
    assert.equal(error.code, 'REPO_LOCKED');
    assert.match(error.message, new RegExp(`held by pid ${process.pid} on .* for backup a`));
    return true;
  });
  await assert.rejects(prune(repo, policy), { code: 'REPO_LOCKED' });
  await a.release();
  await b.release();
  const x = await repo.lock('exclusive', 'prune');
  await assert.rejects(repo.lock('shared', 'backup'), { code: 'REPO_LOCKED' });
  await assert.rejects(repo.beginRestorePoint({ vm }), { code: 'REPO_LOCKED' });
  await assert.rejects(repo.lock('exclusive', 'gc'), { code: 'REPO_LOCKED' });
  await x.release();
  assert.deepEqual(fs.readdirSync(path.join(dir, 'locks')), [], 'failed attempts leave no lock files');
});

test('stale locks (dead pid here, expired heartbeat elsewhere) do not block, are reported, and prune removes them', async (t) => {
  const dir = tempDir(t);
  const repo = await newRepository(dir);
  t.after(() => repo.close());
  const now = new Date().toISOString();
  const dead = plantLock(dir, 'dead', { kind: 'exclusive', pid: deadPid(), host: os.hostname(), purpose: 'prune', createdAt: now, heartbeatAt: now });
  const old = new Date(Date.now() - 3_600_000).toISOString();
  const expired = plantLock(dir, 'expired', { kind: 'shared', pid: 1, host: 'some-other-host', purpose: 'backup', createdAt: old, heartbeatAt: old });
  const live = plantLock(dir, 'live', { kind: 'shared', pid: 1, host: 'some-other-host', purpose: 'backup', createdAt: now, heartbeatAt: now });

  const seen = await listLocks(local(dir));
  const state = Object.fromEntries(seen.map((l) => [l.name, l.stale]));
  assert.deepEqual(state, { [lockNames.dead]: true, [lockNames.expired]: true, [lockNames.live]: false });
  assert.match(seen.find((l) => l.file === dead)?.reason ?? '', /no longer exists/);
  assert.match(seen.find((l) => l.file === expired)?.reason ?? '', /heartbeat is 3600 s old/);

  const shared = await repo.lock('shared', 'backup');
  assert.deepEqual(shared.staleLocks.map((l) => l.file).sort(), [dead, expired].sort());
  await shared.release();
  // The live foreign lock blocks prune and is never removed.
  await assert.rejects(prune(repo, policy), { code: 'REPO_LOCKED' });
  assert.ok(fs.existsSync(live) && fs.existsSync(dead));
  fs.rmSync(live);
  const report = await prune(repo, policy);
  assert.equal(report.staleLocks.length, 2);
  assert.deepEqual(fs.readdirSync(path.join(dir, 'locks')), []);
});

test('a writer whose lock was removed as stale refuses to commit', async (t) => {
  const dir = tempDir(t);
  const repo = await newRepository(dir);
  t.after(() => repo.close());
  const writer = await repo.beginRestorePoint({ vm });
  for (const name of fs.readdirSync(path.join(dir, 'locks'))) fs.rmSync(path.join(dir, 'locks', name));
  await assert.rejects(writer.commit(), { code: 'REPO_LOCK_LOST' });
  assert.deepEqual(await repo.listPointIds(), []);
});

test('heartbeats refresh a held lock', async (t) => {
  const dir = tempDir(t);
  await newRepository(dir).then((r) => r.close());
  const lock = await RepositoryLock.acquire(local(dir), 'shared', 'test', { refreshIntervalMs: 20, staleAfterMs: 60_000 });
  const first = JSON.parse(fs.readFileSync(lock.file, 'utf8')).heartbeatAt as string;
  await new Promise((resolve) => setTimeout(resolve, 120));
  await lock.assertHeld();
  const later = JSON.parse(fs.readFileSync(lock.file, 'utf8')).heartbeatAt as string;
  assert.ok(later > first, `${later} > ${first}`);
  await lock.release();
});

test('an open restored disk holds a shared lock until closed, so prune waits for readers', async (t) => {
  const dir = tempDir(t);
  const repo = await newRepository(dir);
  t.after(() => repo.close());
  const writer = await repo.beginRestorePoint({ vm });
  await writer.writeDisk({ deviceKey: 1, label: 'a', capacityBytes: 8192, changeId: null, reader: { async read(_offset, target) { target.fill(1); } } });
  const pointId = await writer.commit();
  const disk = await repo.openDisk(pointId, 1);
  await assert.rejects(prune(repo, policy), { code: 'REPO_LOCKED' });
  await disk.close();
  assert.equal((await prune(repo, policy)).keep.length, 1);
});
