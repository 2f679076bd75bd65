// The datastore HTTP reader against the lab's /folder (vcsim's file server behind the lab's
// session check): frozen bytes at a snapshot, exact-byte resume after a cut response,
// re-login after the session expired, and a clear refusal of a delta chain.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startLab, type Lab } from '../lab/lab.ts';
import { connect, createSnapshot, datacenterOf, findVm, readSnapshotDisks, removeSnapshot, type VmInfo, type VsphereSession } from '../../src/vsphere/vsphere.ts';
import { openSnapshotDisk } from '../../src/jobs/snapshot-source.ts';
import { DatastoreHttpDisk } from '../../src/transport/datastore-http.ts';

const VM = 'DC0_H0_VM0';
let lab: Lab;
let session: VsphereSession;
let vm: VmInfo;

before(async () => {
  lab = await startLab({ diskSizes: [6 * 1048576 + 5120, 2 * 1048576] });
  session = await connect({ server: lab.info.sdk, username: lab.info.username, password: lab.info.password, thumbprint: lab.info.thumbprintSha1 });
  vm = await findVm(session, { name: VM });
});

after(async () => {
  await session?.logout();
  await lab?.stop();
});

async function openAt(snapshot: { type: string; value: string }, key: number) {
  const disk = (await readSnapshotDisks(session, vm, snapshot)).find((d) => d.key === key)!;
  const datacenter = (await datacenterOf(session, vm.moref)).name;
  return openSnapshotDisk({ session, vm, snapshot, disk, datacenter }, { transport: 'http' });
}

test('reads the frozen disk at a snapshot, through a cut response and an expired session', async () => {
  const key = lab.info.vms.find((v) => v.name === VM)!.disks[0].key;
  await lab.write(VM, key, 0, randomBytes(3 * 1048576));
  await lab.write(VM, key, 6 * 1048576, randomBytes(5120)); // the short tail of the disk
  const snapshot = await createSnapshot(session, vm, { purpose: 'test' });
  try {
    await lab.write(VM, key, 0, randomBytes(1048576)); // after the snapshot: must not be seen
    const frozen = await lab.content(VM, key, snapshot.value);
    const reader = await openAt(snapshot, key);
    assert.ok(reader instanceof DatastoreHttpDisk);
    assert.equal(reader.sizeBytes, frozen.length);

    await lab.faults({ httpCutAfterBytes: 700_000 });
    const whole = new Uint8Array(reader.sizeBytes);
    await reader.read(0, whole);
    assert.deepEqual(await lab.faultsArmed(), {}, 'the cut happened');
    assert.ok(reader.resumedRequests >= 1, 'the reader resumed after the cut');
    assert.ok(Buffer.from(whole).equals(frozen), 'bytes equal the frozen snapshot');

    const relogins = session.reloginCount;
    await lab.expireSessions();
    const tail = new Uint8Array(5120 + 100);
    await reader.read(reader.sizeBytes - tail.length, tail);
    assert.ok(Buffer.from(tail).equals(frozen.subarray(frozen.length - tail.length)));
    assert.equal(session.reloginCount, relogins + 1, 'a 401 made the session log in again');

    await assert.rejects(reader.read(reader.sizeBytes - 10, new Uint8Array(11)), { code: 'DISK_RANGE' });
    await reader.close();
  } finally {
    await removeSnapshot(session, vm, snapshot);
  }
});

test('a snapshot whose disk is a delta chain is refused with a pointer to NBD', async () => {
  const key = lab.info.vms.find((v) => v.name === VM)!.disks[1].key;
  const first = await createSnapshot(session, vm, { purpose: 'test' });
  const second = await createSnapshot(session, vm, { purpose: 'test' });
  try {
    await assert.rejects(openAt(second, key), (error: unknown) => {
      const e = error as { code?: string; message?: string };
      return e.code === 'VMDK_NOT_FLAT' && /delta disk/.test(e.message ?? '') && /--transport nbd or vddk/.test(e.message ?? '');
    });
    const base = await openAt(first, key);
    assert.equal(base.sizeBytes, 2 * 1048576);
    await base.close();
  } finally {
    await removeSnapshot(session, vm, second);
    await removeSnapshot(session, vm, first);
  }
});
