// `vcbt unlock`: remove stale (or, with --force, one live-looking) repository locks.
import { parseArgs } from 'node:util';
import { UsageError } from '../../errors.ts';
import { openRepositoryStorage, unlock } from '../../jobs/repository-admin.ts';
import type { ObservedLock } from '../../repository/lock.ts';
import { ExitCode, type Command } from '../command.ts';

const usage = `usage: vcbt unlock --repo DIR [--lock ID [--force]] [--json]

Removes the repository's stale locks: of a process that no longer exists, with a heartbeat
older than 10 minutes, unreadable, or with a heartbeat in the future on a file nobody renews.
Each removed lock is printed with what it said; live locks are listed and left alone.

  --lock ID              only this lock (16 hex digits, as listed)
  --force                with --lock: remove it even if it looks live (another host with a
                         recent heartbeat). A lock of a running process on this host is
                         never removed.
  --json                 machine-readable report on stdout

No passphrase is needed: lock files are not encrypted.`;

function line(lock: ObservedLock): string {
  const r = lock.record;
  return `${lock.name}  ${r ? `${r.kind} lock of pid ${r.pid} on ${r.host} for ${r.purpose}, since ${r.createdAt}` : 'unreadable'}: ${lock.reason}`;
}

export const unlockCommand: Command = {
  name: 'unlock',
  summary: 'remove stale repository locks (or one named lock with --force)',
  usage,
  async run(args, io) {
    const { values } = parseArgs({
      args,
      strict: true,
      options: { repo: { type: 'string' }, lock: { type: 'string' }, force: { type: 'boolean', default: false }, json: { type: 'boolean', default: false } },
    });
    if (!values.repo) throw new UsageError('--repo DIR is required');
    if (values.force && values.lock === undefined) throw new UsageError('--force needs --lock ID: live locks are only removed one at a time, by name');
    const storage = await openRepositoryStorage(values.repo, { env: io.env });
    const report = await unlock(storage, { lockName: values.lock, force: values.force });
    if (values.json) {
      io.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      return ExitCode.ok;
    }
    for (const lock of report.removed) io.stdout.write(`removed ${line(lock)}\n`);
    for (const lock of report.kept) io.stdout.write(`kept    ${line(lock)}\n`);
    if (report.removed.length === 0) io.stdout.write('no lock removed\n');
    return ExitCode.ok;
  },
};
