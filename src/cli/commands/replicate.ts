// `vcbt replicate`: snapshot a VM, copy what changed since the target's last replication
// onto the target disk(s), record the new ChangeId next to each target (or, with --to-vm,
// on the replica VM itself), remove the snapshot.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ExitCode, type Command } from '../command.ts';
import { connectionFlags, connectionUsage, withSession } from '../connection.ts';
import { parseFlags, parseInFlight, parsePositiveInteger, parseProgressInterval } from '../flags.ts';
import { jobReporter } from '../job-reporter.ts';
import { replicateDocument, writeJsonDocument } from '../json-output.ts';
import { parsePairs, parseTransportFlags, snapshotJobFlags, snapshotJobOptions, snapshotJobUsage, transportFlags, transportUsage } from '../transport-flags.ts';
import { UsageError } from '../../errors.ts';
import { isNbdUri, replicate } from '../../jobs/replicate.ts';
import { parseVmSelector } from '../../jobs/vsphere-admin.ts';
import type { VirtualDiskInfo, VmInfo } from '../../vsphere/vsphere.ts';

const usage = `usage: vcbt replicate --vm VM (--to TARGET | --disk KEY=TARGET ... | --to-vm DEST --to-nbd-uri TEMPLATE [--create ...])
                      [--transport http|nbd|vddk|file] [--full] [--quiesce] [--json]
                      --server URL --user USER [--thumbprint FP]

Takes a snapshot of VM, copies the blocks that changed since the target last received
(a full copy of the allocated blocks the first time, or when the target's recorded state
does not match: other VM, other disk, capacity changed, ChangeId refused), records the new
ChangeId next to each target, and removes the snapshot (always, also on errors and Ctrl-C).

targets (file paths or NBD URIs; files are created sparse when missing):
  --to TARGET            the VM's only disk; or, when TARGET is a directory, every disk
                         as TARGET/<vm>-<key>.raw (characters other than A-Z a-z 0-9 . _ -
                         in the VM name become _)
  --disk KEY=TARGET      one disk by device key (repeatable; see \`vcbt vms\`)
  --state-dir DIR        where replica state files go (default: next to file targets;
                         $XDG_STATE_HOME/vcbt/replicas for NBD targets)
  --to-vm DEST           the disks of VM DEST, matched by device key (the replica VM; it
                         must be powered off); the replica state is kept in DEST's
                         extraConfig (vcbt.replica.disk.<key>), not in a local file
  --to-nbd-uri TEMPLATE  writable NBD export of DEST's live disks, e.g.
                         nbd://proxy/{vm}/{disk} (placeholders {vm} {disk} {file} {datastore})
  --create               make DEST when no VM has that name: VM's hardware with empty thin
                         disks (same keys and capacities), powered off, marked as a replica
    --datastore NAME     for its files and disks (default: VM's datastore)
    --folder PATH        VM folder, inventory path (default: VM's folder)
    --resource-pool PATH resource pool, inventory path (default: VM's pool)
    --host NAME          a host instead of a pool (its root resource pool)

${transportUsage}
  --in-flight N          pieces of 256 KiB read and written at once, 1 to 1024 (default 32)

  --full                 copy everything even if an incremental is possible
${snapshotJobUsage}

${connectionUsage}`;

/** A VM name as one file name: vSphere allows `/`, spaces and more in names. */
export function safeFileName(name: string): string {
  const safe = name.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^\.+/, '_');
  return safe === '' ? '_' : safe;
}

async function isDirectory(path: string): Promise<boolean> {
  return stat(path).then((s) => s.isDirectory(), () => false);
}

export const replicateCommand: Command = {
  name: 'replicate',
  summary: 'replicate a VM\'s changed blocks onto target disks (snapshot, CBT, copy, record)',
  usage,
  async run(args, io) {
    const { values } = parseFlags({
      args,
      strict: true,
      options: {
        ...connectionFlags,
        vm: { type: 'string' },
        to: { type: 'string' },
        disk: { type: 'string', multiple: true },
        'to-vm': { type: 'string' },
        'to-nbd-uri': { type: 'string' },
        create: { type: 'boolean', default: false },
        datastore: { type: 'string' },
        folder: { type: 'string' },
        'resource-pool': { type: 'string' },
        host: { type: 'string' },
        ...transportFlags,
        'state-dir': { type: 'string' },
        'in-flight': { type: 'string' },
        ...snapshotJobFlags,
      },
    });
    if (!values.vm) throw new UsageError(`replicate needs --vm\n\n${usage}`);
    const toVm = values['to-vm'];
    const given = [values.to && '--to', values.disk?.length && '--disk', toVm && '--to-vm'].filter(Boolean);
    if (given.length === 0) throw new UsageError(`replicate needs --to TARGET, --disk KEY=TARGET or --to-vm DEST\n\n${usage}`);
    if (given.length > 1) throw new UsageError(`give one of --to, --disk KEY=TARGET and --to-vm, not ${given.join(' and ')}`);
    if (toVm && !values['to-nbd-uri']) throw new UsageError('--to-vm needs --to-nbd-uri TEMPLATE (a writable export of the replica VM\'s disks: {vm} {disk} {file} {datastore})');
    if (!toVm && values['to-nbd-uri']) throw new UsageError('--to-nbd-uri goes with --to-vm');
    const placementGiven = (['datastore', 'folder', 'resource-pool', 'host'] as const).filter((flag) => values[flag] !== undefined);
    if (!values.create && placementGiven.length > 0) throw new UsageError(`--${placementGiven.join(', --')} place a VM that --create makes; add --create`);
    if (values.create && !toVm) throw new UsageError('--create goes with --to-vm');
    if (values['resource-pool'] && values.host) throw new UsageError('give --resource-pool or --host, not both');
    if (values['to-nbd-uri']?.includes('{snapshot}')) throw new UsageError(`--to-nbd-uri writes the replica VM's live disks, which have no {snapshot}: "${values['to-nbd-uri']}"`);
    const perDisk = new Map(parsePairs(values.disk, '--disk').map(([key, target]) => [parsePositiveInteger(key, '--disk KEY'), target] as const));
    const transportOptions = await parseTransportFlags(values, io);
    const maxInFlight = parseInFlight(values['in-flight']);
    const to = values.to;
    const toIsDirectory = to !== undefined && !isNbdUri(to) && (await isDirectory(to));
    const targets = (disks: readonly VirtualDiskInfo[], vm: VmInfo): ReadonlyMap<number, string> => {
      if (!to) return perDisk;
      if (toIsDirectory) return new Map(disks.map((d) => [d.key, join(to, `${safeFileName(vm.name)}-${d.key}.raw`)]));
      if (disks.length !== 1) {
        throw new UsageError(`VM "${vm.name}" has ${disks.length} disks (${disks.map((d) => `${d.key} ${d.label}`).join(', ')}): give --disk KEY=TARGET for each, or --to DIRECTORY`);
      }
      return new Map([[disks[0].key, to]]);
    };

    const reporter = jobReporter(io, values.json, { progressIntervalMs: parseProgressInterval(values['progress-interval']) });
    const result = await withSession(values, io, (session) =>
      replicate({
        session,
        vm: parseVmSelector(values.vm ?? ''),
        targets,
        toVm: toVm
          ? {
              vm: parseVmSelector(toVm),
              nbdUriTemplate: values['to-nbd-uri'] ?? '',
              create: values.create ? { placement: { datastore: values.datastore, folder: values.folder, resourcePool: values['resource-pool'], host: values.host } } : undefined,
            }
          : undefined,
        transport: transportOptions,
        stateDir: values['state-dir'],
        env: io.env,
        ...snapshotJobOptions(values),
        maxInFlight,
        signal: io.signal,
        onEvent: reporter.onEvent,
        onProgress: reporter.onProgress,
      }),
    );
    reporter.finish();
    if (values.json) {
      writeJsonDocument(io, replicateDocument(result));
    } else {
      for (const d of result.disks) {
        io.stdout.write(`disk ${d.deviceKey} (${d.label}) -> ${d.target}: ${d.mode}, ${d.areas} areas, ${d.bytesCopied} bytes copied; ChangeId ${d.changeId}\n`);
      }
      for (const f of result.failedDisks) io.stdout.write(`disk ${f.deviceKey}: FAILED ${f.code}: ${f.message}\n`);
      if (result.toVm) io.stdout.write(`replica VM "${result.toVm.name}" (${result.toVm.moref}${result.toVm.created ? ', created by this run' : ''}) records the state in its extraConfig\n`);
      io.stdout.write(`replicated VM "${result.vm.name}" at snapshot ${result.snapshot} (removed) in ${(result.elapsedMs / 1000).toFixed(1)} s\n`);
    }
    // Some disks replicated, others failed: a partial failure.
    return result.failedDisks.length > 0 ? ExitCode.partial : ExitCode.ok;
  },
};
