// Rounds of random guest writes + `vcbt replicate` against the lab: each round leaves every
// target byte-identical to the VM's disk at that round's snapshot (the lab's sha256), with
// each transport, two disks of odd sizes, paging forced to one area per reply, and one
// injected transport cut per run. The snapshot is gone after every run, also after failures.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLab, type Lab } from '../lab/lab.ts';
import { randomGuestWrites as guestWrites } from '../lab/guest-writes.ts';
import { replicate as replicateJob } from '../../src/jobs/replicate.ts';
import { connect } from '../../src/vsphere/vsphere.ts';
import { labConnection, runCli } from '../helpers/cli-runner.ts';
import { startNbdkit } from '../nbd/peers.ts';

const vm = 'DC0_H0_VM0';
let lab: Lab;
let dir: string;
let connection: ReturnType<typeof labConnection>;

before(async () => {
  lab = await startLab();
  dir = await mkdtemp(join(tmpdir(), 'vcbt-replicate-'));
  connection = labConnection(lab);
  const enabled = await runCli(['cbt', 'enable', '--vm', vm, ...connection.flags], connection.env);
  assert.equal(enabled.code, 0, enabled.stderr);
  await lab.config({ maxAreasPerReply: 1 });
});

after(async () => {
  await lab?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function randomGuestWrites(seed: number): Promise<void> {
  return guestWrites(lab, vm, seed, { count: 6, maxWriteBytes: 200_000 });
}

interface Summary {
  snapshot: string;
  cbtResetReason: string | null;
  disks: Array<{ deviceKey: number; target: string; mode: string; reason: string; bytesCopied: number; changeId: string }>;
}

async function replicate(transportFlags: string[], extra: string[] = []): Promise<Summary> {
  const disks = lab.info.vms.find((v) => v.name === vm)!.disks;
  const targets = disks.flatMap((d) => ['--disk', `${d.key}=${join(dir, `${transportFlags[1]}-${d.key}.raw`)}`]);
  const result = await runCli(['replicate', '--vm', vm, ...targets, ...transportFlags, ...extra, '--json', ...connection.flags], connection.env);
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(await lab.snapshots(vm), [], 'the replication snapshot is removed');
  return JSON.parse(result.stdout) as Summary;
}

async function assertTargetsMatchLiveDisks(summary: Summary): Promise<void> {
  for (const d of summary.disks) {
    const expected = await lab.sha256(vm, d.deviceKey);
    assert.equal(sha(await readFile(d.target)), expected.sha256, `disk ${d.deviceKey} target ${d.target}`);
  }
}

async function datastoreDir(): Promise<string> {
  const root = join(lab.stateDir, 'datastores');
  const name = (await readdir(root)).find((n) => n.includes('LocalDS_0'));
  assert.ok(name, `a LocalDS_0 directory under ${root}`);
  return join(root, name);
}

async function rounds(transportFlags: string[], cut: () => Promise<void>): Promise<void> {
  await randomGuestWrites(1);
  const first = await replicate(transportFlags);
  assert.deepEqual(first.disks.map((d) => d.mode), ['full', 'full']);
  assert.match(first.disks[0].reason, /no replica state/);
  await assertTargetsMatchLiveDisks(first);
  for (let round = 2; round <= 3; round++) {
    await randomGuestWrites(round * 17);
    await cut();
    const next = await replicate(transportFlags);
    assert.deepEqual(await lab.faultsArmed(), {}, 'the injected cut happened during the run');
    assert.deepEqual(next.disks.map((d) => d.mode), ['incremental', 'incremental']);
    for (const d of next.disks) assert.ok(d.bytesCopied < 1_500_000, `incremental copies only changed blocks, copied ${d.bytesCopied}`);
    await assertTargetsMatchLiveDisks(next);
  }
}

test('http transport: rounds stay byte-identical through a cut connection', async () => {
  await rounds(['--transport', 'http'], () => lab.faults({ httpCutAfterBytes: 100_000 }));
});

test('nbd transport (export-name template): rounds stay byte-identical through a cut connection', async () => {
  assert.ok(lab.info.nbdUriTemplate.includes('{snapshot}'));
  await rounds(['--transport', 'nbd', '--nbd-uri', lab.info.nbdUriTemplate], () => lab.faults({ nbdCutAfterBytes: 300_000 }));
});

test('file transport (datastore mounted locally): rounds stay byte-identical', async () => {
  await rounds(['--transport', 'file', '--datastore-dir', `LocalDS_0=${await datastoreDir()}`], async () => {});
});

test('vddk transport: nbdkit-vddk command line driven against the lab through a stand-in', async () => {
  // The stand-in receives exactly what a real nbdkit vddk would, finds the disk named by
  // vm=moref=, snapshot= and file= in the lab, and serves the lab's frozen NBD export of it
  // through the real nbdkit with the same filters the launcher asked for.
  const standin = join(dir, 'nbdkit-vddk-standin.mjs');
  await writeFile(standin, `#!/usr/bin/env node
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
const args = process.argv.slice(2);
const value = (k) => args.find((a) => a.startsWith(k + '='))?.slice(k.length + 1);
writeFileSync(${JSON.stringify(join(dir, 'vddk-args.json'))}, JSON.stringify(args));
const control = ${JSON.stringify(lab.info.control)};
const vmName = ${JSON.stringify(lab.info.vms.map((v) => [v.moref, v.name]))}.find(([m]) => m === value('vm').replace('moref=', ''))[1];
const snaps = await (await fetch(control + '/vms/' + vmName + '/snapshots')).json();
const snap = snaps.find((s) => s.moref === value('snapshot'));
const disk = snap.disks.find((d) => d.file === value('file'));
const exp = await (await fetch(control + '/vms/' + vmName + '/disks/' + disk.key + '/nbd?snapshot=' + snap.moref, { method: 'POST' })).json();
const at = (flag) => args[args.indexOf(flag) + 1];
const filters = args.filter((a) => a.startsWith('--filter='));
const child = spawn('nbdkit', ['--exit-with-parent', '--foreground', '--readonly', '--unix', at('--unix'), '--pidfile', at('--pidfile'), ...filters, 'nbd', 'uri=' + exp.uri], { stdio: 'inherit' });
process.on('SIGTERM', () => child.kill());
child.on('exit', (code) => process.exit(code ?? 0));
`);
  await chmod(standin, 0o755);
  const nodeBin = join(process.cwd(), 'node_modules', '.bin', 'node');
  const wrapper = join(dir, 'nbdkit-standin.sh');
  await writeFile(wrapper, `#!/bin/sh\nexec ${nodeBin} ${standin} "$@"\n`);
  await chmod(wrapper, 0o755);
  // The cut lands between nbdkit and the lab (where ESXi would be): nbdkit's retry filter,
  // which the launcher always adds, reopens the connection.
  // An unpacked VDDK's shape (lib64/) is checked before any snapshot; the stand-in needs no more.
  const libdir = join(dir, 'vmware-vix-disklib-distrib');
  await mkdir(join(libdir, 'lib64'), { recursive: true });
  const missing = await runCli(['replicate', '--vm', vm, '--to', dir, '--transport', 'vddk', '--vddk-libdir', join(dir, 'nowhere'), ...connection.flags], connection.env);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /VDDK_OPTIONS: --vddk-libdir .*nowhere is not an unpacked VDDK: it has no lib64/);
  assert.deepEqual(await lab.snapshots(vm), [], 'no snapshot was taken');
  await rounds(['--transport', 'vddk', '--vddk-libdir', libdir, '--nbdkit', wrapper], () => lab.faults({ nbdCutAfterBytes: 300_000 }));
  const args = JSON.parse(await readFile(join(dir, 'vddk-args.json'), 'utf8')) as string[];
  assert.ok(args.includes('vddk') && args.includes(`thumbprint=${lab.info.thumbprintSha1}`), args.join(' '));
  assert.ok(!args.join(' ').includes(lab.info.password), 'password never in argv');
});

test('a refused ChangeId falls back to a full copy and says why; a resized disk gets a full copy', async () => {
  const flags = ['--transport', 'http'];
  // Its own baseline: the targets hold a replica with a ChangeId to refuse.
  await randomGuestWrites(98);
  await replicate(flags);
  await randomGuestWrites(99);
  await lab.faults({ queryChangedDiskAreas: { fault: 'FileFault', count: 1 } });
  const refused = await replicate(flags);
  assert.equal(refused.disks[0].mode, 'full');
  assert.match(refused.disks[0].reason, /refused the recorded ChangeId/);
  await assertTargetsMatchLiveDisks(refused);

  const disk = lab.info.vms.find((v) => v.name === vm)!.disks[1];
  await lab.resize(vm, disk.key, disk.capacityBytes + 1024 * 1024);
  await lab.write(vm, disk.key, disk.capacityBytes + 5000, randomBytes(70_000));
  // KB 2090639: a grown disk makes vcbt reset CBT before the snapshot, so every disk is copied in full.
  const resized = await replicate(flags);
  assert.match(resized.cbtResetReason ?? '', new RegExp(`disk ${disk.key} is now ${disk.capacityBytes + 1024 * 1024} bytes`));
  assert.equal(resized.disks[1].mode, 'full');
  assert.match(resized.disks[1].reason, /capacity changed/);
  assert.equal(resized.disks[0].mode, 'full');
  assert.match(resized.disks[0].reason, /refused the recorded ChangeId.*CBT was reset/);
  await assertTargetsMatchLiveDisks(resized);
  await randomGuestWrites(100);
  const after = await replicate(flags);
  assert.equal(after.cbtResetReason, null);
  assert.deepEqual(after.disks.map((d) => d.mode), ['incremental', 'incremental']);
  await assertTargetsMatchLiveDisks(after);
});

test('a failing run still removes its snapshot and leaves the recorded state usable', async () => {
  const [first, second] = lab.info.vms.find((v) => v.name === vm)!.disks;
  const result = await runCli(['replicate', '--vm', vm, '--disk', `${first.key}=${join(dir, 'other.raw')}`, '--disk', `${second.key}=nbd+unix:///?socket=/nonexistent.sock`, '--transport', 'http', ...connection.flags], connection.env);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /nonexistent\.sock/);
  assert.deepEqual(await lab.snapshots(vm), []);
});

test('Ctrl-C in the middle of a copy: snapshot removed, state says in progress, the next run completes it', async () => {
  const disks = lab.info.vms.find((v) => v.name === vm)!.disks;
  const targets = new Map(disks.map((d) => [d.key, join(dir, `abort-${d.key}.raw`)]));
  const session = await connect({ server: lab.info.sdk, username: lab.info.username, password: lab.info.password, thumbprint: lab.info.thumbprintSha1 });
  try {
    const options = { session, vm: { name: vm }, targets, transport: { transport: 'http' as const }, env: {}, maxInFlight: 1 };
    await replicateJob(options); // a baseline for every target
    for (const d of disks) await lab.write(vm, d.key, 0, randomBytes(3 * 1024 * 1024));
    const controller = new AbortController();
    await assert.rejects(
      replicateJob({ ...options, signal: controller.signal, onProgress: () => controller.abort(new Error('interrupted by SIGINT')) }),
      /interrupted by SIGINT/,
    );
    assert.deepEqual(await lab.snapshots(vm), [], 'the snapshot is removed after the interruption');
    const state = JSON.parse(await readFile(`${targets.get(disks[0].key)}.vcbt-replica.json`, 'utf8')) as { inProgress: unknown; changeId: string | null };
    assert.ok(state.inProgress, 'the state records the interrupted copy');
    assert.ok(state.changeId, 'and keeps the ChangeId the target last fully matched');

    const resumed = await replicateJob(options);
    assert.deepEqual(resumed.disks.map((d) => d.mode), ['incremental', 'incremental']);
    for (const d of resumed.disks) assert.equal(sha(await readFile(d.target)), (await lab.sha256(vm, d.deviceKey)).sha256);
  } finally {
    await session.logout();
  }
});

test('one target failing mid-copy: the other disk completes, the run exits 3 (partial) and names the failed disk', async () => {
  const [first, second] = lab.info.vms.find((v) => v.name === vm)!.disks;
  // A target that opens and has the right size (so it passes the checks before the
  // snapshot) but fails every write: nbdkit's error filter on a memory disk.
  const failing = await startNbdkit(['memory', `size=${second.capacityBytes}`, 'error-pwrite=EIO', 'error-pwrite-rate=100%', 'error-zero=EIO', 'error-zero-rate=100%'], { before: ['--filter=error'] });
  try {
    await randomGuestWrites(321);
    const good = join(dir, 'partial-2000.raw');
    const result = await runCli(['replicate', '--vm', vm, '--disk', `${first.key}=${good}`, '--disk', `${second.key}=${failing.uri}`, '--state-dir', join(dir, 'partial-state'), '--json', ...connection.flags], connection.env);
    assert.equal(result.code, 3, result.stderr);
    const summary = JSON.parse(result.stdout) as Summary & { failedDisks: Array<{ deviceKey: number; code: string; message: string }> };
    assert.deepEqual(summary.disks.map((d) => d.deviceKey), [first.key]);
    assert.deepEqual(summary.failedDisks.map((f) => f.deviceKey), [second.key]);
    assert.match(summary.failedDisks[0].code, /^NBD_E/);
    assert.match(result.stderr, new RegExp(`disk ${second.key} failed .*the other disks go on`));
    assert.equal(sha(await readFile(good)), (await lab.sha256(vm, first.key)).sha256);
    assert.deepEqual(await lab.snapshots(vm), []);
  } finally {
    await failing.stop();
  }
});
