// Kept file-browsing sessions: one FilesBrowser (NBD export + libguestfs appliance) per open
// restore point disk, started on first use and closed after an idle time, so that only the
// first listing of a point pays the appliance's start-up (12-20 s emulated, a few seconds with
// KVM) and every later question costs well under a second. Used by the service (the API and the
// console browse through it); a CLI command opens and closes its own browser instead.
//
// Terms:
// - key: what a session reads: repository (its path or URL), restore point id, disk key.
// - use: one caller's turn on a session. A browser mounts one file system at a time, so uses
//   of one session run one after another (in arrival order), never interleaved.
// - idle: a session with no use running or waiting; closed `idleMs` after its last use.
// - limit: at most `maxSessions` appliances at once (each takes 300-600 MiB). Opening one more
//   closes the least recently used idle session; when every session is in use the caller gets
//   FILES_BUSY rather than an unbounded number of appliances.
import { FilesError } from './files.ts';

export interface Closable {
  close(): Promise<void>;
}

export interface SessionPoolOptions {
  /** Idle time after which a session is closed; default 5 minutes. */
  idleMs?: number;
  /** Appliances open at once; default 2. */
  maxSessions?: number;
}

interface Entry<T extends Closable> {
  key: string;
  opening: Promise<T>;
  /** Tail of the chain of uses: the next use starts when it settles. */
  tail: Promise<void>;
  users: number;
  lastUsedMs: number;
  timer: NodeJS.Timeout | null;
}

export const DEFAULT_IDLE_MS = 5 * 60_000;
export const DEFAULT_MAX_SESSIONS = 2;

export class SessionPool<T extends Closable> {
  readonly #idleMs: number;
  readonly #maxSessions: number;
  readonly #entries = new Map<string, Entry<T>>();
  #closed = false;

  constructor(options: SessionPoolOptions = {}) {
    this.#idleMs = options.idleMs ?? DEFAULT_IDLE_MS;
    this.#maxSessions = options.maxSessions ?? DEFAULT_MAX_SESSIONS;
  }

  /** Sessions open or opening now. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Runs `work` on the session for `key`, opening it with `open` when there is none. A session
   * that fails to open is forgotten (the next use tries again); one whose use fails stays open
   * unless `work`'s error says the engine is gone (FILES_ENGINE_FAILED), then it is closed.
   */
  async use<R>(key: string, open: () => Promise<T>, work: (session: T) => Promise<R>): Promise<R> {
    if (this.#closed) throw new FilesError('FILES_BUSY', 'the file browser is shutting down', { key });
    let entry = this.#entries.get(key);
    if (!entry) await this.#makeRoom(key);
    entry = this.#entries.get(key);
    if (!entry) {
      const created: Entry<T> = { key, opening: open(), tail: Promise.resolve(), users: 0, lastUsedMs: Date.now(), timer: null };
      created.opening.catch(() => {
        if (this.#entries.get(key) === created) this.#entries.delete(key);
      });
      this.#entries.set(key, created);
      entry = created;
    }
    const current = entry;
    current.users++;
    if (current.timer) clearTimeout(current.timer);
    current.timer = null;
    const previous = current.tail;
    let finish!: () => void;
    current.tail = new Promise<void>((resolve) => (finish = resolve));
    try {
      await previous;
      const session = await current.opening;
      return await work(session).catch(async (error: unknown) => {
        if (error instanceof FilesError && error.code === 'FILES_ENGINE_FAILED') await this.#drop(current);
        throw error;
      });
    } finally {
      current.users--;
      current.lastUsedMs = Date.now();
      finish();
      if (current.users === 0 && this.#entries.get(key) === current) {
        current.timer = setTimeout(() => void this.#drop(current), this.#idleMs);
        current.timer.unref();
      }
    }
  }

  /** Closes every session (waiting for uses that run). */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#entries.values()].map(async (entry) => {
      await entry.tail;
      await this.#drop(entry);
    }));
  }

  async #makeRoom(forKey: string): Promise<void> {
    if (this.#entries.size < this.#maxSessions) return;
    const idle = [...this.#entries.values()].filter((e) => e.users === 0).sort((a, b) => a.lastUsedMs - b.lastUsedMs);
    if (idle.length === 0) {
      throw new FilesError('FILES_BUSY', `${this.#entries.size} file browsing sessions are in use (the limit); try again when one ends`, { key: forKey, maxSessions: this.#maxSessions });
    }
    await this.#drop(idle[0]);
  }

  async #drop(entry: Entry<T>): Promise<void> {
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = null;
    if (this.#entries.get(entry.key) !== entry) return;
    this.#entries.delete(entry.key);
    const session = await entry.opening.catch(() => null);
    await session?.close();
  }
}
