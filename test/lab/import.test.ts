// The lab's ImportVApp and HttpNfcLease, driven through vcbt's vSphere client: an uploaded
// streamOptimized disk becomes the new VM's disk (control API sha256/content/write, /folder),
// a stream the lab's decoder refuses fails the lease and removes the VM, an aborted lease
// removes it too, and a taken name is DuplicateName.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import {
  buildOvfDescriptor,
  connect,
  createImportSpec,
  findVm,
  importVApp,
  leaseAbort,
  leaseComplete,
  leaseState,
  readVmConfig,
  resolvePlacement,
  uploadToLease,
  waitForLease,
  type ResolvedPlacement,
  type VmConfiguration,
  type VsphereSession,
} from '../../src/vsphere/vsphere.ts';
import { encodeStreamOptimized } from '../../src/vmdk/stream-optimized.ts';
import { startLab, type Lab } from './lab.ts';

const sourceVm = 'DC0_H0_VM1';
let lab: Lab;
let session: VsphereSession;
let config: VmConfiguration;
let placement: ResolvedPlacement;
const capacityBytes = 4 * 1048576;
const disk = Buffer.alloc(capacityBytes);

before(async () => {
  lab = await startLab({ otherDiskBytes: capacityBytes });
  session = await connect({ server: lab.info.sdk, username: lab.info.username, password: lab.info.password, thumbprint: lab.info.thumbprintSha1 });
  const vm = await findVm(session, { name: sourceVm });
  config = await readVmConfig(session, vm.moref, vm);
  placement = await resolvePlacement(session, { datastore: 'LocalDS_0' });
  randomBytes(300_000).copy(disk, 1_000_000);
  disk.fill(7, capacityBytes - 5000);
});

after(async () => {
  await session?.logout();
  await lab?.stop();
});

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const source = { sizeBytes: capacityBytes, read: async (offsetBytes: number, target: Uint8Array) => void target.set(disk.subarray(offsetBytes, offsetBytes + target.length)) };

async function startImport(name: string) {
  const fileName = `${name}.vmdk`;
  const ovf = buildOvfDescriptor(config, { name, disks: [{ key: config.disks[0].key, fileName }], keepMac: false, nicNetworks: new Map() });
  const target = { resourcePool: placement.resourcePool, datastore: placement.datastore.moref, folder: placement.folder };
  const spec = await createImportSpec(session, ovf, target, { entityName: name, networkMapping: [] });
  const lease = await importVApp(session, spec, target);
  const ready = await waitForLease(session, lease);
  const item = spec.fileItems.find((f) => f.path === fileName)!;
  return { lease, ready, device: ready.devices.find((d) => d.importKey === item.deviceId)! };
}

async function* bytesOf(stream: AsyncIterable<Buffer>, change?: (whole: Buffer) => void): AsyncGenerator<Buffer> {
  const parts: Buffer[] = [];
  for await (const piece of stream) parts.push(piece);
  const whole = Buffer.concat(parts);
  change?.(whole);
  yield whole;
}

test('lab import: an uploaded streamOptimized disk is the new VM\'s disk, for the control API like any other', async () => {
  const { lease, device } = await startImport('imported-ok');
  await uploadToLease(session, device, encodeStreamOptimized(source));
  await leaseComplete(session, lease);
  const vm = (await lab.refreshInfo()).vms.find((v) => v.name === 'imported-ok')!;
  assert.equal(vm.disks.length, 1);
  const key = vm.disks[0].key;
  assert.deepEqual(await lab.sha256('imported-ok', key), { sha256: sha(disk), capacityBytes });
  assert.deepEqual(await lab.content('imported-ok', key), disk);
  await lab.write('imported-ok', key, 10, Buffer.from('written'));
  const changed = Buffer.from(disk);
  Buffer.from('written').copy(changed, 10);
  assert.equal((await lab.sha256('imported-ok', key)).sha256, sha(changed));
});

test('lab import: a stream the lab\'s decoder refuses fails the upload, puts the lease in error and removes the VM', async () => {
  const { lease, device } = await startImport('imported-bad');
  // Move the first grain marker's LBA: the grain table and the marker disagree.
  const broken = bytesOf(encodeStreamOptimized(source), (whole) => {
    const first = 21 * 512;
    whole.writeBigUInt64LE(whole.readBigUInt64LE(first) + 128n, first);
  });
  await assert.rejects(uploadToLease(session, device, broken), (error: Error & { code?: string }) => error.code === 'NFC_UPLOAD' && /LBA/.test(error.message));
  assert.equal((await leaseState(session, lease)).state, 'error');
  await leaseAbort(session, lease, 'test').catch(() => undefined);
  assert.ok(!(await lab.refreshInfo()).vms.some((v) => v.name === 'imported-bad'));
  await assert.rejects(findVm(session, { name: 'imported-bad' }), { code: 'VM_NOT_FOUND' });
});

test('lab import: an aborted lease removes its VM; a taken name is DuplicateName', async () => {
  const { lease } = await startImport('imported-aborted');
  assert.ok((await lab.refreshInfo()).vms.some((v) => v.name === 'imported-aborted'));
  await leaseAbort(session, lease, 'changed my mind');
  assert.ok(!(await lab.refreshInfo()).vms.some((v) => v.name === 'imported-aborted'));
  await assert.rejects(startImport(sourceVm), (error: Error & { context?: Record<string, unknown> }) => error.context?.faultType === 'DuplicateName');
});
