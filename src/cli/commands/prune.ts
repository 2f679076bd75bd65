// `vcbt prune`: apply a retention policy and collect garbage.
import { UsageError } from '../../errors.ts';
import { prune } from '../../jobs/repository-admin.ts';
import { parseFlags } from '../flags.ts';
import { ExitCode, type Command } from '../command.ts';
import { writeJsonDocument } from '../json-output.ts';
import { documentHeader } from '../json-documents.ts';
import { repositoryFlags, withRepository } from '../repository-flags.ts';

const usage = `usage: vcbt prune --repo DIR [--keep-last N] [--keep-daily D] [--keep-weekly W] [--keep-monthly M]
                  [--dry-run] [--passphrase-file FILE] [--json]

Per VM, keeps the N newest restore points and the newest one of each of the D most recent
days, W most recent ISO weeks and M most recent months (UTC) that have one; deletes the
others, removes stale locks, then deletes chunks and indexes nothing references any more.
Needs the exclusive lock (no backup running). --dry-run only reports.`;

function count(text: string | undefined, flag: string): number {
  if (text === undefined) return 0;
  if (!/^\d+$/.test(text)) throw new UsageError(`${flag} must be a whole number, got "${text}"`, { flag });
  return Number(text);
}

export const pruneCommand: Command = {
  name: 'prune',
  summary: 'delete restore points a retention policy drops, then collect garbage',
  usage,
  async run(args, io) {
    const { values } = parseFlags({
      args,
      strict: true,
      options: {
        ...repositoryFlags,
        'keep-last': { type: 'string' },
        'keep-daily': { type: 'string' },
        'keep-weekly': { type: 'string' },
        'keep-monthly': { type: 'string' },
        'dry-run': { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
      },
    });
    const policy = {
      keepLast: count(values['keep-last'], '--keep-last'),
      keepDaily: count(values['keep-daily'], '--keep-daily'),
      keepWeekly: count(values['keep-weekly'], '--keep-weekly'),
      keepMonthly: count(values['keep-monthly'], '--keep-monthly'),
    };
    if (policy.keepLast + policy.keepDaily + policy.keepWeekly + policy.keepMonthly === 0) {
      throw new UsageError('give at least one --keep-* rule (a policy that keeps nothing would delete every restore point)');
    }
    return withRepository(values, io, async (repo) => {
      const report = await prune(repo, policy, { dryRun: values['dry-run'] });
      if (values.json) {
        writeJsonDocument(io, { ...documentHeader('prune'), ...report });
        return ExitCode.ok;
      }
      const verb = report.dryRun ? 'would ' : '';
      for (const k of report.keep) io.stdout.write(`keep    ${k.id}  ${k.createdAt}  ${k.vmId}  (${k.reasons.join(', ')})\n`);
      for (const r of report.remove) io.stdout.write(`${report.dryRun ? 'would remove' : 'remove'}  ${r.id}  ${r.createdAt}  ${r.vmId}\n`);
      for (const l of report.locked) io.stdout.write(`locked  ${l.id}  ${l.createdAt}  ${l.vmId}  (kept: immutable until ${l.lockedUntil})\n`);
      for (const id of report.damaged) io.stdout.write(`damaged ${id}  (kept; run vcbt verify)\n`);
      for (const s of report.staleLocks) io.stdout.write(`stale lock ${s} ${report.dryRun ? '(would be removed)' : 'removed'}\n`);
      const gc = report.gc;
      if (gc.skippedReason) io.stdout.write(`garbage collection skipped: ${gc.skippedReason}\n`);
      else io.stdout.write(`garbage: ${verb}delete ${gc.chunksDeleted} chunks (${gc.bytesDeleted} bytes), ${gc.indexesDeleted} indexes, ${gc.tempFilesDeleted} temp files; ${gc.chunksKept} chunks kept${gc.lockedKept > 0 ? `, ${gc.lockedKept} unreferenced objects still locked (left for a later prune)` : ''}${gc.tempFilesKept > 0 ? `, ${gc.tempFilesKept} recent temp files left (a live writer may own them)` : ''}\n`);
      return ExitCode.ok;
    });
  },
};
