// `vcbt vms`: the VMs a server has, with power state, CBT state and disks.
import { parseFlags } from '../flags.ts';
import { ExitCode, type Command } from '../command.ts';
import { writeJsonDocument } from '../json-output.ts';
import { documentHeader } from '../json-documents.ts';
import { connectionFlags, connectionUsage, withSession } from '../connection.ts';
import { listVms } from '../../jobs/vsphere-admin.ts';
import type { VmInfo } from '../../vsphere/vsphere.ts';

const usage = `usage: vcbt vms --server URL --user USER [--thumbprint FP] [--json]

Lists every VM: name, moref, power state, CBT on/off and each disk (device key, label,
capacity in bytes, backing file, ChangeId).

${connectionUsage}`;

function formatText(vms: readonly VmInfo[]): string {
  const lines: string[] = [];
  for (const vm of vms) {
    lines.push(`${vm.name}  ${vm.moref.value}  ${vm.powerState}  cbt=${vm.cbtEnabled ? 'on' : 'off'}  uuid=${vm.instanceUuid ?? '-'}`);
    for (const disk of vm.disks) {
      lines.push(`  disk ${disk.key}  "${disk.label}"  ${disk.capacityBytes} bytes  ${disk.fileName}  changeId=${disk.changeId ?? '-'}`);
    }
  }
  return lines.join('\n') + (lines.length > 0 ? '\n' : '');
}

function toJson(vm: VmInfo) {
  return {
    name: vm.name,
    moref: vm.moref.value,
    instanceUuid: vm.instanceUuid ?? null,
    powerState: vm.powerState,
    cbtEnabled: vm.cbtEnabled,
    consolidationNeeded: vm.consolidationNeeded,
    disks: vm.disks.map((d) => ({
      key: d.key,
      label: d.label,
      capacityBytes: d.capacityBytes,
      fileName: d.fileName,
      backingChain: d.backingChain,
      changeId: d.changeId ?? null,
    })),
  };
}

export const vmsCommand: Command = {
  name: 'vms',
  summary: 'list VMs with power state, CBT state and disks',
  usage,
  async run(args, io) {
    const { values } = parseFlags({ args, strict: true, options: { ...connectionFlags, json: { type: 'boolean', default: false } } });
    const vms = await withSession(values, io, (session) => listVms(session));
    if (values.json) writeJsonDocument(io, { ...documentHeader('vms'), vms: vms.map(toJson) });
    else io.stdout.write(formatText(vms));
    return ExitCode.ok;
  },
};
