// `vcbt restore`: write one disk of a restore point to a file or an NBD export.
import { ExitCode, type Command } from '../command.ts';
import { createProgress } from '../progress.ts';
import { parseFlags, parseProgressInterval, progressFlags, progressUsage } from '../flags.ts';
import { writeJsonDocument } from '../json-output.ts';
import { documentHeader } from '../json-documents.ts';
import { parseRestorePointDisk, repositoryFlags, restorePointDiskFlags, repositoryUsage, withRepository } from '../repository-flags.ts';
import { UsageError } from '../../errors.ts';
import { restore } from '../../jobs/restore.ts';
import { resolvePointId } from '../../jobs/restore-points.ts';

const usage = `usage: vcbt restore --repo DIR --point ID|latest [--vm VM] [--skip-damaged] --disk KEY --to TARGET [--json]

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

${repositoryUsage}`;

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
        to: { type: 'string' },
        'skip-damaged': { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        ...progressFlags,
      },
    });
    if (!values.to) throw new UsageError(`restore needs --to TARGET\n\n${usage}`);
    const { point, vm, deviceKey } = parseRestorePointDisk(values, 'restore', usage);
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
