// Repository locks (docs/format.md, "Locks"). A lock is a file locks/<random>.json holding
// {kind, pid, host, purpose, createdAt, heartbeatAt}. Writers (backups) and readers take a
// shared lock; prune/GC take an exclusive one. Acquiring = write our file, then look at the
// others: a live exclusive lock (or, for an exclusive request, any live lock) is a conflict,
// so we remove our file and fail with REPO_LOCKED naming the holders.
//
// A lock is stale when its process is gone (same host, pid no longer exists) or its
// heartbeat is older than staleAfterMs (another host, or a process frozen for that long).
// Stale locks never block; they are reported to the caller, and only prune (holding the
// exclusive lock) deletes them. A live lock is never removed by anyone but its owner.
// A holder refreshes heartbeatAt every refreshIntervalMs; if its file has vanished (removed
// as stale while the process was frozen) the lock is lost and commit refuses (REPO_LOCK_LOST).
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import { RepositoryError } from './errors.ts';
import { check, object, oneOf, safeInteger, string, timestamp } from './schema.ts';
import { isBlobNotFound, type BlobRef, type Storage } from './storage/storage.ts';

export type LockKind = 'shared' | 'exclusive';

export interface LockRecord {
  kind: LockKind;
  pid: number;
  host: string;
  purpose: string;
  createdAt: string;
  heartbeatAt: string;
}

export interface LockTiming {
  refreshIntervalMs: number;
  /** Much longer than refreshIntervalMs: tolerates clock drift between hosts and short stalls. */
  staleAfterMs: number;
}

export const defaultLockTiming: LockTiming = { refreshIntervalMs: 60_000, staleAfterMs: 10 * 60_000 };

/** Far above any real lock record (about 150 bytes). */
const maxLockBytes = 64 * 1024;

export interface ObservedLock {
  /** The lock's blob name (16 hex). */
  name: string;
  /** Where it lives, for messages. */
  file: string;
  record: LockRecord | undefined;
  stale: boolean;
  /** Why stale (or why it counts as live). */
  reason: string;
}

const recordShape = object({ kind: oneOf('shared', 'exclusive'), pid: safeInteger(1), host: string, purpose: string, createdAt: timestamp, heartbeatAt: timestamp });

/** The record, or why the file is not one. */
function parseRecord(text: string): LockRecord | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return 'it is not JSON';
  }
  return check(value, recordShape) ?? (value as LockRecord);
}

export function lockRef(name: string): BlobRef {
  return { kind: 'lock', name };
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function listLocks(storage: Storage, timing: LockTiming = defaultLockTiming, nowMs = Date.now()): Promise<ObservedLock[]> {
  const observed: ObservedLock[] = [];
  for await (const name of storage.list('lock')) {
    const ref = lockRef(name);
    const file = storage.describe(ref);
    let text: string;
    let mtimeMs: number;
    try {
      text = (await storage.get(ref, { maxBytes: maxLockBytes })).toString('utf8');
      const info = await storage.stat(ref);
      if (!info) continue; // released meanwhile
      mtimeMs = info.modifiedMs;
    } catch (error) {
      if (isBlobNotFound(error)) continue; // released meanwhile
      if (error instanceof RepositoryError && error.code === 'REPO_NOT_REGULAR_FILE') {
        observed.push({ name, file, record: undefined, stale: true, reason: 'not a regular file' });
        continue;
      }
      throw error;
    }
    const parsed = parseRecord(text);
    if (typeof parsed === 'string') {
      // Lock files are written atomically, so a torn one is never seen: this is damage or a
      // foreign file. It blocks nobody; prune and `vcbt unlock` remove it.
      observed.push({ name, file, record: undefined, stale: true, reason: `unreadable lock file (${parsed})` });
      continue;
    }
    const record = parsed;
    let ageMs = nowMs - Date.parse(record.heartbeatAt);
    let clock = '';
    if (ageMs < -timing.staleAfterMs) {
      // A heartbeat implausibly far in the future (a wrong clock, or a forged file) would never
      // age: judge it by the file's own time instead, which a live holder renews every refresh.
      clock = `heartbeat ${Math.round(-ageMs / 1000)} s in the future (wrong clock?), `;
      ageMs = nowMs - mtimeMs;
    }
    if (record.host === os.hostname() && !pidAlive(record.pid)) {
      observed.push({ name, file, record, stale: true, reason: `process ${record.pid} on ${record.host} no longer exists` });
    } else if (!(ageMs <= timing.staleAfterMs)) {
      observed.push({ name, file, record, stale: true, reason: `${clock}${clock ? 'file written' : 'heartbeat is'} ${Math.round(ageMs / 1000)} s ${clock ? 'ago' : 'old'} (limit ${timing.staleAfterMs / 1000} s)` });
    } else {
      observed.push({ name, file, record, stale: false, reason: `${clock}held by pid ${record.pid} on ${record.host} for ${record.purpose}` });
    }
  }
  return observed;
}

export function describeLock(lock: ObservedLock): string {
  return `${lock.name} (${lock.record?.kind ?? 'unknown'} lock: ${lock.reason})`;
}

export class RepositoryLock {
  readonly name: string;
  readonly file: string;
  readonly kind: LockKind;
  /** Stale locks of others seen while acquiring (report them; prune removes them). */
  readonly staleLocks: ObservedLock[];
  readonly #record: LockRecord;
  readonly #storage: Storage;
  #timer: NodeJS.Timeout | undefined;
  #lost = false;
  #refreshing: Promise<void> = Promise.resolve();

  private constructor(storage: Storage, name: string, kind: LockKind, record: LockRecord, staleLocks: ObservedLock[]) {
    this.name = name;
    this.file = storage.describe(lockRef(name));
    this.kind = kind;
    this.#record = record;
    this.#storage = storage;
    this.staleLocks = staleLocks;
  }

  static async acquire(storage: Storage, kind: LockKind, purpose: string, timing: LockTiming = defaultLockTiming): Promise<RepositoryLock> {
    const now = new Date().toISOString();
    const record: LockRecord = { kind, pid: process.pid, host: os.hostname(), purpose, createdAt: now, heartbeatAt: now };
    const name = randomBytes(8).toString('hex');
    const repoPath = storage.location;
    await storage.put(lockRef(name), JSON.stringify(record));
    const others = (await listLocks(storage, timing)).filter((l) => l.name !== name);
    const conflicts = others.filter((l) => !l.stale && (kind === 'exclusive' || l.record?.kind !== 'shared'));
    if (conflicts.length > 0) {
      await storage.delete(lockRef(name));
      throw new RepositoryError(
        'REPO_LOCKED',
        `repository ${repoPath} is locked: ${conflicts.map(describeLock).join('; ')}`,
        { repoPath, locks: conflicts.map((l) => ({ file: l.file, ...l.record, reason: l.reason })) },
      );
    }
    const lock = new RepositoryLock(storage, name, kind, record, others.filter((l) => l.stale));
    lock.#timer = setInterval(() => {
      lock.#refreshing = lock.#refresh();
    }, timing.refreshIntervalMs);
    lock.#timer.unref();
    return lock;
  }

  async #exists(): Promise<boolean> {
    return (await this.#storage.stat(lockRef(this.name)).catch(() => undefined)) !== undefined;
  }

  async #refresh(): Promise<void> {
    if (!(await this.#exists())) {
      this.#lost = true;
      return;
    }
    this.#record.heartbeatAt = new Date().toISOString();
    await this.#storage.put(lockRef(this.name), JSON.stringify(this.#record)).catch(() => {
      this.#lost = true;
    });
  }

  /** Throws REPO_LOCK_LOST when our lock file has been removed by someone else. */
  async assertHeld(): Promise<void> {
    await this.#refreshing;
    if (!(await this.#exists())) this.#lost = true;
    if (this.#lost) throw new RepositoryError('REPO_LOCK_LOST', `lock ${this.file} was removed by another process (treated as stale); refusing to commit`, { file: this.file });
  }

  async release(): Promise<void> {
    clearInterval(this.#timer);
    await this.#refreshing;
    await this.#storage.delete(lockRef(this.name));
  }
}
