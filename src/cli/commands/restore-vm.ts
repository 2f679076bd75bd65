// `vcbt restore-vm`: a restore point back into vSphere as a new VM (jobs/restore-vm.ts).
import { ExitCode, type Command } from '../command.ts';
import { connectionFlags, connectionUsage, withSession } from '../connection.ts';
import { parseFlags, parseProgressInterval, progressFlags, progressUsage } from '../flags.ts';
import { jobReporter } from '../job-reporter.ts';
import { writeJsonDocument } from '../json-output.ts';
import { documentHeader } from '../json-documents.ts';
import { repositoryFlags, repositoryUsage, withRepository } from '../repository-flags.ts';
import { UsageError } from '../../errors.ts';
import { restoreVm } from '../../jobs/restore-vm.ts';

const usage = `usage: vcbt restore-vm --repo DIR --point ID|latest [--vm VM] --name NEW
                      [--datastore DS] [--folder PATH] [--resource-pool PATH | --host NAME]
                      [--network OLD=NEW ...] [--disk-provisioning thin|thick] [--keep-mac]
                      [--power-on] [--transport nfc | --transport nbd --nbd-uri TEMPLATE] [--json]
                      --server URL --user USER [--thumbprint FP]

Creates a new VM from the configuration stored with the restore point (hardware version,
guest OS, firmware, CPUs, memory, controllers, NICs, annotation, extraConfig, NVRAM) with
every disk of the point written byte-identical, through an OVF import (ImportVApp and its
HttpNfcLease; no VDDK): each disk is streamed from the repository as a streamOptimized
VMDK, zero chunks sending nothing. The VM gets new MAC addresses (unless --keep-mac) and a
new instance UUID, and stays powered off (unless --power-on). A failure removes the VM.

  --point ID|latest      a restore point id (vcbt points), or the newest of --vm
  --vm VM                with --point latest: name, moref, instance UUID or repository id
  --name NEW             the new VM's name (VM_EXISTS when taken)
  --datastore DS         default: the datastore of the VM's first disk
  --folder PATH          VM folder (DC/vm/Folder, or Folder under the datacenter's VM folder)
  --resource-pool PATH   DC/host/Cluster/Resources/Pool; default: the host's or first pool
  --host NAME            the ESXi host to register the VM on
  --network OLD=NEW      connect NICs of network OLD to NEW (repeatable); a network that
                         does not exist on the target without a mapping: NETWORK_NOT_FOUND
  --disk-provisioning P  thin (default) or thick
  --keep-mac             keep the NICs' MAC addresses (as manual ones)
  --power-on             power the new VM on at the end
  --transport nfc        the data path (default): an OVF import (ImportVApp + HttpNfcLease),
                         each disk uploaded as a streamOptimized VMDK; no VDDK needed
  --transport nbd        create the VM with empty disks (CreateVM_Task), then write only the
                         point's data chunks through --nbd-uri TEMPLATE, a writable NBD export
                         of the new (powered-off) VM's disks ({vm} {disk} {file} {datastore}),
                         e.g. nbdkit's vddk plugin
  --json                 machine-readable summary on stdout
${progressUsage}

${repositoryUsage}

${connectionUsage}`;

function parseNetworkMap(values: readonly string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (const value of values) {
    const at = value.indexOf('=');
    if (at <= 0 || at === value.length - 1) throw new UsageError(`--network ${value}: expected OLD=NEW`);
    map.set(value.slice(0, at), value.slice(at + 1));
  }
  return map;
}

export const restoreVmCommand: Command = {
  name: 'restore-vm',
  summary: 'restore a restore point as a new VM in vSphere (OVF import, no VDDK)',
  usage,
  async run(args, io) {
    const { values } = parseFlags({
      args,
      strict: true,
      options: {
        ...connectionFlags,
        ...repositoryFlags,
        ...progressFlags,
        point: { type: 'string' },
        vm: { type: 'string' },
        name: { type: 'string' },
        datastore: { type: 'string' },
        folder: { type: 'string' },
        'resource-pool': { type: 'string' },
        host: { type: 'string' },
        network: { type: 'string', multiple: true },
        'disk-provisioning': { type: 'string' },
        'keep-mac': { type: 'boolean', default: false },
        'power-on': { type: 'boolean', default: false },
        transport: { type: 'string', default: 'nfc' },
        'nbd-uri': { type: 'string' },
        json: { type: 'boolean', default: false },
      },
    });
    if (!values.repo) throw new UsageError(`restore-vm needs --repo DIR\n\n${usage}`);
    if (!values.point) throw new UsageError(`restore-vm needs --point ID (or latest with --vm)\n\n${usage}`);
    if (!values.name) throw new UsageError(`restore-vm needs --name NEW\n\n${usage}`);
    if (values['resource-pool'] !== undefined && values.host !== undefined) throw new UsageError('give --resource-pool or --host, not both');
    if (values.transport !== 'nfc' && values.transport !== 'nbd') throw new UsageError(`--transport ${values.transport}: restore-vm supports nfc and nbd`);
    if (values.transport === 'nbd' && !values['nbd-uri']) throw new UsageError(`restore-vm --transport nbd needs --nbd-uri TEMPLATE\n\n${usage}`);
    if (values.transport === 'nfc' && values['nbd-uri'] !== undefined) throw new UsageError('--nbd-uri goes with --transport nbd');
    const transport = values.transport;
    const provisioning = values['disk-provisioning'] ?? 'thin';
    if (provisioning !== 'thin' && provisioning !== 'thick') throw new UsageError(`--disk-provisioning ${provisioning}: use thin or thick`);
    const networkMap = parseNetworkMap(values.network ?? []);
    const reporter = jobReporter(io, values.json, { progressIntervalMs: parseProgressInterval(values['progress-interval']) });
    const { point, name } = { point: values.point, name: values.name };
    const result = await withRepository(values, io, (repository) =>
      withSession(values, io, (session) =>
        restoreVm({
          session,
          repository,
          point,
          vm: values.vm,
          name,
          datastore: values.datastore,
          folder: values.folder,
          resourcePool: values['resource-pool'],
          host: values.host,
          networkMap,
          diskProvisioning: provisioning,
          keepMac: values['keep-mac'],
          powerOn: values['power-on'],
          transport,
          nbdUriTemplate: values['nbd-uri'],
          signal: io.signal,
          onEvent: reporter.onEvent,
          onProgress: reporter.onProgress,
        }),
      ),
    );
    reporter.finish();
    if (values.json) {
      writeJsonDocument(io, { ...documentHeader('restore-vm'), ...result });
      return ExitCode.ok;
    }
    for (const d of result.disks) io.stdout.write(`disk ${d.sourceKey} -> ${d.key}: ${d.capacityBytes} bytes, ${d.bytesWritten} bytes uploaded (${d.grainsZero} zero grains skipped)\n`);
    io.stdout.write(
      `VM "${result.vm.name}" (${result.vm.moref}, instance UUID ${result.vm.instanceUuid ?? 'none'}) restored from ${result.pointId} on ${result.datastore} over ${result.transport}; ` +
        `${result.poweredOn ? 'powered on' : 'powered off'}${result.nvramRestored ? ', NVRAM restored' : ''}; ${(result.elapsedMs / 1000).toFixed(1)} s\n`,
    );
    return ExitCode.ok;
  },
};
