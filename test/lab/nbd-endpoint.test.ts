// Proof that the named NBD endpoint (lab.json's nbdUriTemplate) serves every snapshot's
// frozen disk by export name "<snapshot>/<disk>" to real clients (nbdinfo, nbdcopy with
// several connections): snapshots taken after the lab started, the bytes of the snapshot
// (sha256) also after consolidation renamed its files, a clean NBD_REP_ERR_UNKNOWN once the
// snapshot is gone, and the nbdCutAfterBytes fault on its connections.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startLab, type Lab, type LabInfo } from './lab.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const vm = 'DC0_H0_VM0';
const diskSizes = [4 * MiB + 3 * 1024, 2 * MiB];
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

interface Snap {
  moref: string;
}

let lab: Lab;
let work: string;
before(async () => {
  lab = await startLab({ diskSizes });
  work = await mkdtemp(join(tmpdir(), 'vcbt-lab-nbd-'));
});
after(async () => {
  await lab?.stop();
  await rm(work, { recursive: true, force: true });
});

function uriOf(snapshot: string, diskKey: number): string {
  return lab.info.nbdUriTemplate.replace('{snapshot}', snapshot).replace('{disk}', String(diskKey));
}

/** Copies the export with nbdcopy over `connections` connections; the sha256 of what arrived. */
async function copySha256(uri: string, connections: number): Promise<string> {
  const out = join(work, `copy-${randomBytes(4).toString('hex')}.raw`);
  await run('nbdcopy', [`--connections=${connections}`, uri, out]);
  const sum = sha256(await readFile(out));
  await rm(out);
  return sum;
}

async function snapshot(name: string): Promise<Snap> {
  return (await lab.govmomi(['snapshot-create', vm, name])) as Snap;
}

test('the template is in lab.json and the info; export names are <snapshot>/<disk> of snapshots taken after the start', async () => {
  assert.match(lab.info.nbdUriTemplate, /^nbd:\/\/127\.0\.0\.1:\d+\/\{snapshot\}\/\{disk\}$/);
  const written = JSON.parse(await readFile(join(lab.stateDir, 'lab.json'), 'utf8')) as LabInfo;
  assert.equal(written.nbdUriTemplate, lab.info.nbdUriTemplate);

  await lab.write(vm, 2000, 0, randomBytes(300_000));
  await lab.write(vm, 2001, MiB, randomBytes(5000));
  const a = await snapshot('A');
  await lab.write(vm, 2000, 100, randomBytes(1000)); // after A: must not show in A's export
  for (const [key, capacityBytes] of [
    [2000, diskSizes[0]],
    [2001, diskSizes[1]],
  ]) {
    const uri = uriOf(a.moref, key);
    assert.equal(Number((await run('nbdinfo', ['--size', uri])).stdout.trim()), capacityBytes);
    assert.equal(await copySha256(uri, 4), (await lab.sha256(vm, key, a.moref)).sha256);
  }
  // Multi-conn is advertised (nbdinfo --can exits 0 when it is).
  await run('nbdinfo', ['--can', 'multi-conn', uriOf(a.moref, 2000)]);
  // The export list speaks the same names.
  const list = (await run('nbdinfo', ['--list', '--json', uriOf(a.moref, 2000)])).stdout;
  const names = (JSON.parse(list) as { exports: Array<{ 'export-name': string }> }).exports.map((e) => e['export-name']).sort();
  assert.deepEqual(names, [`${a.moref}/2000`, `${a.moref}/2001`]);
  await lab.govmomi(['snapshot-remove', vm, a.moref]);
});

test('an export keeps the snapshot bytes through consolidation and fails cleanly once its snapshot is removed', async () => {
  await lab.write(vm, 2000, 2 * MiB, randomBytes(70_000));
  const a = await snapshot('A');
  await lab.write(vm, 2000, 2 * MiB + 10, randomBytes(200_000));
  const b = await snapshot('B');
  await lab.write(vm, 2000, 0, randomBytes(4096));
  const frozenB = (await lab.sha256(vm, 2000, b.moref)).sha256;
  assert.equal(await copySha256(uriOf(b.moref, 2000), 2), frozenB);
  // A per-snapshot export opened before the removal, too.
  const opened = await lab.nbdExport(vm, 2000, b.moref);

  // Removing the older snapshot renames B's extent (it takes over A's file names).
  await lab.govmomi(['snapshot-remove', vm, a.moref]);
  assert.equal((await lab.sha256(vm, 2000, b.moref)).sha256, frozenB);
  assert.equal(await copySha256(uriOf(b.moref, 2000), 2), frozenB);
  assert.equal(await copySha256(opened.uri, 1), frozenB);
  await lab.closeExport(opened.id);

  // A's name is gone: the handshake fails with NBD_REP_ERR_UNKNOWN (libnbd: "server has no export named").
  for (const uri of [uriOf(a.moref, 2000), uriOf(b.moref, 2999), uriOf('nonsense', 2000)]) {
    const failed = await run('nbdinfo', ['--size', uri]).then(
      () => assert.fail(`${uri} should not resolve`),
      (error: { stderr: string }) => error.stderr,
    );
    assert.match(failed, /server has no export named/, uri);
  }
  await lab.govmomi(['snapshot-remove', vm, b.moref]);
  await assert.rejects(run('nbdinfo', ['--size', uriOf(b.moref, 2000)]), /server has no export named/);
});

test('nbdCutAfterBytes cuts the first connection on the named endpoint that passes N bytes', async () => {
  await lab.write(vm, 2000, 0, randomBytes(MiB));
  const s = await snapshot('cut');
  const uri = uriOf(s.moref, 2000);
  await lab.faults({ nbdCutAfterBytes: 64 * 1024 });
  assert.equal(Number((await run('nbdinfo', ['--size', uri])).stdout.trim()), diskSizes[0]);
  assert.deepEqual(await lab.faultsArmed(), { nbdCutAfterBytes: 64 * 1024 });
  await assert.rejects(run('nbdcopy', ['--connections=1', uri, 'null:']));
  assert.deepEqual(await lab.faultsArmed(), {});
  assert.equal(await copySha256(uri, 1), (await lab.sha256(vm, 2000, s.moref)).sha256);
  await lab.govmomi(['snapshot-remove', vm, s.moref]);
});
