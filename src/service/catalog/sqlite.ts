// The catalog (catalog.ts) on an embedded SQLite file through node:sqlite. Several processes
// (the daemon, `vcbt job run` from cron, `vcbt job status`) may open one file: it runs in WAL
// mode and waits up to `busyTimeoutMs` for another writer. Schema changes bump `user_version`.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type SQLInputValue } from 'node:sqlite';
import { VcbtError, isErrorCode } from '../../errors.ts';
import type { Catalog, LogRecord, NewRun, RepositorySizeSample, RunRecord, RunStatus, TaskEnd, TaskRecord, TokenRecord } from './catalog.ts';

const SCHEMA_VERSION = 2;

const schema = `
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  job TEXT NOT NULL, job_type TEXT NOT NULL, trigger TEXT NOT NULL, status TEXT NOT NULL,
  started_at TEXT NOT NULL, ended_at TEXT, host TEXT NOT NULL, pid INTEGER NOT NULL,
  error_code TEXT, error_message TEXT);
CREATE INDEX IF NOT EXISTS runs_job ON runs (job, id);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE TABLE IF NOT EXISTS tasks (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  vm TEXT NOT NULL, moref TEXT NOT NULL, host TEXT, status TEXT NOT NULL,
  started_at TEXT NOT NULL, ended_at TEXT, attempts INTEGER NOT NULL DEFAULT 0,
  mode TEXT, reason_codes TEXT NOT NULL DEFAULT '[]', bytes_read INTEGER NOT NULL DEFAULT 0,
  bytes_stored INTEGER NOT NULL DEFAULT 0, point_id TEXT, error_code TEXT, error_message TEXT,
  warnings TEXT NOT NULL DEFAULT '[]');
CREATE INDEX IF NOT EXISTS tasks_run ON tasks (run_id);
CREATE INDEX IF NOT EXISTS tasks_moref ON tasks (moref, id);
CREATE TABLE IF NOT EXISTS logs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  vm TEXT, at TEXT NOT NULL, line TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logs_run ON logs (run_id);
CREATE TABLE IF NOT EXISTS schedule_marks (job TEXT PRIMARY KEY, handled_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS repository_sizes (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  repository TEXT NOT NULL, at TEXT NOT NULL, stored_bytes INTEGER NOT NULL, logical_bytes INTEGER NOT NULL,
  chunks INTEGER NOT NULL, points INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS repository_sizes_repository ON repository_sizes (repository, id);
CREATE TABLE IF NOT EXISTS tokens (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  hash TEXT NOT NULL UNIQUE, read_only INTEGER NOT NULL, created_at TEXT NOT NULL, note TEXT NOT NULL);
`;

/** Codes: CATALOG_UNAVAILABLE (context `path`). */
export class CatalogError extends VcbtError {}

type Row = Record<string, SQLInputValue>;

function errorOf(code: SQLInputValue, message: SQLInputValue): RunRecord['error'] {
  if (typeof code !== 'string') return null;
  return { code: isErrorCode(code) ? code : 'INTERNAL', message: String(message ?? '') };
}

function runOf(r: Row): RunRecord {
  return {
    id: Number(r.id),
    job: String(r.job),
    jobType: r.job_type as RunRecord['jobType'],
    trigger: r.trigger as RunRecord['trigger'],
    status: r.status as RunStatus,
    startedAt: String(r.started_at),
    endedAt: r.ended_at === null ? null : String(r.ended_at),
    host: String(r.host),
    pid: Number(r.pid),
    error: errorOf(r.error_code, r.error_message),
  };
}

function tokenOf(r: Row): TokenRecord {
  return { id: Number(r.id), hash: String(r.hash), readOnly: Number(r.read_only) === 1, createdAt: String(r.created_at), note: String(r.note) };
}

function taskOf(r: Row): TaskRecord {
  return {
    id: Number(r.id),
    runId: Number(r.run_id),
    vm: String(r.vm),
    moref: String(r.moref),
    host: r.host === null ? null : String(r.host),
    status: r.status as RunStatus,
    startedAt: String(r.started_at),
    endedAt: r.ended_at === null ? null : String(r.ended_at),
    attempts: Number(r.attempts),
    mode: (r.mode ?? null) as TaskRecord['mode'],
    reasonCodes: JSON.parse(String(r.reason_codes)) as string[],
    bytesRead: Number(r.bytes_read),
    bytesStored: Number(r.bytes_stored),
    pointId: r.point_id === null ? null : String(r.point_id),
    error: errorOf(r.error_code, r.error_message),
    warnings: JSON.parse(String(r.warnings)) as string[],
  };
}

export interface SqliteCatalogOptions {
  /** How long a write waits for another process's write (default 10 s). */
  busyTimeoutMs?: number;
}

/** Opens (creating it and its directory when absent) the catalog file; CATALOG_UNAVAILABLE. */
export function openSqliteCatalog(path: string, options: SqliteCatalogOptions = {}): Catalog {
  let db: DatabaseSync;
  try {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    db = new DatabaseSync(path, { timeout: options.busyTimeoutMs ?? 10_000 });
    db.exec('PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;');
    const version = Number((db.prepare('PRAGMA user_version').get() as Row).user_version);
    if (version > SCHEMA_VERSION) throw new Error(`the catalog has schema version ${version}; this vcbt knows up to ${SCHEMA_VERSION}`);
    db.exec(schema);
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    throw new CatalogError('CATALOG_UNAVAILABLE', `cannot open the catalog ${path}: ${detail}`, { path }, { cause: error });
  }
  return new SqliteCatalog(db);
}

class SqliteCatalog implements Catalog {
  readonly #db: DatabaseSync;
  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  #all(sql: string, ...params: SQLInputValue[]): Row[] {
    return this.#db.prepare(sql).all(...params) as Row[];
  }

  async startRun(run: NewRun): Promise<number> {
    const r = this.#db
      .prepare('INSERT INTO runs (job, job_type, trigger, status, started_at, host, pid) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(run.job, run.jobType, run.trigger, 'running', run.startedAt, run.host, run.pid);
    return Number(r.lastInsertRowid);
  }

  async endRun(runId: number, end: { status: RunStatus; endedAt: string; error: RunRecord['error'] }): Promise<void> {
    this.#db.prepare('UPDATE runs SET status = ?, ended_at = ?, error_code = ?, error_message = ? WHERE id = ?').run(end.status, end.endedAt, end.error?.code ?? null, end.error?.message ?? null, runId);
  }

  async startTask(runId: number, task: { vm: string; moref: string; host: string | null; startedAt: string }): Promise<number> {
    const existing = this.#all('SELECT id FROM tasks WHERE run_id = ? AND moref = ?', runId, task.moref)[0];
    if (existing) return Number(existing.id);
    const r = this.#db.prepare('INSERT INTO tasks (run_id, vm, moref, host, status, started_at) VALUES (?, ?, ?, ?, ?, ?)').run(runId, task.vm, task.moref, task.host, 'running', task.startedAt);
    return Number(r.lastInsertRowid);
  }

  async endTask(taskId: number, end: TaskEnd): Promise<void> {
    this.#db
      .prepare('UPDATE tasks SET status = ?, ended_at = ?, attempts = ?, mode = ?, reason_codes = ?, bytes_read = ?, bytes_stored = ?, point_id = ?, error_code = ?, error_message = ?, warnings = ? WHERE id = ?')
      .run(end.status, end.endedAt, end.attempts, end.mode, JSON.stringify(end.reasonCodes), end.bytesRead, end.bytesStored, end.pointId, end.error?.code ?? null, end.error?.message ?? null, JSON.stringify(end.warnings), taskId);
  }

  async log(runId: number, vm: string | null, at: string, line: string): Promise<void> {
    this.#db.prepare('INSERT INTO logs (run_id, vm, at, line) VALUES (?, ?, ?, ?)').run(runId, vm, at, line);
  }

  async run(runId: number): Promise<RunRecord | undefined> {
    const row = this.#all('SELECT * FROM runs WHERE id = ?', runId)[0];
    return row ? runOf(row) : undefined;
  }

  async runs(query: { job?: string; limit: number; beforeId?: number }): Promise<RunRecord[]> {
    const where: string[] = [];
    const params: SQLInputValue[] = [];
    if (query.job !== undefined) {
      where.push('job = ?');
      params.push(query.job);
    }
    if (query.beforeId !== undefined) {
      where.push('id < ?');
      params.push(query.beforeId);
    }
    return this.#all(`SELECT * FROM runs ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`, ...params, query.limit).map(runOf);
  }

  async tasks(runId: number): Promise<TaskRecord[]> {
    return this.#all('SELECT * FROM tasks WHERE run_id = ? ORDER BY vm, id', runId).map(taskOf);
  }

  async logs(runId: number): Promise<LogRecord[]> {
    return this.#all('SELECT run_id, vm, at, line FROM logs WHERE run_id = ? ORDER BY id', runId).map((r) => ({ runId: Number(r.run_id), vm: r.vm === null ? null : String(r.vm), at: String(r.at), line: String(r.line) }));
  }

  #newestPerVm(statusFilter: string): Array<TaskRecord & { job: string }> {
    const rows = this.#all(
      `SELECT t.*, g.job AS job FROM (SELECT MAX(t2.id) AS id, r2.job AS job FROM tasks t2 JOIN runs r2 ON r2.id = t2.run_id ${statusFilter} GROUP BY r2.job, t2.moref) g
       JOIN tasks t ON t.id = g.id ORDER BY t.vm, t.moref, g.job`,
    );
    return rows.map((r) => ({ ...taskOf(r), job: String(r.job) }));
  }

  async vmTasks(moref: string, limit: number): Promise<Array<TaskRecord & { job: string }>> {
    return this.#all('SELECT t.*, r.job AS job FROM tasks t JOIN runs r ON r.id = t.run_id WHERE t.moref = ? ORDER BY t.id DESC LIMIT ?', moref, limit).map((r) => ({ ...taskOf(r), job: String(r.job) }));
  }

  async addRepositorySize(sample: RepositorySizeSample): Promise<void> {
    this.#db
      .prepare('INSERT INTO repository_sizes (repository, at, stored_bytes, logical_bytes, chunks, points) VALUES (?, ?, ?, ?, ?, ?)')
      .run(sample.repository, sample.at, sample.storedBytes, sample.logicalBytes, sample.chunks, sample.points);
  }

  async repositorySizes(repository: string, limit: number): Promise<RepositorySizeSample[]> {
    return this.#all('SELECT * FROM (SELECT * FROM repository_sizes WHERE repository = ? ORDER BY id DESC LIMIT ?) ORDER BY id', repository, limit).map((r) => ({
      repository: String(r.repository),
      at: String(r.at),
      storedBytes: Number(r.stored_bytes),
      logicalBytes: Number(r.logical_bytes),
      chunks: Number(r.chunks),
      points: Number(r.points),
    }));
  }

  async latestTasks(): Promise<Array<TaskRecord & { job: string }>> {
    return this.#newestPerVm('');
  }

  async lastGoodTasks(): Promise<Array<TaskRecord & { job: string }>> {
    return this.#newestPerVm("WHERE t2.status IN ('success', 'warning')");
  }

  async markInterrupted(isGone: (host: string, pid: number) => boolean, endedAt: string): Promise<RunRecord[]> {
    const marked: RunRecord[] = [];
    for (const run of this.#all("SELECT * FROM runs WHERE status = 'running'").map(runOf)) {
      if (!isGone(run.host, run.pid)) continue;
      const error = { code: 'INTERRUPTED' as const, message: `the process running it (pid ${run.pid} on ${run.host}) ended before the run did` };
      this.#db.exec('BEGIN IMMEDIATE');
      try {
        this.#db.prepare("UPDATE runs SET status = 'interrupted', ended_at = ?, error_code = ?, error_message = ? WHERE id = ? AND status = 'running'").run(endedAt, error.code, error.message, run.id);
        this.#db.prepare("UPDATE tasks SET status = 'interrupted', ended_at = ?, error_code = ?, error_message = ? WHERE run_id = ? AND status = 'running'").run(endedAt, error.code, error.message, run.id);
        this.#db.exec('COMMIT');
      } catch (e) {
        this.#db.exec('ROLLBACK');
        throw e;
      }
      marked.push({ ...run, status: 'interrupted', endedAt, error });
    }
    return marked;
  }

  async pruneHistory(endedBefore: string): Promise<number> {
    this.#db.prepare('DELETE FROM repository_sizes WHERE at < ?').run(endedBefore);
    return Number(this.#db.prepare("DELETE FROM runs WHERE status <> 'running' AND ended_at < ?").run(endedBefore).changes);
  }

  async scheduleMarks(): Promise<Map<string, string>> {
    return new Map(this.#all('SELECT job, handled_at FROM schedule_marks').map((r) => [String(r.job), String(r.handled_at)]));
  }

  async setScheduleMark(job: string, at: string): Promise<void> {
    this.#db.prepare('INSERT INTO schedule_marks (job, handled_at) VALUES (?, ?) ON CONFLICT (job) DO UPDATE SET handled_at = excluded.handled_at').run(job, at);
  }

  async addToken(token: { hash: string; readOnly: boolean; createdAt: string; note: string }): Promise<number> {
    return Number(this.#db.prepare('INSERT INTO tokens (hash, read_only, created_at, note) VALUES (?, ?, ?, ?)').run(token.hash, token.readOnly ? 1 : 0, token.createdAt, token.note).lastInsertRowid);
  }

  async tokenByHash(hash: string): Promise<TokenRecord | undefined> {
    const r = this.#all('SELECT * FROM tokens WHERE hash = ?', hash)[0];
    return r ? tokenOf(r) : undefined;
  }

  async tokens(): Promise<TokenRecord[]> {
    return this.#all('SELECT * FROM tokens ORDER BY id').map(tokenOf);
  }

  async deleteToken(id: number): Promise<boolean> {
    return Number(this.#db.prepare('DELETE FROM tokens WHERE id = ?').run(id).changes) > 0;
  }

  async close(): Promise<void> {
    if (this.#db.isOpen) this.#db.close();
  }
}
