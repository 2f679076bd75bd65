import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, writeFile, stat, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchVddk, vddkArguments, VddkError, type VddkDisk } from '../../src/vddk/launcher.ts';

const run = promisify(execFile);
const standin = join(import.meta.dirname, 'nbdkit-standin.sh');

const disk: VddkDisk = {
  server: 'vcenter.example.com',
  user: 'administrator@vsphere.local',
  password: 's3cret pass',
  thumbprintSha1: '96:09:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd',
  vmMoref: 'vm-10',
  snapshotMoref: 'snapshot-20',
  file: '[datastore2] src/src.vmdk',
  libdir: '/opt/vmware-vix-disklib-distrib',
};

test('command line names the disk at the snapshot, with the password only as a file', () => {
  const args = vddkArguments(disk, { socketPath: '/r/s.sock', pidFile: '/r/p', passwordFile: '/r/pw' });
  assert.deepEqual(args, [
    '--exit-with-parent', '--foreground', '--unix', '/r/s.sock', '--pidfile', '/r/p', '--readonly',
    '--filter=cacheextents', '--filter=retry', 'vddk',
    'libdir=/opt/vmware-vix-disklib-distrib', 'server=vcenter.example.com', 'user=administrator@vsphere.local',
    'password=+/r/pw', 'thumbprint=96:09:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD',
    'vm=moref=vm-10', 'snapshot=snapshot-20', 'transports=nbdssl:nbd', 'file=[datastore2] src/src.vmdk',
  ]);
  assert.ok(!args.join(' ').includes(disk.password));
});

test('bad thumbprint, moref or file path is refused before anything runs', () => {
  const paths = { socketPath: 's', pidFile: 'p', passwordFile: 'w' };
  for (const bad of [{ thumbprintSha1: '96:09' }, { vmMoref: 'vm 10; rm' }, { file: 'src.vmdk' }, { server: 'https://vc/' }]) {
    assert.throws(() => vddkArguments({ ...disk, ...bad }, paths), (e: unknown) => e instanceof VddkError && e.code === 'VDDK_OPTIONS');
  }
});

test('launch serves the disk over NBD, removes the password file once ready, cleans up on close', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vcbt-vddk-test-'));
  try {
    const image = join(dir, 'disk.raw');
    const bytes = randomBytes(3 * 1024 * 1024 + 512);
    await writeFile(image, bytes);
    process.env.STANDIN_IMAGE = image;
    process.env.STANDIN_RECORD = join(dir, 'record');
    const exported = await launchVddk(disk, { nbdkitPath: standin });
    const record = (await readFile(join(dir, 'record'), 'utf8')).split('\n');
    assert.ok(record.includes('vm=moref=vm-10') && record.includes('snapshot=snapshot-20'));
    assert.equal(await readFile(join(dir, 'record.password'), 'utf8'), disk.password);
    const passwordArg = record.find((a) => a.startsWith('password=+'));
    assert.ok(passwordArg);
    await assert.rejects(stat(passwordArg.slice('password=+'.length)), { code: 'ENOENT' });

    const copy = join(dir, 'copy.raw');
    await run('nbdcopy', [exported.uri, copy]);
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    assert.equal(sha(await readFile(copy)), sha(bytes));

    await exported.close();
    assert.throws(() => process.kill(exported.pid, 0), { code: 'ESRCH' });
    await assert.rejects(stat(exported.socketPath), { code: 'ENOENT' });
  } finally {
    delete process.env.STANDIN_FAIL;
    await rm(dir, { recursive: true, force: true });
  }
});

test('nbdkit failing at start-up is an error carrying its message', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vcbt-vddk-test-'));
  try {
    process.env.STANDIN_RECORD = join(dir, 'record');
    process.env.STANDIN_FAIL = '1';
    await assert.rejects(launchVddk(disk, { nbdkitPath: standin }), (e: unknown) =>
      e instanceof VddkError && e.code === 'VDDK_START_FAILED' && /NFC connection refused/.test(e.message) && !e.message.includes(disk.password));
  } finally {
    delete process.env.STANDIN_FAIL;
    await rm(dir, { recursive: true, force: true });
  }
});
