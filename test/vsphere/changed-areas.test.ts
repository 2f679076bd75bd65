import { test } from 'node:test';
import assert from 'node:assert/strict';
import { moRef } from '../../src/vsphere/decode.ts';
import { queryChangedAreas, changeIdEpoch } from '../../src/vsphere/changed-areas.ts';
import { ChangeIdInvalidError } from '../../src/vsphere/errors.ts';
import { bodyOf, fakeSession, faultReply, reply } from './fake-session.ts';

const vm = { moref: moRef('VirtualMachine', 'vm-57'), name: 'web' };
const snapshot = moRef('VirtualMachineSnapshot', 'snapshot-9');
const changeId = '52 54 eb 64 13 82 bc 71-41 42 a2 b3 ba f4 96 2e/102';

function window(startOffset: number, length: number, areas: Array<[number, number]>): string {
  const changed = areas.map(([s, l]) => `<changedArea><start>${s}</start><length>${l}</length></changedArea>`).join('');
  return reply('QueryChangedDiskAreas', `<returnval><startOffset>${startOffset}</startOffset><length>${length}</length>${changed}</returnval>`);
}

function startOffsetOf(envelope: string): number {
  return Number(/<startOffset>(\d+)<\/startOffset>/.exec(envelope)?.[1]);
}

test('loops on startOffset until the capacity is covered, and merges areas across windows', async () => {
  const capacityBytes = 10 * 65536 + 3072;
  const windows: Record<number, string> = {
    0: window(0, 4 * 65536, [[0, 65536], [3 * 65536, 65536]]),
    [4 * 65536]: window(4 * 65536, 4 * 65536, [[4 * 65536, 65536]]), // touches the previous area: merged
    [8 * 65536]: window(8 * 65536, capacityBytes - 8 * 65536, [[10 * 65536, 3072]]), // the short last block
  };
  const { session, calls } = fakeSession((call) => windows[startOffsetOf(call.envelope)]);
  const progress: number[] = [];
  const areas = await queryChangedAreas(session, { vm, snapshot, deviceKey: 2000, capacityBytes, changeId, onProgress: (covered) => progress.push(covered) });
  assert.deepEqual(areas, [
    { offsetBytes: 0, lengthBytes: 65536 },
    { offsetBytes: 3 * 65536, lengthBytes: 2 * 65536 },
    { offsetBytes: 10 * 65536, lengthBytes: 3072 },
  ]);
  assert.deepEqual(calls.map((c) => startOffsetOf(c.envelope)), [0, 4 * 65536, 8 * 65536]);
  assert.deepEqual(progress, [4 * 65536, 8 * 65536, capacityBytes]);
  assert.equal(
    bodyOf(calls[1]),
    `<_this type="VirtualMachine">vm-57</_this><snapshot type="VirtualMachineSnapshot">snapshot-9</snapshot><deviceKey>2000</deviceKey><startOffset>262144</startOffset><changeId>${changeId}</changeId>`,
  );
});

test('a window without changedArea elements means no changes there (and no snapshot element when none given)', async () => {
  const { session, calls } = fakeSession(() => window(0, 1 << 20, []));
  assert.deepEqual(await queryChangedAreas(session, { vm, deviceKey: 2000, capacityBytes: 1 << 20, changeId: '*' }), []);
  assert.doesNotMatch(calls[0].envelope, /<snapshot/);
});

test('a zero-length or misplaced window is CBT_QUERY_NO_PROGRESS, never an endless loop', async () => {
  for (const answer of [window(0, 0, []), window(65536, 65536, [])]) {
    const { session, calls } = fakeSession(() => answer);
    await assert.rejects(queryChangedAreas(session, { vm, snapshot, deviceKey: 2000, capacityBytes: 1 << 20, changeId }), (e: unknown) => {
      assert.equal((e as { code: string }).code, 'CBT_QUERY_NO_PROGRESS');
      assert.match((e as Error).message, /server fake\.example:443, VM "web" \(vm-57\), disk 2000/);
      return true;
    });
    assert.equal(calls.length, 1);
  }
});

test('FileFault or InvalidArgument on a ChangeId query is CBT_CHANGEID_INVALID (never "no changes")', async () => {
  for (const faultType of ['FileFault', 'InvalidArgument']) {
    const { session } = fakeSession(() => faultReply(faultType, 'Error: ChangeId is unknown'));
    await assert.rejects(queryChangedAreas(session, { vm, snapshot, deviceKey: 2000, capacityBytes: 1 << 20, changeId }), (e: unknown) => {
      assert.ok(e instanceof ChangeIdInvalidError);
      assert.equal(e.code, 'CBT_CHANGEID_INVALID');
      assert.equal(e.changeId, changeId);
      assert.match(e.message, new RegExp(`${faultType}: Error: ChangeId is unknown.*disk 2000`));
      return true;
    });
  }
});

test('an InvalidArgument about another parameter (deviceKey) stays a VSPHERE_FAULT; about changeId it is CBT_CHANGEID_INVALID', async () => {
  const about = (property: string) => fakeSession(() => faultReply('InvalidArgument', 'bad', `<invalidProperty>${property}</invalidProperty>`)).session;
  await assert.rejects(queryChangedAreas(about('deviceKey'), { vm, snapshot, deviceKey: 2000, capacityBytes: 1 << 20, changeId }), { code: 'VSPHERE_FAULT', faultType: 'InvalidArgument' });
  await assert.rejects(queryChangedAreas(about('changeId'), { vm, snapshot, deviceKey: 2000, capacityBytes: 1 << 20, changeId }), { code: 'CBT_CHANGEID_INVALID' });
});

test('the same FileFault on an allocated-areas query stays a VSPHERE_FAULT (there is nothing to fall back to)', async () => {
  const { session } = fakeSession(() => faultReply('FileFault', 'Change tracking is not active'));
  await assert.rejects(queryChangedAreas(session, { vm, snapshot, deviceKey: 2000, capacityBytes: 1 << 20, changeId: '*' }), { code: 'VSPHERE_FAULT', faultType: 'FileFault' });
});

test('an epoch different from the disk current ChangeId fails before asking the server', async () => {
  const { session, calls } = fakeSession(() => window(0, 1 << 20, []));
  const current = '11 11 11 11 11 11 11 11-22 22 22 22 22 22 22 22/3';
  await assert.rejects(queryChangedAreas(session, { vm, snapshot, deviceKey: 2000, capacityBytes: 1 << 20, changeId, currentChangeId: current }), { code: 'CBT_CHANGEID_INVALID' });
  assert.equal(calls.length, 0);
  assert.equal(changeIdEpoch(changeId), '52 54 eb 64 13 82 bc 71-41 42 a2 b3 ba f4 96 2e');
});

test('invalid answers are errors naming the area: unsorted, overlapping, beyond the disk, inexact longs', async () => {
  const cases: Array<[string, string]> = [
    [window(0, 1 << 20, [[131072, 65536], [0, 65536]]), 'EXTENT_UNSORTED'],
    [window(0, 1 << 20, [[0, 131072], [65536, 65536]]), 'EXTENT_OVERLAP'],
    [window(0, 1 << 20, [[(1 << 20) - 512, 1024]]), 'EXTENT_OUTSIDE_DISK'],
    [window(0, 1 << 20, [[0, 0]]), 'EXTENT_INVALID'],
    [reply('QueryChangedDiskAreas', '<returnval><startOffset>0</startOffset><length>1048576</length><changedArea><start>9007199254740993</start><length>1</length></changedArea></returnval>'), 'VSPHERE_BAD_RESPONSE'],
    [reply('QueryChangedDiskAreas', ''), 'VSPHERE_BAD_RESPONSE'],
  ];
  for (const [answer, code] of cases) {
    const { session } = fakeSession(() => answer);
    await assert.rejects(queryChangedAreas(session, { vm, snapshot, deviceKey: 2000, capacityBytes: 1 << 20, changeId }), (e: unknown) => {
      assert.equal((e as { code: string }).code, code);
      assert.match((e as Error).message, /vm-57.*disk 2000/);
      return true;
    });
  }
});
