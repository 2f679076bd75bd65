// Selection rules and the limits dispatcher, without a lab: rules match what their kind says
// (folders include subfolders, pools include the pools above), exclusions and disk exclusions
// apply, and the dispatcher never runs more items at once than any limit allows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runWithLimits } from '../../src/service/limits.ts';
import { parseVmRule, selectVms, type VmRule } from '../../src/service/selection.ts';
import type { VmPlacement } from '../../src/vsphere/vsphere.ts';

function vm(name: string, extra: Partial<VmPlacement> = {}): VmPlacement {
  return {
    vm: { name, moref: { type: 'VirtualMachine', value: `vm-${name}` }, instanceUuid: undefined, powerState: 'poweredOn', cbtEnabled: true, consolidationNeeded: false, disks: [2000, 2001].map((key) => ({ key, label: '', capacityBytes: 1, fileName: '', datastore: undefined, backingType: '', changeId: undefined, backingChain: [], controllerKey: undefined, unitNumber: undefined })) },
    datacenter: 'DC0',
    folderPath: 'DC0/vm',
    host: 'esx1',
    cluster: undefined,
    resourcePools: ['Resources'],
    datastores: ['ds1'],
    attributes: {},
    ...extra,
  };
}
const rules = (...texts: string[]) => texts.map((t) => parseVmRule(t) as VmRule);

test('rules by kind, exclusions and disk exclusions', () => {
  const inventory = [
    vm('web1', { folderPath: 'DC0/vm/Prod/Web', host: 'esx2', cluster: 'C1', attributes: { Backup: 'gold' } }),
    vm('web2', { folderPath: 'DC0/vm/Prod', resourcePools: ['Test', 'Resources'] }),
    vm('db1', { folderPath: 'DC0/vm/Dev', datastores: ['ds9'] }),
  ];
  const names = (include: string[], exclude: string[] = []) => selectVms(inventory, { include: rules(...include), exclude: rules(...exclude), excludeDisks: [] }).selected.map((s) => s.placement.vm.name);
  assert.deepEqual(names(['folder:DC0/vm/Prod']), ['web1', 'web2']);
  assert.deepEqual(names(['cluster:C*']), ['web1']);
  assert.deepEqual(names(['pool:Test']), ['web2']);
  assert.deepEqual(names(['datastore:ds9']), ['db1']);
  assert.deepEqual(names(['attribute:Backup=go*']), ['web1']);
  assert.deepEqual(names(['moref:vm-db1', 'db?']), ['db1']);
  assert.deepEqual(names(['*'], ['web*']), ['db1']);
  const withDisks = selectVms(inventory, { include: rules('web*'), exclude: [], excludeDisks: [{ vm: 'web1', diskKeys: [2001] }, { vm: 'web2', diskKeys: [2000, 2001] }] });
  assert.deepEqual(withDisks.selected.map((s) => [s.placement.vm.name, s.diskKeys]), [['web1', [2000]]]);
  assert.match(withDisks.excluded[0].reason, /every disk is excluded/);
  assert.equal(typeof parseVmRule('attribute:nokey'), 'string');
});

test('the dispatcher keeps every limit and runs everything', async () => {
  const items = Array.from({ length: 12 }, (_, i) => ({ id: i, host: `h${i % 3}`, datastores: i % 2 ? ['a', 'b'] : ['a'] }));
  const now = { total: 0, host: new Map<string, number>(), ds: new Map<string, number>() };
  let peakTotal = 0;
  let peakHost = 0;
  let peakDs = 0;
  const done = await runWithLimits(items, { total: 4, perHost: 1, perDatastore: 3 }, async (item) => {
    now.total++;
    now.host.set(item.host, (now.host.get(item.host) ?? 0) + 1);
    for (const d of item.datastores) now.ds.set(d, (now.ds.get(d) ?? 0) + 1);
    peakTotal = Math.max(peakTotal, now.total);
    peakHost = Math.max(peakHost, ...now.host.values());
    peakDs = Math.max(peakDs, ...now.ds.values());
    await new Promise((r) => setImmediate(r));
    now.total--;
    now.host.set(item.host, (now.host.get(item.host) ?? 0) - 1);
    for (const d of item.datastores) now.ds.set(d, (now.ds.get(d) ?? 0) - 1);
    return item.id;
  });
  assert.deepEqual(done, items.map((i) => i.id));
  assert.ok(peakTotal <= 3 && peakHost <= 1 && peakDs <= 3, `${peakTotal} ${peakHost} ${peakDs}`);
});
