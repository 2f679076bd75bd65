// `vcbt points`: list the restore points in a repository.
import { parseFlags } from '../flags.ts';
import { ExitCode, type Command } from '../command.ts';
import { writeJsonDocument } from '../json-output.ts';
import { documentHeader } from '../json-documents.ts';
import { repositoryFlags, repositoryUsage, withRepository } from '../repository-flags.ts';
import { listPoints } from '../../jobs/restore-points.ts';
import type { PointJson } from '../json-documents.ts';

const usage = `usage: vcbt points --repo DIR [--vm VM] [--json]

Lists restore points, oldest first: id, time, VM, and per disk its device key, capacity,
full or incremental, bytes read and bytes stored by that backup. A damaged point is listed
and marked DAMAGED: its manifest cannot be read or is gone (committed, not pruned), or the
last vcbt verify found data of it lost (the byte ranges are shown).

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
    const points: PointJson[] = await withRepository(values, io, async (repository) =>
      (await listPoints(repository, values.vm)).map((p) => ({
        id: p.id,
        createdAt: p.createdAt,
        vm: p.vm,
        snapshot: p.snapshot,
        damaged: p.damaged,
        manifestProblem: p.manifestProblem,
        lastVerify: p.lastVerify && { checkedAt: p.lastVerify.checkedAt, status: p.lastVerify.status, readData: p.lastVerify.readData, manifestLost: p.lastVerify.manifestLost, lostDisks: p.lastVerify.lostDisks },
        disks: p.disks.map((d) => ({
          deviceKey: d.deviceKey,
          label: d.label,
          capacityBytes: d.capacityBytes,
          mode: d.kind,
          basedOn: d.basedOn?.pointId ?? null,
          changeId: d.changeId,
          bytesRead: d.stats.bytesRead,
          bytesStored: d.stats.bytesStored,
        })),
        hardware: p.hardware,
      })),
    );
    if (values.json) {
      writeJsonDocument(io, { ...documentHeader('points'), points });
      return ExitCode.ok;
    }
    if (points.length === 0) io.stdout.write(`no restore points${values.vm === undefined ? '' : ` of VM "${values.vm}"`}\n`);
    for (const p of points) {
      const who = p.vm ? `${p.vm.name} (${p.vm.id})` : 'VM unknown';
      io.stdout.write(`${p.id}  ${p.createdAt}  ${who}${p.damaged ? '  DAMAGED' : ''}\n`);
      if (p.manifestProblem) io.stdout.write(`    manifest: ${p.manifestProblem.code}: ${p.manifestProblem.message}\n`);
      if (p.lastVerify && p.lastVerify.status !== 'clean') {
        const lost = p.lastVerify.manifestLost ? 'every disk (manifest lost)' : p.lastVerify.lostDisks.map((d) => `disk ${d.deviceKey}: ${d.lostRanges.map((r) => `${r.offsetBytes}+${r.lengthBytes}`).join(', ')}`).join('; ');
        io.stdout.write(`    verify ${p.lastVerify.checkedAt}: ${p.lastVerify.status}; lost ${lost}\n`);
      }
      if (p.hardware) {
        const h = p.hardware;
        const nics = h.nics.map((n) => `${n.adapterType.replace(/^Virtual/, '')} on ${n.network ?? 'no network'}`).join(', ') || 'no NICs';
        io.stdout.write(`    hardware: ${h.numCpu} CPU (${h.coresPerSocket} per socket), ${h.memoryMiB} MiB, ${h.firmware}${h.secureBoot ? ' secure boot' : ''}, ${h.hardwareVersion}, ${h.guestId}; ${h.disks.length} disk(s); ${nics}\n`);
      }
      for (const d of p.disks) {
        io.stdout.write(`    disk ${d.deviceKey} ${d.label}: ${d.capacityBytes} bytes, ${d.mode}, ${d.bytesRead} bytes read, ${d.bytesStored} bytes stored\n`);
      }
    }
    return ExitCode.ok;
  },
};
