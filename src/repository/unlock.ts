// Removing locks by hand (`vcbt unlock`). Stale locks (dead process, old heartbeat,
// unreadable file, a heartbeat in the future on a file nobody renews) never block anyone, but
// a user may want them gone, and a lock that still looks live (another host, recent
// heartbeat) may be known dead by the operator. Safety: a lock of a live process on this
// host is never removed; any other live-looking lock only with `force`; every removal is
// reported with what the lock said.
import { RepositoryError } from './errors.ts';
import { defaultLockTiming, listLocks, lockRef, pidAlive, type LockTiming, type ObservedLock } from './lock.ts';
import { checkBlobRef, type Storage } from './storage/storage.ts';
import * as os from 'node:os';

export interface UnlockOptions {
  /** One lock by name (16 hex, as `vcbt unlock` lists them); default: every stale lock. */
  lockName?: string;
  /** Also remove a lock that looks live (never one of a live process on this host). */
  force?: boolean;
  timing?: LockTiming;
}

export interface UnlockReport {
  removed: ObservedLock[];
  /** Live locks left in place. */
  kept: ObservedLock[];
}

function ownedByLiveLocalProcess(lock: ObservedLock): boolean {
  return lock.record !== undefined && lock.record.host === os.hostname() && pidAlive(lock.record.pid);
}

export async function unlock(storage: Storage, options: UnlockOptions = {}): Promise<UnlockReport> {
  const locks = await listLocks(storage, options.timing ?? defaultLockTiming);
  if (options.lockName === undefined) {
    const removed = locks.filter((l) => l.stale);
    for (const lock of removed) await storage.delete(lockRef(lock.name));
    return { removed, kept: locks.filter((l) => !l.stale) };
  }
  checkBlobRef(lockRef(options.lockName));
  const lock = locks.find((l) => l.name === options.lockName);
  if (!lock) throw new RepositoryError('REPO_LOCK_NOT_FOUND', `no lock ${options.lockName} in ${storage.location}`, { lock: options.lockName });
  if (!lock.stale && ownedByLiveLocalProcess(lock)) {
    throw new RepositoryError('REPO_LOCK_LIVE', `lock ${lock.name} belongs to process ${lock.record?.pid}, which is running on this host: stop it instead (${lock.reason})`, { lock: lock.name, pid: lock.record?.pid });
  }
  if (!lock.stale && !options.force) {
    throw new RepositoryError('REPO_LOCK_LIVE', `lock ${lock.name} looks live (${lock.reason}); if you know that process is gone, give --force`, { lock: lock.name });
  }
  await storage.delete(lockRef(lock.name));
  return { removed: [lock], kept: locks.filter((l) => l !== lock && !l.stale) };
}
