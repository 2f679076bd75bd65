// `vcbt restore`: write one disk of a restore point to a file or an NBD export, or (with
// --in-place) roll disks of a powered-off VM back to a restore point (jobs/rollback.ts).
import { ExitCode, type Command, type CommandIo } from '../command.ts';
import { connectionFlags, connectionUsage, withSession } from '../connection.ts';
import { createProgress } from '../progress.ts';
import { parseFlags, parsePositiveInteger, parseProgressInterval, progressFlags, progressUsage } from '../flags.ts';
import { jobReporter } from '../job-reporter.ts';
import { writeJsonDocument } from '../json-output.ts';
import { documentHeader } from '../json-documents.ts';
import { parseRestorePointDisk, repositoryFlags, restorePointDiskFlags, repositoryUsage, withRepository } from '../repository-flags.ts';
import { UsageError } from '../../errors.ts';
import { restore } from '../../jobs/restore.ts';
import { resolvePointId } from '../../jobs/restore-points.ts';
import { rollback } from '../../jobs/rollback.ts';
import { parseVmSelector } from '../../jobs/vsphere-admin.ts';

const usage = `usage: vcbt restore --repo DIR --point ID|latest [--vm VM] [--skip-damaged] --disk KEY --to TARGET [--json]
       vcbt restore --repo DIR --point ID|latest --vm VM --in-place [--disk KEY ...]
                    --transport nbd --nbd-uri TEMPLATE [--power-off] [--json]
                    --server URL --user USER [--thumbprint FP]

Writes disk KEY of the restore point to TARGET: a file (created sparse when missing; an
existing one must be at least the disk's size) or an NBD URI (nbd://host:port/export,
nbd+unix:///export?socket=PATH). Chunks that are all zero become zero ranges, so a new
file stays sparse.

  --point ID|latest      a restore point id (vcbt points), or the newest of --vm
  --vm VM                with --point latest: name, moref, instance UUID or repository id
  --skip-damaged         with --point latest: when the newest point is damaged (its manifest
                         unreadable or gone, or verify found this disk's data lost), take the
                         newest sound one and say so; without it that is RESTORE_POINT_DAMAGED
  --disk KEY             device key of the disk (vcbt points lists them)
  --to TARGET            file path or NBD URI
  --json                 machine-readable summary on stdout
${progressUsage}

in place (roll the VM's own disks back; docs/backup.md, "Rolling back in place"):
  --in-place             write into VM's disks (every disk of the point unless --disk KEY,
                         repeatable); the VM must be powered off (VM_POWERED_ON)
  --power-off            power the VM off first when it is on
  --transport nbd        --nbd-uri TEMPLATE: a writable export of the live disk
                         (placeholders {vm} (moref) {disk} {file} {datastore})
  When the disk is still in the restore point's CBT epoch only the areas changed since
  the point's ChangeId are written; otherwise the whole disk, and the output says why.

${repositoryUsage}

${connectionUsage}`;

interface InPlaceValues {
  point?: string;
  vm?: string;
  disk?: string[];
  transport?: string;
  'nbd-uri'?: string;
  'power-off'?: boolean;
  json?: boolean;
  'progress-interval'?: string;
}

async function runInPlace(values: InPlaceValues & Parameters<typeof withRepository>[0] & Parameters<typeof withSession>[0], io: CommandIo): Promise<ExitCode> {
  if (!values.point) throw new UsageError(`restore --in-place needs --point ID (or latest)\n\n${usage}`);
  if (!values.vm) throw new UsageError(`restore --in-place needs --vm VM (the VM to roll back)\n\n${usage}`);
  if (values.transport !== 'nbd' || !values['nbd-uri']) throw new UsageError(`restore --in-place needs --transport nbd --nbd-uri TEMPLATE\n\n${usage}`);
  const diskKeys = (values.disk ?? []).map((key) => parsePositiveInteger(key, '--disk'));
  const { point, vm } = { point: values.point, vm: values.vm };
  const reporter = jobReporter(io, values.json ?? false, { progressIntervalMs: parseProgressInterval(values['progress-interval']) });
  const result = await withRepository(values, io, async (repository) => {
    const pointId = await resolvePointId(repository, point, vm);
    return withSession(values, io, (session) =>
      rollback({
        session,
        repository,
        pointId,
        vm: parseVmSelector(vm),
        diskKeys,
        transport: { transport: 'nbd', nbdUriTemplate: values['nbd-uri'] },
        powerOff: values['power-off'],
        signal: io.signal,
        onEvent: reporter.onEvent,
        onProgress: reporter.onProgress,
      }),
    );
  });
  reporter.finish();
  if (values.json) {
    writeJsonDocument(io, { ...documentHeader('rollback'), ...result });
  } else {
    for (const d of result.disks) {
      io.stdout.write(`disk ${d.key} (${d.label}): ${d.mode} (${d.reasonCode}: ${d.reason}), ${d.areas} areas, ${d.bytesWritten} bytes written\n`);
    }
    io.stdout.write(`rolled VM "${result.vm.name}" back to restore point ${result.pointId}${result.poweredOff ? ' (powered off first)' : ''} in ${(result.elapsedMs / 1000).toFixed(1)} s\n`);
  }
  return ExitCode.ok;
}

export const restoreCommand: Command = {
  name: 'restore',
  summary: 'restore one disk of a restore point to a file or NBD export',
  usage,
  async run(args, io) {
    const { values } = parseFlags({
      args,
      strict: true,
      options: {
        ...repositoryFlags,
        ...restorePointDiskFlags,
        disk: { type: 'string', multiple: true },
        ...connectionFlags,
        'in-place': { type: 'boolean', default: false },
        'power-off': { type: 'boolean', default: false },
        transport: { type: 'string' },
        'nbd-uri': { type: 'string' },
        to: { type: 'string' },
        'skip-damaged': { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        ...progressFlags,
      },
    });
    if (values['in-place']) {
      if (values.to) throw new UsageError('give either --to TARGET or --in-place, not both');
      return runInPlace(values, io);
    }
    if (!values.to) throw new UsageError(`restore needs --to TARGET (or --in-place)\n\n${usage}`);
    if ((values.disk?.length ?? 0) > 1) throw new UsageError('restore --to writes one disk: give one --disk KEY');
    const { point, vm, deviceKey } = parseRestorePointDisk({ ...values, disk: values.disk?.[0] }, 'restore', usage);
    const target = values.to;
    const bar = createProgress(`disk ${deviceKey}`, io.stderr, { quiet: values.json, progressIntervalMs: parseProgressInterval(values['progress-interval']) });
    const result = await withRepository(values, io, async (repository) =>
      restore({
        repository,
        pointId: await resolvePointId(repository, point, vm, {
          deviceKey,
          skipDamaged: values['skip-damaged'],
          onSkipped: (id, why) => io.stderr.write(`vcbt restore: skipping damaged restore point ${id}: ${why}\n`),
        }),
        deviceKey,
        target,
        signal: io.signal,
        onProgress: (done, total) => bar.update(done, total),
      }),
    );
    bar.finish();
    if (values.json) {
      writeJsonDocument(io, { ...documentHeader('restore'), ...result });
    } else {
      io.stdout.write(
        `restored restore point ${result.pointId} disk ${result.deviceKey} (${result.label}, ${result.capacityBytes} bytes) to ${result.target}${result.created ? ' (new sparse file)' : ''}: ` +
          `${result.bytesWritten} bytes written, ${result.bytesZero} bytes of zero chunks; ${(result.elapsedMs / 1000).toFixed(1)} s\n`,
      );
    }
    return ExitCode.ok;
  },
};
