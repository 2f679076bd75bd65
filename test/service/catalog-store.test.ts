// The SQLite catalog on its own (no lab): runs, tasks and log lines round-trip; a running run
// whose owner is gone becomes interrupted with its running tasks, one whose owner lives does
// not; history retention deletes old ended runs with their tasks and logs, never a running
// one; a newer schema is refused with CATALOG_UNAVAILABLE.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { openSqliteCatalog } from '../../src/service/catalog/sqlite.ts';
import { ownerGone, recoverCatalog } from '../../src/service/catalog/record.ts';
import { VcbtError } from '../../src/errors.ts';

const end = { attempts: 1, mode: 'full' as const, reasonCodes: ['NO_BASELINE'], bytesRead: 4096, bytesStored: 1024, pointId: 'p1', error: null, warnings: [] };

test('runs, tasks and log lines round-trip; dead owners are interrupted; old history is pruned', async () => {
  const catalog = openSqliteCatalog(':memory:');
  try {
    const a = await catalog.startRun({ job: 'nightly', jobType: 'backup', trigger: 'schedule', startedAt: '2026-01-01T02:00:00.000Z', host: 'h1', pid: 11 });
    const t = await catalog.startTask(a, { vm: 'vm-a', moref: 'vm-1', host: 'esx1', startedAt: '2026-01-01T02:00:01.000Z' });
    assert.equal(await catalog.startTask(a, { vm: 'vm-a', moref: 'vm-1', host: 'esx1', startedAt: '2026-01-01T02:00:05.000Z' }), t, 'a retry finds the VM\'s task again');
    await catalog.endTask(t, { ...end, status: 'success', endedAt: '2026-01-01T02:01:00.000Z' });
    await catalog.log(a, 'vm-a', '2026-01-01T02:00:02.000Z', 'snapshot taken');
    await catalog.endRun(a, { status: 'success', endedAt: '2026-01-01T02:01:00.000Z', error: null });
    const b = await catalog.startRun({ job: 'nightly', jobType: 'backup', trigger: 'manual', startedAt: '2026-03-01T02:00:00.000Z', host: 'h1', pid: 12 });
    const tb = await catalog.startTask(b, { vm: 'vm-a', moref: 'vm-1', host: 'esx1', startedAt: '2026-03-01T02:00:01.000Z' });
    const c = await catalog.startRun({ job: 'other', jobType: 'replicate', trigger: 'api', startedAt: '2026-03-01T02:00:00.000Z', host: 'h1', pid: 13 });

    assert.deepEqual((await catalog.runs({ job: 'nightly', limit: 10 })).map((r) => [r.id, r.status]), [[b, 'running'], [a, 'success']]);
    assert.deepEqual(await catalog.tasks(a), [{ id: t, runId: a, vm: 'vm-a', moref: 'vm-1', host: 'esx1', status: 'success', startedAt: '2026-01-01T02:00:01.000Z', ...end, endedAt: '2026-01-01T02:01:00.000Z' }]);
    assert.deepEqual(await catalog.logs(a), [{ runId: a, vm: 'vm-a', at: '2026-01-01T02:00:02.000Z', line: 'snapshot taken' }]);
    assert.deepEqual((await catalog.lastGoodTasks()).map((x) => [x.moref, x.runId, x.job, x.pointId]), [['vm-1', a, 'nightly', 'p1']]);
    // Per job and VM: another job's task of the same VM is its own row.
    const tc = await catalog.startTask(c, { vm: 'vm-a', moref: 'vm-1', host: 'esx1', startedAt: '2026-03-01T02:00:02.000Z' });
    assert.deepEqual((await catalog.latestTasks()).map((x) => [x.job, x.id]), [['nightly', tb], ['other', tc]]);
    assert.deepEqual((await catalog.vmTasks('vm-1', 10)).map((x) => [x.job, x.id]), [['other', tc], ['nightly', tb], ['nightly', t]]);
    await catalog.addRepositorySize({ repository: 'main', at: '2026-03-01T03:00:00.000Z', storedBytes: 10, logicalBytes: 100, chunks: 2, points: 1 });
    await catalog.addRepositorySize({ repository: 'main', at: '2026-03-02T03:00:00.000Z', storedBytes: 20, logicalBytes: 200, chunks: 4, points: 2 });
    assert.deepEqual((await catalog.repositorySizes('main', 1)).map((x) => x.storedBytes), [20], 'the newest samples');
    assert.deepEqual((await catalog.repositorySizes('main', 10)).map((x) => x.storedBytes), [10, 20], 'oldest first');

    // pid 12 died, pid 13 lives.
    const marked = await catalog.markInterrupted((host, pid) => host === 'h1' && pid === 12, '2026-03-01T03:00:00.000Z');
    assert.deepEqual(marked.map((r) => [r.id, r.status, r.error?.code]), [[b, 'interrupted', 'INTERRUPTED']]);
    assert.equal((await catalog.run(b))?.status, 'interrupted');
    assert.equal((await catalog.run(c))?.status, 'running');
    const [task] = await catalog.tasks(b);
    assert.deepEqual([task?.id, task?.status, task?.endedAt, task?.error?.code], [tb, 'interrupted', '2026-03-01T03:00:00.000Z', 'INTERRUPTED']);

    // Retention: runs ended before the cut go with their tasks and logs; running ones stay.
    assert.equal(await catalog.pruneHistory('2026-02-01T00:00:00.000Z'), 1);
    assert.equal(await catalog.run(a), undefined);
    assert.deepEqual(await catalog.tasks(a), []);
    assert.deepEqual(await catalog.logs(a), []);
    assert.equal(await catalog.pruneHistory('2027-01-01T00:00:00.000Z'), 1, 'the interrupted run goes, the running one stays');
    assert.equal((await catalog.run(c))?.status, 'running');
  } finally {
    await catalog.close();
  }
});

test('recoverCatalog interrupts runs of processes gone from this host only; ownerGone knows live pids', async () => {
  assert.equal(ownerGone('elsewhere', 1), false, 'another host\'s process is never judged');
  assert.equal(ownerGone(hostname(), process.pid), false, 'this process lives');
  const dir = await mkdtemp(join(tmpdir(), 'vcbt-catalog-'));
  try {
    const catalog = openSqliteCatalog(join(dir, 'sub', 'catalog.sqlite'));
    const dead = await catalog.startRun({ job: 'j', jobType: 'backup', trigger: 'manual', startedAt: new Date().toISOString(), host: hostname(), pid: 2 ** 22 + 7 });
    const mine = await catalog.startRun({ job: 'j', jobType: 'backup', trigger: 'manual', startedAt: new Date().toISOString(), host: hostname(), pid: process.pid });
    const remote = await catalog.startRun({ job: 'j', jobType: 'backup', trigger: 'manual', startedAt: new Date().toISOString(), host: 'other-host', pid: 2 ** 22 + 7 });
    const { interrupted, pruned } = await recoverCatalog(catalog, 86_400_000);
    assert.deepEqual(interrupted.map((r) => r.id), [dead]);
    assert.equal(pruned, 0);
    assert.deepEqual([(await catalog.run(mine))?.status, (await catalog.run(remote))?.status], ['running', 'running']);
    await catalog.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a catalog written by a newer vcbt is refused with CATALOG_UNAVAILABLE', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vcbt-catalog-'));
  try {
    const path = join(dir, 'catalog.sqlite');
    const db = new DatabaseSync(path);
    db.exec('PRAGMA user_version = 99');
    db.close();
    assert.throws(() => openSqliteCatalog(path), (e: unknown) => e instanceof VcbtError && e.code === 'CATALOG_UNAVAILABLE' && e.context.path === path && /schema version 99/.test(e.message));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
