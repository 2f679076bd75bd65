// The daemon's work: the scheduler that starts each job at its cron times (croner, in the
// job's time zone), "run a job now" for the API, and the graceful stop. `vcbt serve` wires it
// to the HTTP API (src/api) and the process's signals.
//
// Vocabulary
// - one run per job: a job never runs twice at once in one daemon; a schedule that fires
//   while its job still runs is skipped (logged), "run now" answers JOB_RUNNING. (Two daemons
//   or a cron `job run` are kept apart per VM by the snapshot ownership rule.)
// - missed schedule: a scheduled time that passed while the daemon was down, found from the
//   job's schedule mark in the catalog (catalog.ts). On start such a job runs once, however
//   many times were missed. A job seen for the first time is not considered late.
// - draining: after `stop()` no run starts and running runs start no further VM (their
//   `drain` signal); VMs at work go on until `stopTimeoutMs`, then their runs are aborted:
//   the snapshot jobs remove their snapshots and commit nothing, and the runs are recorded
//   `interrupted` with every VM not done.
import { Cron } from 'croner';
import { VcbtError } from '../errors.ts';
import type { Catalog, RunTrigger } from './catalog/catalog.ts';
import { runRecorded } from './catalog/record.ts';
import type { JobConfig, ServiceConfig } from './config.ts';
import type { JobEvent } from './run.ts';
import { ExportRegistry } from './exports.ts';
import { runOperation, type Operation } from './operations.ts';
import { recordRepositorySize } from './repository-ops.ts';
import { RunEventBus } from './run-events.ts';
import { nextRun } from './schedule.ts';

/** Codes: JOB_RUNNING (context `job`, `runId`), DAEMON_STOPPING. */
export class DaemonError extends VcbtError {}

export interface DaemonOptions {
  config: ServiceConfig;
  catalog: Catalog;
  env: NodeJS.ProcessEnv;
  /** The daemon's own lines and every run's events, for its log (stderr). */
  log: (line: string) => void;
  onEvent?: (job: string, runId: number, event: JobEvent) => void;
}

interface ActiveRun {
  runId: number;
  trigger: RunTrigger;
  done: Promise<void>;
}

export class Daemon {
  readonly #options: DaemonOptions;
  readonly #crons: Cron[] = [];
  readonly #active = new Map<string, ActiveRun>();
  readonly #drain = new AbortController();
  readonly #abort = new AbortController();
  /** The live events of the runs at work (the API's Server-Sent Events). */
  readonly events = new RunEventBus();
  /** NBD exports the API started (stopped with the daemon). */
  readonly exports = new ExportRegistry();

  constructor(options: DaemonOptions) {
    this.#options = options;
  }

  /** Starts the schedules; jobs whose schedule passed while the daemon was down run once now. */
  async start(now: Date = new Date()): Promise<void> {
    const { config, catalog, log } = this.#options;
    const marks = await catalog.scheduleMarks();
    for (const job of config.jobs.values()) {
      if (!job.schedule) continue;
      const mark = marks.get(job.name);
      const missed = mark === undefined ? null : nextRun(job.schedule, new Date(mark));
      await catalog.setScheduleMark(job.name, now.toISOString());
      if (missed && missed.getTime() <= now.getTime()) {
        log(`job ${job.name}: its schedule passed at ${missed.toISOString()} while the daemon was down; running it once now`);
        this.#startRun(job, 'schedule').catch(() => undefined); // the failure is logged by #startRun
      }
      const cron = new Cron(job.schedule.cron, { timezone: job.schedule.timezone }, () => this.#fired(job));
      this.#crons.push(cron);
      log(`job ${job.name}: scheduled "${job.schedule.cron}"${job.schedule.timezone ? ` ${job.schedule.timezone}` : ''}, next ${cron.nextRun()?.toISOString() ?? 'never'}`);
    }
  }

  #fired(job: JobConfig): void {
    if (this.#drain.signal.aborted) return;
    const at = new Date().toISOString();
    this.#options.catalog.setScheduleMark(job.name, at).catch((error: unknown) => this.#options.log(`job ${job.name}: cannot record its schedule mark: ${String(error)}`));
    const running = this.#active.get(job.name);
    if (running) {
      this.#options.log(`job ${job.name}: schedule fired at ${at} while run ${running.runId} still works; skipped`);
      return;
    }
    this.#startRun(job, 'schedule').catch(() => undefined); // the failure is logged by #startRun
  }

  /** The run ids of the jobs (and operations, keyed KIND/TARGET) running now. */
  activeRuns(): Map<string, number> {
    return new Map([...this.#active].map(([job, run]) => [job, run.runId]));
  }

  /**
   * Starts a run of `jobName` now (only `onlyVms` of its selection when given, as `vcbt job
   * run --vm`); answers its run id once recorded. JOB_NOT_FOUND, JOB_RUNNING, DAEMON_STOPPING.
   */
  async runNow(jobName: string, trigger: RunTrigger, onlyVms?: readonly string[]): Promise<number> {
    const job = this.#options.config.jobs.get(jobName);
    if (!job) throw new VcbtError('JOB_NOT_FOUND', `no job "${jobName}" (jobs: ${[...this.#options.config.jobs.keys()].join(', ') || 'none'})`, { job: jobName });
    if (this.#drain.signal.aborted) throw new DaemonError('DAEMON_STOPPING', 'the daemon is stopping and starts no run', { job: jobName });
    const running = this.#active.get(jobName);
    if (running) throw new DaemonError('JOB_RUNNING', `job ${jobName} is running (run ${running.runId}); one run of a job at a time`, { job: jobName, runId: running.runId });
    return this.#startRun(job, trigger, onlyVms);
  }

  /**
   * Starts an operation (verify, prune, restore: operations.ts) recorded as a run; answers its
   * run id. One operation per `key` at a time (JOB_RUNNING); DAEMON_STOPPING.
   */
  async startOperation(op: Operation, key: string = `${op.kind}/${op.target}`): Promise<number> {
    if (this.#drain.signal.aborted) throw new DaemonError('DAEMON_STOPPING', 'the daemon is stopping and starts nothing', { operation: key });
    const running = this.#active.get(key);
    if (running) throw new DaemonError('JOB_RUNNING', `${key} is running (run ${running.runId}); one at a time`, { job: key, runId: running.runId });
    const { catalog, log } = this.#options;
    const active: ActiveRun = { runId: 0, trigger: 'api', done: Promise.resolve() };
    this.#active.set(key, active);
    let resolveId!: (id: number) => void;
    let rejectId!: (error: unknown) => void;
    const id = new Promise<number>((resolve, reject) => {
      resolveId = resolve;
      rejectId = reject;
    });
    active.done = runOperation(catalog, op, {
      signal: this.#abort.signal,
      onRunId: (rid) => {
        active.runId = rid;
        this.events.begin(rid, key);
        log(`${key}: run ${rid} started (api)`);
        resolveId(rid);
      },
      emit: (rid, event) => {
        if (event.type === 'log') log(`${key} run ${rid}: ${event.line}`);
        this.events.publish(rid, event);
      },
    })
      .catch((error: unknown) => {
        rejectId(error);
        log(`${key}: could not be recorded: ${error instanceof Error ? error.message : String(error)}`);
      })
      .finally(async () => {
        if (this.#active.get(key) === active) this.#active.delete(key);
        if (active.runId === 0) return;
        const record = await catalog.run(active.runId).catch(() => undefined);
        log(`${key}: run ${active.runId} ended ${record?.status ?? '?'}`);
        this.events.end(active.runId, { status: record?.status ?? 'interrupted', endedAt: record?.endedAt ?? new Date().toISOString(), error: record?.error ?? null });
        if (op.kind === 'prune') await recordRepositorySize(this.#options.config, catalog, this.#options.env, op.target, log);
      });
    return id;
  }

  #startRun(job: JobConfig, trigger: RunTrigger, onlyVms?: readonly string[]): Promise<number> {
    const { config, catalog, env, log } = this.#options;
    let resolveId!: (id: number) => void;
    let rejectId!: (error: unknown) => void;
    const id = new Promise<number>((resolve, reject) => {
      resolveId = resolve;
      rejectId = reject;
    });
    const active: ActiveRun = { runId: 0, trigger, done: Promise.resolve() };
    this.#active.set(job.name, active);
    let runId = 0;
    active.done = runRecorded({
      catalog,
      trigger,
      config,
      job,
      env,
      onlyVms,
      signal: this.#abort.signal,
      drain: this.#drain.signal,
      onRunId: (rid) => {
        runId = rid;
        active.runId = rid;
        this.events.begin(rid, job.name);
        log(`job ${job.name}: run ${rid} started (${trigger})`);
        resolveId(rid);
      },
      onEvent: (event) => {
        if (event.type === 'log') log(`job ${job.name} run ${runId}: ${event.vm ? `[${event.vm}] ` : ''}${event.line}`);
        this.events.publish(runId, event);
        this.#options.onEvent?.(job.name, runId, event);
      },
    }).then(
      ({ result }) => log(`job ${job.name}: run ${runId} ended ${this.#abort.signal.aborted || this.#drain.signal.aborted ? `(stopping) ` : ''}${result.result}`),
      (error: unknown) => {
        rejectId(error);
        log(`job ${job.name}: run ${runId} failed: ${error instanceof VcbtError ? `${error.code}: ` : ''}${error instanceof Error ? error.message : String(error)}`);
      },
    ).finally(async () => {
      if (this.#active.get(job.name) === active) this.#active.delete(job.name);
      if (runId === 0) return;
      const record = await catalog.run(runId).catch(() => undefined);
      this.events.end(runId, { status: record?.status ?? 'interrupted', endedAt: record?.endedAt ?? new Date().toISOString(), error: record?.error ?? null });
      if (job.type === 'backup' && job.repository !== undefined) await recordRepositorySize(config, catalog, env, job.repository, log);
    });
    return id;
  }

  /**
   * Stops: no schedule fires and no run or VM starts; running VMs get `stopTimeoutMs` to
   * finish, then their runs are aborted. Resolves when every run has ended and been recorded.
   */
  async stop(stopTimeoutMs: number): Promise<void> {
    for (const cron of this.#crons) cron.stop();
    await this.exports.stopAll();
    this.#drain.abort(new VcbtError('INTERRUPTED', 'the daemon is stopping', {}));
    const all = Promise.all([...this.#active.values()].map((a) => a.done));
    if (this.#active.size === 0) return;
    this.#options.log(`stopping: ${this.#active.size} run(s) at work get ${stopTimeoutMs} ms to finish their VMs`);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => (timer = setTimeout(() => resolve('deadline'), stopTimeoutMs)));
    const first = await Promise.race([all.then(() => 'done' as const), deadline]);
    clearTimeout(timer);
    if (first === 'deadline') {
      this.#options.log('stop timeout reached: aborting the VMs still at work (their snapshots are removed, nothing is committed)');
      this.#abort.abort(new VcbtError('INTERRUPTED', `the daemon stopped; the run was aborted after the stop timeout (${stopTimeoutMs} ms)`, { stopTimeoutMs }));
      await all;
    }
  }
}
