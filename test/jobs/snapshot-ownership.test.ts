// One VM is never hurt by two runs: real vcbt processes against the lab. A live run's snapshot
// is never removed (VM_BUSY, or a bounded wait); leftovers of dead runs (a SIGKILLed process on
// this host, an expired lease of another host) are removed; two runs started together both
// commit, one after the other, byte-identical; a run whose snapshot is removed under it by
// another client commits nothing (SNAPSHOT_LOST). No snapshot is left behind by any of them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { backup as backupJob } from '../../src/jobs/backup.ts';
import { Repository } from '../../src/repository/repository.ts';
import { connect, createSnapshot, findVm, listSnapshots, parseSnapshotOwner, removeSnapshot, serverTime, type VsphereSession } from '../../src/vsphere/vsphere.ts';
import { startLab, type Lab } from '../lab/lab.ts';
import { labConnection, runCli } from '../helpers/cli-runner.ts';

const vm = 'DC0_H0_VM0';
const bin = resolve(import.meta.dirname, '..', '..', 'bin', 'vcbt.ts');
let lab: Lab;
let dir: string;
let connection: ReturnType<typeof labConnection>;
let session: VsphereSession;

before(async () => {
  lab = await startLab({ diskSizes: [24 * 1024 * 1024, 8 * 1024 * 1024] });
  dir = await mkdtemp(join(tmpdir(), 'vcbt-owner-'));
  connection = labConnection(lab);
  const enabled = await runCli(['cbt', 'enable', '--vm', vm, ...connection.flags], connection.env);
  assert.equal(enabled.code, 0, enabled.stderr);
  for (const disk of lab.info.vms.find((v) => v.name === vm)!.disks) await lab.write(vm, disk.key, 0, randomBytes(disk.capacityBytes - 4096));
  session = await connect({ server: lab.info.sdk, username: lab.info.username, password: lab.info.password, thumbprint: lab.info.thumbprintSha1 });
});

after(async () => {
  await session?.logout();
  await lab?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function newRepo(name: string): Promise<string> {
  const repo = join(dir, name);
  const init = await runCli(['init', '--repo', repo]);
  assert.equal(init.code, 0, init.stderr);
  return repo;
}

interface Child {
  code: Promise<number | null>;
  stdout: () => string;
  stderr: () => string;
  /** Resolves when stderr has printed a line matching `pattern`. */
  waitFor: (pattern: RegExp) => Promise<void>;
  kill: (signal: NodeJS.Signals) => void;
}

function vcbt(args: string[]): Child {
  const child = spawn(process.execPath, [bin, ...args, ...connection.flags], { env: { ...process.env, ...connection.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters: Array<{ pattern: RegExp; resolve: () => void }> = [];
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
    for (const w of waiters.filter((w) => w.pattern.test(err))) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  });
  let exited = false;
  const code = new Promise<number | null>((resolve) =>
    child.on('exit', (c) => {
      exited = true;
      resolve(c);
    }),
  );
  const waitFor = async (pattern: RegExp) => {
    if (pattern.test(err)) return;
    if (exited) throw new Error(`vcbt ${args[0]} exited before printing ${pattern}: ${err}`);
    await Promise.race([
      new Promise<void>((resolve) => waiters.push({ pattern, resolve })),
      code.then(() => {
        if (!pattern.test(err)) throw new Error(`vcbt ${args[0]} exited before printing ${pattern}: ${err}`);
      }),
    ]);
  };
  return {
    code,
    stdout: () => out,
    stderr: () => err,
    waitFor,
    kill: (signal) => child.kill(signal),
  };
}

/** A snapshot owned by someone else, as another vcbt run would have written it. */
async function foreignSnapshot(owner: { host: string; pid: number; leaseMs: number }): Promise<string> {
  const target = await findVm(session, { name: vm });
  const now = await serverTime(session);
  const created = await createSnapshot(session, target, {
    purpose: 'backup',
    owner: { host: owner.host, pid: owner.pid, run: 'other-run', started: now.toISOString(), lease: new Date(now.getTime() + owner.leaseMs).toISOString() },
  });
  return created.value;
}

async function restoredSha(repo: string, pointId: string, key: number): Promise<string> {
  const to = join(dir, `restore-${pointId}-${key}.raw`);
  const restored = await runCli(['restore', '--repo', repo, '--point', pointId, '--disk', String(key), '--to', to]);
  assert.equal(restored.code, 0, restored.stderr);
  const digest = sha(await readFile(to));
  await rm(to);
  return digest;
}

test("a live run's snapshot is never removed: VM_BUSY names its owner; --wait-busy waits for it to go", async () => {
  const repo = await newRepo('busy');
  const held = await foreignSnapshot({ host: 'backup-host-2.example', pid: 4242, leaseMs: 600_000 });
  const refused = await runCli(['backup', '--vm', vm, '--repo', repo, ...connection.flags], connection.env);
  assert.equal(refused.code, 1, refused.stderr);
  assert.match(refused.stderr, /VM_BUSY: VM "DC0_H0_VM0" is busy: another vcbt run \(host backup-host-2\.example, pid 4242, started [^)]+\) owns snapshot/);
  assert.deepEqual((await lab.snapshots(vm)).map((s) => s.moref), [held], 'the live snapshot stays, no snapshot of ours is left');
  assert.deepEqual(await (await Repository.open(repo)).listRestorePoints(), []);

  // The owner finishes after a moment; a run allowed to wait then goes ahead.
  const waiting = vcbt(['backup', '--vm', vm, '--repo', repo, '--wait-busy', '30s', '--json']);
  await waiting.waitFor(/is busy .*waiting up to/);
  await removeSnapshot(session, await findVm(session, { name: vm }), { type: 'VirtualMachineSnapshot', value: held });
  assert.equal(await waiting.code, 0, waiting.stderr());
  assert.deepEqual(await lab.snapshots(vm), []);
});

test('leftovers of dead runs are removed: a SIGKILLed process on this host, an expired lease of another host', async () => {
  const repo = await newRepo('leftovers');
  const killed = vcbt(['backup', '--vm', vm, '--repo', repo]);
  await killed.waitFor(/snapshot snapshot-\d+ "vcbt-backup-[^"]+" taken/);
  killed.kill('SIGKILL');
  await killed.code;
  const expired = await foreignSnapshot({ host: 'backup-host-3.example', pid: 77, leaseMs: -1000 });
  const left = (await lab.snapshots(vm)).map((s) => s.moref);
  assert.equal(left.length, 2, `the expired one and the killed run's: ${left.join(', ')}`);

  const result = await runCli(['backup', '--vm', vm, '--repo', repo, '--json', ...connection.flags], connection.env);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, new RegExp(`removing leftover snapshot ${expired} .*lease \\(host backup-host-3\\.example, pid 77\\) expired`));
  assert.match(result.stderr, /removing leftover snapshot .*its owner, process \d+ on this host, is gone/);
  const summary = JSON.parse(result.stdout) as { pointId: string; leftoverSnapshotsRemoved: string[] };
  assert.deepEqual([...summary.leftoverSnapshotsRemoved].sort(), [...left].sort());
  assert.deepEqual(await lab.snapshots(vm), []);
  for (const key of [2000, 2001]) assert.equal(await restoredSha(repo, summary.pointId, key), (await lab.sha256(vm, key)).sha256);
});

test('two backups and a replicate of one VM started together: each commits in turn, byte-identical, no snapshot left', async () => {
  const repoA = await newRepo('together-a');
  const repoB = await newRepo('together-b');
  const replica = join(dir, 'together-replica.raw');
  const want = new Map<number, string>();
  for (const key of [2000, 2001]) want.set(key, (await lab.sha256(vm, key)).sha256);
  const runs = [
    vcbt(['backup', '--vm', vm, '--repo', repoA, '--wait-busy', '2m', '--json']),
    vcbt(['backup', '--vm', vm, '--repo', repoB, '--wait-busy', '2m', '--json']),
    vcbt(['replicate', '--vm', vm, '--disk', `2000=${replica}`, '--wait-busy', '2m', '--json']),
  ];
  const codes = await Promise.all(runs.map((r) => r.code));
  assert.deepEqual(codes, [0, 0, 0], runs.map((r) => r.stderr()).join('\n---\n'));
  assert.ok(runs.some((r) => /is busy/.test(r.stderr())), 'at least one run waited for another');
  assert.deepEqual(await lab.snapshots(vm), []);
  for (const [i, repo] of [repoA, repoB].entries()) {
    const { pointId } = JSON.parse(runs[i].stdout()) as { pointId: string };
    for (const [key, digest] of want) assert.equal(await restoredSha(repo, pointId, key), digest, `${repo} disk ${key}`);
  }
  assert.equal(sha(await readFile(replica)), want.get(2000));
});

test('a snapshot removed by another client mid-run: SNAPSHOT_LOST, nothing committed, nothing left', async () => {
  const repoPath = await newRepo('lost');
  const repository = await Repository.open(repoPath);
  const other = await connect({ server: lab.info.sdk, username: lab.info.username, password: lab.info.password, thumbprint: lab.info.thumbprintSha1 });
  // The run's own session, with one hook: right after the areas are known, another client
  // removes the run's snapshot (the disk consolidates) and the guest writes on.
  const own = await connect({ server: lab.info.sdk, username: lab.info.username, password: lab.info.password, thumbprint: lab.info.thumbprintSha1 });
  const call = own.call.bind(own);
  let removed = false;
  own.call = async (method, thisRef, params, options) => {
    const reply = await call(method, thisRef, params, options);
    if (method === 'QueryChangedDiskAreas' && !removed) {
      removed = true;
      await removeSnapshot(other, await findVm(other, { name: vm }), (params?.snapshot as { $ref: { type: string; value: string } }).$ref);
      await lab.write(vm, 2000, 0, randomBytes(1024 * 1024));
    }
    return reply;
  };
  try {
    await assert.rejects(
      backupJob({ session: own, vm: { name: vm }, repository, diskKeys: [2000], transport: { transport: 'http' } }),
      (error: { code?: string; message?: string }) => error.code === 'SNAPSHOT_LOST' && /nothing was committed/.test(error.message ?? ''),
    );
  } finally {
    await own.logout();
    await other.logout();
    await repository.close();
  }
  assert.ok(removed);
  assert.deepEqual(await (await Repository.open(repoPath)).listRestorePoints(), [], 'no restore point');
  assert.deepEqual(await lab.snapshots(vm), []);
});

test('a working run renews the lease in its owner record', async () => {
  const repoPath = await newRepo('lease');
  const repository = await Repository.open(repoPath);
  const own = await connect({ server: lab.info.sdk, username: lab.info.username, password: lab.info.password, thumbprint: lab.info.thumbprintSha1 });
  const leaseNow = async () => {
    const target = await findVm(session, { name: vm });
    const owned = (await listSnapshots(session, target)).map((s) => parseSnapshotOwner(s.description)).filter((o) => o !== undefined);
    assert.equal(owned.length, 1);
    return owned[0];
  };
  const call = own.call.bind(own);
  const seen: Array<{ host: string; pid: number; lease: string }> = [];
  own.call = async (method, thisRef, params, options) => {
    const reply = await call(method, thisRef, params, options);
    if (method === 'QueryChangedDiskAreas' && seen.length === 0) {
      seen.push(await leaseNow());
      await new Promise((resolve) => setTimeout(resolve, 1500));
      seen.push(await leaseNow());
    }
    return reply;
  };
  try {
    const result = await backupJob({ session: own, vm: { name: vm }, repository, diskKeys: [2001], transport: { transport: 'http' }, snapshotLeaseMs: 600 });
    assert.ok(result.pointId);
  } finally {
    await own.logout();
    await repository.close();
  }
  assert.equal(seen[0].host, hostname());
  assert.equal(seen[0].pid, process.pid);
  assert.ok(Date.parse(seen[1].lease) > Date.parse(seen[0].lease), `lease renewed: ${seen[0].lease} -> ${seen[1].lease}`);
  assert.deepEqual(await lab.snapshots(vm), []);
});
