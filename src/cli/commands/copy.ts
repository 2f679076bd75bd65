// `vcbt copy`: copy restore points from one repository to another (src/repository/copy.ts).
import { UsageError } from '../../errors.ts';
import { copyPoints, passphraseFrom, Repository } from '../../jobs/repository-admin.ts';
import { vmMatches } from '../../jobs/restore-points.ts';
import { parseFlags } from '../flags.ts';
import { ExitCode, type Command } from '../command.ts';
import { writeJsonDocument } from '../json-output.ts';
import { documentHeader } from '../json-documents.ts';

const usage = `usage: vcbt copy --from REPO --to REPO [--vm VM]... [--points ID,ID...]
                 [--from-passphrase-file FILE] [--to-passphrase-file FILE] [--json]

Copies restore points from one repository to another: a directory or s3://BUCKET/PREFIX
each (object store settings: docs/object-storage.md). Only chunks the target lacks are
stored; when the two repositories have different keys (or one is not encrypted) the data is
re-encrypted with the target's. Every copied point is read back from the target and
compared byte for byte with the source. A point the target already holds (same id) is
skipped, so running the same copy again copies nothing, and a copy cut short resumes: its
chunks already stored are not sent again.

  --vm VM                only this VM's points (name, moref, instance UUID or repository
                         id; repeatable)
  --points ID,ID...      only these restore points
  --from-passphrase-file FILE, --to-passphrase-file FILE
                         passphrases of encrypted repositories (else VCBT_FROM_PASSPHRASE,
                         VCBT_TO_PASSPHRASE, then VCBT_PASSPHRASE for both)
  --json                 the report on stdout`;

export const copyCommand: Command = {
  name: 'copy',
  summary: 'copy restore points between repositories (only missing chunks, re-encrypted, verified)',
  usage,
  async run(args, io) {
    const { values } = parseFlags({
      args,
      strict: true,
      options: {
        from: { type: 'string' },
        to: { type: 'string' },
        vm: { type: 'string', multiple: true },
        points: { type: 'string' },
        'from-passphrase-file': { type: 'string' },
        'to-passphrase-file': { type: 'string' },
        json: { type: 'boolean', default: false },
      },
    });
    if (!values.from || !values.to) throw new UsageError(`copy needs --from REPO and --to REPO\n\n${usage}`);
    if (values.from === values.to) throw new UsageError('--from and --to name the same repository');
    const wanted = values.points === undefined ? undefined : new Set(values.points.split(',').map((p) => p.trim()).filter((p) => p !== ''));
    const envFor = (side: 'FROM' | 'TO') => ({ ...io.env, VCBT_PASSPHRASE: io.env[`VCBT_${side}_PASSPHRASE`] || io.env.VCBT_PASSPHRASE });
    const from = await Repository.open(values.from, { passphrase: await passphraseFrom(values['from-passphrase-file'], envFor('FROM')), env: io.env });
    try {
      const to = await Repository.open(values.to, { passphrase: await passphraseFrom(values['to-passphrase-file'], envFor('TO')), env: io.env });
      try {
        const points = (await from.listRestorePoints()).filter((p) => (!values.vm || values.vm.some((vm) => vmMatches(p.vm, vm))) && (!wanted || wanted.has(p.id)));
        const missing = wanted ? [...wanted].filter((id) => !points.some((p) => p.id === id)) : [];
        if (missing.length > 0) throw new UsageError(`no readable restore point ${missing.join(', ')} in ${values.from}${values.vm ? ' of the VMs given' : ''}`);
        const report = await copyPoints(from, to, points.map((p) => p.id), (point) => {
          if (values.json) return;
          if (point.status === 'present') io.stdout.write(`present ${point.id}  (already in the target)\n`);
          else io.stdout.write(`copied  ${point.id}  ${point.disks} disks, ${point.bytesRead} bytes read, ${point.bytesStored} bytes stored (${point.chunksNew} new chunks, ${point.chunksReused} already there), verified\n`);
        });
        if (values.json) writeJsonDocument(io, { ...documentHeader('copy'), from: values.from, to: values.to, ...report });
        else io.stdout.write(`${report.points.filter((p) => p.status === 'copied').length} copied, ${report.points.filter((p) => p.status === 'present').length} already present\n`);
        return ExitCode.ok;
      } finally {
        await to.close();
      }
    } finally {
      await from.close();
    }
  },
};
