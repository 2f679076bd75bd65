// `vcbt points`: list the restore points in a repository.
import { parseFlags } from '../flags.ts';
import { ExitCode, type Command } from '../command.ts';
import { writeJsonDocument } from '../json-output.ts';
import { documentHeader } from '../json-documents.ts';
import { repositoryFlags, repositoryUsage, withRepository } from '../repository-flags.ts';
import { vmMatches } from '../../jobs/restore-points.ts';

const usage = `usage: vcbt points --repo DIR [--vm VM] [--json]

Lists restore points, oldest first: id, time, VM, and per disk its device key, capacity,
full or incremental, bytes read and bytes stored by that backup.

  --vm VM                only this VM's (name, moref, instance UUID or repository id)
  --json                 machine-readable list on stdout

${repositoryUsage}`;

export const pointsCommand: Command = {
  name: 'points',
  summary: 'list restore points in a repository',
  usage,
  async run(args, io) {
    const { values } = parseFlags({
      args,
      strict: true,
      options: { ...repositoryFlags, vm: { type: 'string' }, json: { type: 'boolean', default: false } },
    });
    const points = await withRepository(values, io, async (repository) => {
      const damaged = (id: string, error: { code: string; message: string }) => io.stderr.write(`vcbt points: restore point ${id} is damaged and not listed: ${error.code}: ${error.message} (run vcbt verify)\n`);
      const summaries = (await repository.listRestorePoints(damaged)).filter((p) => values.vm === undefined || vmMatches(p.vm, values.vm));
      const detailed = [];
      for (const summary of summaries) {
        const manifest = await repository.readManifest(summary.id);
        detailed.push({
          id: summary.id,
          createdAt: summary.createdAt,
          vm: summary.vm,
          snapshot: manifest.snapshot,
          disks: manifest.disks.map((d) => ({
            deviceKey: d.deviceKey,
            label: d.label,
            capacityBytes: d.capacityBytes,
            mode: d.kind,
            basedOn: d.basedOn?.pointId ?? null,
            changeId: d.changeId,
            bytesRead: d.stats.bytesRead,
            bytesStored: d.stats.bytesStored,
          })),
        });
      }
      return detailed;
    });
    if (values.json) {
      writeJsonDocument(io, { ...documentHeader('points'), points });
      return ExitCode.ok;
    }
    if (points.length === 0) io.stdout.write(`no restore points${values.vm === undefined ? '' : ` of VM "${values.vm}"`}\n`);
    for (const p of points) {
      io.stdout.write(`${p.id}  ${p.createdAt}  ${p.vm.name} (${p.vm.id})\n`);
      for (const d of p.disks) {
        io.stdout.write(`    disk ${d.deviceKey} ${d.label}: ${d.capacityBytes} bytes, ${d.mode}, ${d.bytesRead} bytes read, ${d.bytesStored} bytes stored\n`);
      }
    }
    return ExitCode.ok;
  },
};
