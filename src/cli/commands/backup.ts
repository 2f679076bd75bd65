// `vcbt backup`: snapshot a VM, store what changed since its last restore point (or the
// allocated blocks) as a new restore point in the repository, remove the snapshot.
import { ExitCode, type Command } from '../command.ts';
import { connectionFlags, connectionUsage, withSession } from '../connection.ts';
import { parseFlags, parsePositiveInteger, parseProgressInterval } from '../flags.ts';
import { jobReporter } from '../job-reporter.ts';
import { backupDocument, writeJsonDocument } from '../json-output.ts';
import { repositoryFlags, repositoryUsage, withRepository } from '../repository-flags.ts';
import { parseTransportFlags, snapshotJobFlags, snapshotJobOptions, snapshotJobUsage, transportFlags, transportUsage } from '../transport-flags.ts';
import { UsageError } from '../../errors.ts';
import { backup } from '../../jobs/backup.ts';
import { parseVmSelector } from '../../jobs/vsphere-admin.ts';

const usage = `usage: vcbt backup --vm VM --repo DIR [--disk KEY ...] [--transport http|nbd|vddk|file]
                   [--full] [--quiesce] [--json] --server URL --user USER [--thumbprint FP]

Takes a snapshot of VM and stores a new restore point in the repository: per disk, the
blocks changed since the newest restore point of this VM holding that disk (incremental),
or the allocated blocks (full) the first time, after a capacity change, when the server
refuses the recorded ChangeId (CBT reset), or with --full. The snapshot is removed always,
also on errors and Ctrl-C; a failed backup commits nothing.

  --vm VM                name, moref:vm-10, uuid:..., path:DC/vm/folder/name
  --disk KEY             back up only this disk (repeatable; default: every disk)
  --full                 read every allocated block even if an incremental is possible
${snapshotJobUsage}

${repositoryUsage}

${transportUsage}

${connectionUsage}`;

export const backupCommand: Command = {
  name: 'backup',
  summary: 'store a restore point of a VM in a repository (incremental with CBT)',
  usage,
  async run(args, io) {
    const { values } = parseFlags({
      args,
      strict: true,
      options: {
        ...connectionFlags,
        ...repositoryFlags,
        ...transportFlags,
        vm: { type: 'string' },
        disk: { type: 'string', multiple: true },
        ...snapshotJobFlags,
      },
    });
    if (!values.vm) throw new UsageError(`backup needs --vm\n\n${usage}`);
    if (!values.repo) throw new UsageError(`backup needs --repo DIR\n\n${usage}`);
    const diskKeys = (values.disk ?? []).map((key) => parsePositiveInteger(key, '--disk'));
    const transport = await parseTransportFlags(values, io);
    const vm = parseVmSelector(values.vm);
    const reporter = jobReporter(io, values.json, { progressIntervalMs: parseProgressInterval(values['progress-interval']) });
    const result = await withRepository(values, io, (repository) =>
      withSession(values, io, (session) =>
        backup({
          session,
          vm,
          repository,
          diskKeys,
          transport,
          ...snapshotJobOptions(values),
          signal: io.signal,
          onEvent: reporter.onEvent,
          onProgress: reporter.onProgress,
        }),
      ),
    );
    reporter.finish();
    if (values.json) {
      writeJsonDocument(io, backupDocument(result));
      return ExitCode.ok;
    }
    for (const d of result.disks) {
      io.stdout.write(
        `disk ${d.deviceKey} (${d.label}): ${d.mode} (${d.reason}); ${d.areas} areas, ${d.bytesRead} bytes read, ${d.bytesStored} bytes stored ` +
          `(chunks: ${d.chunksNew} new, ${d.chunksReused} deduplicated or unchanged, ${d.chunksZero} zero); ChangeId ${d.changeId}\n`,
      );
    }
    const ratio = result.bytesRead > 0 ? ` (${((100 * result.bytesStored) / result.bytesRead).toFixed(1)}% of bytes read)` : '';
    io.stdout.write(`restore point ${result.pointId} of VM "${result.vm.name}": ${result.bytesRead} bytes read, ${result.bytesStored} bytes stored${ratio}; snapshot ${result.snapshot.moref} removed; ${(result.elapsedMs / 1000).toFixed(1)} s\n`);
    return ExitCode.ok;
  },
};
