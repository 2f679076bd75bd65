// `vcbt vms` and `vcbt cbt` against the lab.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLab, type Lab } from '../lab/lab.ts';
import { labConnection, runCli } from '../helpers/cli-runner.ts';

let lab: Lab;
let flags: string[];
let env: NodeJS.ProcessEnv;

before(async () => {
  lab = await startLab();
  ({ flags, env } = labConnection(lab));
});

after(async () => {
  await lab?.stop();
});

interface VmJson {
  name: string;
  moref: string;
  instanceUuid: string;
  powerState: string;
  cbtEnabled: boolean;
  disks: Array<{ key: number; label: string; capacityBytes: number; fileName: string; changeId: string | null }>;
}

test('vms --json lists every VM with power state, CBT state and disks as the lab has them', async () => {
  const result = await runCli(['vms', '--json', ...flags], env);
  assert.equal(result.code, 0, result.stderr);
  const { vms } = JSON.parse(result.stdout) as { vms: VmJson[] };
  const expected = [...lab.info.vms].sort((a, b) => a.name.localeCompare(b.name));
  assert.deepEqual(
    vms.map((v) => [v.name, v.moref, v.instanceUuid, v.powerState, v.cbtEnabled, v.disks.map((d) => [d.key, d.label, d.capacityBytes, d.fileName, d.changeId])]),
    expected.map((v) => [v.name, v.moref, v.instanceUuid, v.powerState, false, v.disks.map((d) => [d.key, d.label, d.capacityBytes, d.file, null])]),
  );
});

test('cbt enable by instance UUID then vms shows CBT on with ChangeIds; password read from --password-file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vcbt-pw-'));
  try {
    const passwordFile = join(dir, 'password');
    await writeFile(passwordFile, `${lab.info.password}\n`, { mode: 0o600 });
    const vm = lab.info.vms.find((v) => v.name === 'DC0_H0_VM1')!;
    const enabled = await runCli(['cbt', 'enable', '--vm', `uuid:${vm.instanceUuid}`, '--password-file', passwordFile, ...flags], {});
    assert.equal(enabled.code, 0, enabled.stderr);
    assert.equal(enabled.stdout, `DC0_H0_VM1 (${vm.moref}): cbt enable done, CBT is on\n`);
    const text = await runCli(['vms', ...flags], env);
    assert.match(text.stdout, new RegExp(`^DC0_H0_VM1  ${vm.moref}  poweredOff  cbt=on  uuid=${vm.instanceUuid}\\n  disk 2000  "Hard disk 1"  ${vm.disks[0].capacityBytes} bytes  \\[LocalDS_0\\] DC0_H0_VM1/disk1\\.vmdk  changeId=[0-9a-f -]+/\\d+$`, 'm'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('cbt usage errors exit 2 before connecting', async () => {
  for (const args of [['cbt', '--vm', 'x'], ['cbt', 'toggle', '--vm', 'x'], ['cbt', 'enable'], ['cbt', 'enable', 'disable', '--vm', 'x']]) {
    const result = await runCli([...args, ...flags], env);
    assert.equal(result.code, 2, args.join(' '));
  }
  const missing = await runCli(['cbt', 'enable', '--vm', 'path:DC0/vm/none', ...flags], env);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /VM_NOT_FOUND: no VM with inventory path "DC0\/vm\/none"/);
});
