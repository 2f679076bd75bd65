// `vcbt verify`: check that restore points restore; exit 1 on any corruption.
import { verifyRepository } from '../../jobs/repository-admin.ts';
import { ExitCode, type Command } from '../command.ts';
import { writeJsonDocument } from '../json-output.ts';
import { documentHeader } from '../json-documents.ts';
import { repositoryFlags, withRepository } from '../repository-flags.ts';
import { parseFlags, parseProgressInterval, progressFlags, progressUsage } from '../flags.ts';
import { createProgress } from '../progress.ts';

const usage = `usage: vcbt verify --repo DIR [--point ID]... [--read-data | --repair] [--passphrase-file FILE] [--json]

Checks every restore point (or the ones named): manifests (also of committed points whose
manifest disappeared), indexes, and that every chunk they reference exists with its full
length. --read-data also decodes and re-hashes every chunk. Each problem is printed with
every restore point it affects; exit code 1 if any.

A damaged chunk or index file is moved aside into quarantine/ (never deleted) when no backup
runs, and each point's result is recorded (checks/<point>.json): a backup never builds an
incremental on a disk found damaged, and rewrites the moved chunks from its source.

  --repair               read every chunk, quarantine (waits for no lock: REPO_LOCKED while
                         a backup runs), and end with every point clean or unrecoverable,
                         with the exact byte ranges lost per disk

${progressUsage}`;

export const verifyCommand: Command = {
  name: 'verify',
  summary: 'check restore points (structure, or every chunk with --read-data)',
  usage,
  async run(args, io) {
    const { values } = parseFlags({
      args,
      strict: true,
      options: {
        ...repositoryFlags,
        point: { type: 'string', multiple: true },
        'read-data': { type: 'boolean', default: false },
        repair: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        ...progressFlags,
      },
    });
    const bar = createProgress('verify: chunks', io.stderr, { quiet: values.json, progressIntervalMs: parseProgressInterval(values['progress-interval']), unit: 'count' });
    return withRepository(values, io, async (repo) => {
      const report = await verifyRepository(repo, { pointIds: values.point, readData: values['read-data'], repair: values.repair, onProgress: ({ chunks, of }) => bar.update(chunks, of) });
      bar.finish();
      if (values.json) {
        writeJsonDocument(io, { ...documentHeader('verify'), ...report });
      } else {
        for (const c of report.corruptions) {
          io.stdout.write(`CORRUPT ${c.object} ${c.name}: ${c.code}: ${c.message}\n  affects restore points: ${c.affectedPoints.join(', ') || '(none)'}\n`);
          if (c.quarantinedTo) io.stdout.write(`  moved aside to ${c.quarantinedTo}\n`);
        }
        for (const p of report.points) {
          if (p.status === 'clean') continue;
          const lost = p.manifestLost ? 'every disk (manifest lost)' : p.lostDisks.map((d) => `disk ${d.deviceKey} bytes ${d.lostRanges.map((r) => `${r.offsetBytes}+${r.lengthBytes}`).join(', ')}`).join('; ');
          io.stdout.write(`${p.status.toUpperCase()} restore point ${p.pointId}: lost ${lost}\n`);
        }
        if (report.quarantineSkipped) io.stdout.write(`${report.quarantineSkipped}\n`);
        const what = report.readData ? `${report.chunksChecked} chunks read (${report.bytesDecoded} bytes)` : `${report.chunksChecked} chunks present`;
        io.stdout.write(`${report.corruptions.length === 0 ? 'ok' : `${report.corruptions.length} problem(s)`}: ${report.pointsChecked} restore points, ${report.indexesChecked} indexes, ${what}\n`);
      }
      return report.corruptions.length === 0 ? ExitCode.ok : ExitCode.failure;
    });
  },
};
