// Sessions that end in the middle of a job (vCenter's 30-minute idle expiry, a vCenter
// restart): the lab ends every session just before one SOAP call of a `vcbt backup` and of a
// `vcbt replicate`, in turn for every call the job makes after logging in (the sequence is
// learned from a clean run). Each run must complete, log its re-login, remove its snapshot
// and be byte-exact: every restore point restores to the lab's sha256 of the disk at the
// snapshot, every replica equals it. Property reads of an ended session answer as vCenter
// does (HTTP 200, NotAuthenticated in missingSet), other calls with a SOAP fault.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLab, type Lab } from '../lab/lab.ts';
import { randomGuestWrites } from '../lab/guest-writes.ts';
import { labConnection, runCli } from '../helpers/cli-runner.ts';

const vm = 'DC0_H0_VM0';
const MiB = 1024 * 1024;
let lab: Lab;
let dir: string;
let connection: ReturnType<typeof labConnection>;

before(async () => {
  lab = await startLab({ diskSizes: [6 * MiB + 3072, 3 * MiB + 512 * 1024] });
  dir = await mkdtemp(join(tmpdir(), 'vcbt-session-expiry-'));
  connection = labConnection(lab);
  const enabled = await runCli(['cbt', 'enable', '--vm', vm, ...connection.flags], connection.env);
  assert.equal(enabled.code, 0, enabled.stderr);
  // Several pages per disk, so QueryChangedDiskAreas is called more than once.
  await lab.config({ maxAreasPerReply: 2 });
});

after(async () => {
  await lab?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const disks = () => lab.info.vms.find((v) => v.name === vm)!.disks;
const reloginLogged = /vcbt: logged in to \S+ again: (\w+ answered NotAuthenticated|datastore HTTP asked for a new session cookie)/;

/** SOAP calls of one clean run of `args`, in order. */
async function learnCalls(args: string[]): Promise<string[]> {
  await lab.clearSoapCalls();
  const result = await runCli([...args, ...connection.flags], connection.env);
  assert.equal(result.code, 0, result.stderr);
  const calls = await lab.soapCalls();
  assert.deepEqual(calls.slice(0, 2), ['RetrieveServiceContent', 'Login']);
  assert.equal(calls.at(-1), 'Logout');
  return calls;
}

/**
 * Runs `args` once per distinct SOAP method after Login (at its first position in a clean
 * run), with every session ended just before that call; `check` verifies each run's bytes.
 */
async function expireBeforeEachCall(args: string[], check: (stdout: string) => Promise<void>, seed: number): Promise<string[]> {
  const calls = await learnCalls(args);
  await check((await runCli([...args, ...connection.flags], connection.env)).stdout);
  for (let index = 2; index < calls.length; index++) {
    const method = calls[index];
    if (calls.indexOf(method) !== index) continue;
    await randomGuestWrites(lab, vm, seed + index, { count: 3, maxWriteBytes: 100_000 });
    await lab.faults({ expireSessionsBeforeCall: index + 1 }); // the next request is call 0 of the run
    const result = await runCli([...args, ...connection.flags], connection.env);
    const where = `sessions ended before call ${index} (${method})`;
    assert.equal(result.code, 0, `${where}: ${result.stderr}`);
    assert.deepEqual(await lab.faultsArmed(), {}, `${where}: the expiry fired`);
    // An ended session needs no Logout; every other call finds it ended and logs in again.
    if (method !== 'Logout') assert.match(result.stderr, reloginLogged, where);
    assert.deepEqual(await lab.snapshots(vm), [], `${where}: the snapshot is removed`);
    await check(result.stdout);
  }
  return calls;
}

test('backup: sessions ended before each SOAP call in turn; every run re-logs in and every point restores byte-exactly', async () => {
  const repo = join(dir, 'repo');
  assert.equal((await runCli(['init', '--repo', repo])).code, 0);
  await randomGuestWrites(lab, vm, 1, { count: 5, maxWriteBytes: 150_000 });
  const first = await runCli(['backup', '--vm', vm, '--repo', repo, '--json', ...connection.flags], connection.env);
  assert.equal(first.code, 0, first.stderr);
  const check = async (stdout: string) => {
    const summary = JSON.parse(stdout) as { pointId: string; disks: Array<{ deviceKey: number; mode: string }> };
    assert.deepEqual(summary.disks.map((d) => d.mode), ['incremental', 'incremental']);
    for (const disk of disks()) {
      const target = join(dir, `restore-${disk.key}.raw`);
      const restored = await runCli(['restore', '--repo', repo, '--point', summary.pointId, '--disk', String(disk.key), '--to', target, '--json']);
      assert.equal(restored.code, 0, restored.stderr);
      // Nothing wrote since the backup: the live disk is the disk at the snapshot.
      assert.equal(sha(await readFile(target)), (await lab.sha256(vm, disk.key)).sha256, `point ${summary.pointId} disk ${disk.key}`);
      await rm(target);
    }
  };
  const calls = await expireBeforeEachCall(['backup', '--vm', vm, '--repo', repo, '--json'], check, 100);
  for (const method of ['CreateContainerView', 'DestroyView', 'CreateSnapshot_Task', 'QueryChangedDiskAreas', 'RemoveSnapshot_Task', 'RetrievePropertiesEx']) {
    assert.ok(calls.includes(method), `the backup calls ${method}`);
  }
});

test('replicate: sessions ended before each SOAP call in turn; every run re-logs in and every replica is byte-exact', async () => {
  const targets = disks().flatMap((d) => ['--disk', `${d.key}=${join(dir, `replica-${d.key}.raw`)}`]);
  const args = ['replicate', '--vm', vm, ...targets, '--transport', 'http', '--json'];
  await randomGuestWrites(lab, vm, 2, { count: 5, maxWriteBytes: 150_000 });
  const first = await runCli([...args, ...connection.flags], connection.env);
  assert.equal(first.code, 0, first.stderr);
  const check = async (stdout: string) => {
    const summary = JSON.parse(stdout) as { disks: Array<{ deviceKey: number; target: string; mode: string }> };
    assert.deepEqual(summary.disks.map((d) => d.mode), ['incremental', 'incremental']);
    for (const d of summary.disks) assert.equal(sha(await readFile(d.target)), (await lab.sha256(vm, d.deviceKey)).sha256, `disk ${d.deviceKey} replica`);
  };
  const calls = await expireBeforeEachCall(args, check, 200);
  for (const method of ['CreateSnapshot_Task', 'QueryChangedDiskAreas', 'RemoveSnapshot_Task']) assert.ok(calls.includes(method), `replicate calls ${method}`);
});
