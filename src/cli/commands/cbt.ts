// `vcbt cbt enable|disable|reset --vm VM`: switch Changed Block Tracking on a VM.
import { parseFlags } from '../flags.ts';
import { ExitCode, type Command } from '../command.ts';
import { connectionFlags, connectionUsage, withSession } from '../connection.ts';
import { UsageError } from '../../errors.ts';
import { writeJsonDocument } from '../json-output.ts';
import { documentHeader } from '../json-documents.ts';
import { changeCbt, parseVmSelector } from '../../jobs/vsphere-admin.ts';

const usage = `usage: vcbt cbt enable|disable|reset --vm VM --server URL --user USER [--thumbprint FP] [--json]

enable   turn CBT on (a powered-on VM goes through a snapshot create/remove to apply it)
disable  turn CBT off
reset    disable, stun/unstun, enable, stun/unstun: every earlier ChangeId becomes void,
         so the next backup of each disk is a full one

VM is a name, an inventory path (DC/vm/folder/name), a moref (vm-42) or an instance UUID;
prefix with name:, path:, moref: or uuid: to be explicit.

${connectionUsage}`;


export const cbtCommand: Command = {
  name: 'cbt',
  summary: 'enable, disable or reset Changed Block Tracking on a VM',
  usage,
  async run(args, io) {
    const { values, positionals } = parseFlags({
      args,
      strict: true,
      allowPositionals: true,
      options: { ...connectionFlags, vm: { type: 'string' }, json: { type: 'boolean', default: false } },
    });
    const action = positionals[0];
    if (positionals.length !== 1 || !(action === 'enable' || action === 'disable' || action === 'reset')) {
      throw new UsageError(`cbt needs exactly one of enable, disable, reset\n\n${usage}`);
    }
    if (!values.vm) throw new UsageError(`cbt needs --vm\n\n${usage}`);
    const selector = parseVmSelector(values.vm);
    const vm = await withSession(values, io, (session) => changeCbt(session, selector, action));
    const disks = vm.disks.map((d) => ({ key: d.key, label: d.label, changeId: d.changeId ?? null }));
    if (values.json) writeJsonDocument(io, { ...documentHeader('cbt'), vm: vm.name, moref: vm.moref.value, action, cbtEnabled: vm.cbtEnabled, disks });
    else io.stdout.write(`${vm.name} (${vm.moref.value}): cbt ${action} done, CBT is ${vm.cbtEnabled ? 'on' : 'off'}\n`);
    return ExitCode.ok;
  },
};
