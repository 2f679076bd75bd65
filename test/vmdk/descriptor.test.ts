import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDatastorePath, parseVmdkDescriptor, VmdkError } from '../../src/vmdk/descriptor.ts';

const flat = `# Disk DescriptorFile
version=1
encoding="UTF-8"
CID=fffffffe
parentCID=ffffffff
createType="vmfs"

# Extent description
RW 41943046 VMFS "disk1-flat.vmdk"

# The Disk Data Base
ddb.adapterType = "lsilogic"
`;

test('a flat ESXi descriptor names its extent and capacity', () => {
  assert.deepEqual(parseVmdkDescriptor(flat, '[ds] vm/disk1.vmdk'), {
    createType: 'vmfs',
    extents: [{ file: 'disk1-flat.vmdk', sizeBytes: 41943046 * 512, fileOffsetBytes: 0 }],
    capacityBytes: 41943046 * 512,
  });
});

test('split flat extents add up in order, with their offsets', () => {
  const text = 'createType="twoGbMaxExtentFlat"\nRW 4 FLAT "a-f001.vmdk" 0\nRW 2 FLAT "a-f002.vmdk" 1\n';
  const d = parseVmdkDescriptor(text, 'a.vmdk');
  assert.equal(d.capacityBytes, 3072);
  assert.deepEqual(d.extents[1], { file: 'a-f002.vmdk', sizeBytes: 1024, fileOffsetBytes: 512 });
});

test('delta, sparse and binary disks are refused with a pointer to NBD', () => {
  const delta = 'createType="vmfsSparse"\nparentFileNameHint="disk1.vmdk"\nRW 2048 VMFSSPARSE "disk1-000001-delta.vmdk"\n';
  assert.throws(() => parseVmdkDescriptor(delta, '[ds] vm/disk1-000001.vmdk'), (e: unknown) =>
    e instanceof VmdkError && e.code === 'VMDK_NOT_FLAT' && /delta disk of "disk1.vmdk"/.test(e.message) && /--transport nbd or vddk/.test(e.message));
  assert.throws(() => parseVmdkDescriptor('createType="seSparse"\nRW 2048 SESPARSE "x-sesparse.vmdk"\n', 'x.vmdk'), { code: 'VMDK_NOT_FLAT' });
  assert.throws(() => parseVmdkDescriptor('KDMV\u0001\u0000\u0000', 'x.vmdk'), /sparse disk \(KDMV header\)/);
  assert.throws(() => parseVmdkDescriptor('createType="vmfsRawDeviceMap"\nRW 2048 VMFSRDM "x-rdm.vmdk"\n', 'x.vmdk'), { code: 'VMDK_NOT_FLAT' });
  assert.throws(() => parseVmdkDescriptor('hello world', 'x.vmdk'), { code: 'VMDK_DESCRIPTOR' });
});

test('datastore paths split into datastore and path', () => {
  assert.deepEqual(parseDatastorePath('[LocalDS_0] DC0_H0_VM0/disk1.vmdk'), { datastore: 'LocalDS_0', path: 'DC0_H0_VM0/disk1.vmdk' });
  assert.deepEqual(parseDatastorePath('[my ds] a b/c.vmdk'), { datastore: 'my ds', path: 'a b/c.vmdk' });
  assert.throws(() => parseDatastorePath('vm/disk.vmdk'), { code: 'VMDK_PATH' });
});
