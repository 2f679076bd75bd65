// Prometheus metrics of the daemon (prom-client), served at /metrics on the API's listener
// with the same token check as every request (docs/operations.md has the scrape config).
//
// Vocabulary
// - catalog gauges: read from the catalog at each scrape, so they hold for runs of any
//   process (the daemon, `vcbt job run` from cron) and survive a restart: last success time
//   per job and per VM, the last run's status and duration, the VM's last figures.
// - process counters: counted by this daemon from its runs' events since it started
//   (`_total`): VM results, failures by error code, bytes read and stored; a histogram of
//   VM durations. Prometheus handles their reset at a restart.
// - repository size: the bytes of the files under each repository's directory, walked at
//   most every `repositorySizeTtlMs` (a walk of millions of chunk files is not free).
import { opendir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Catalog } from './catalog/catalog.ts';
import { jobStatus } from './catalog/status.ts';
import type { ServiceConfig } from './config.ts';
import type { JobEvent } from './run.ts';

export interface MetricsOptions {
  config: ServiceConfig;
  catalog: Catalog;
  /** The job names running now (the daemon's). */
  activeJobs: () => Iterable<string>;
  repositorySizeTtlMs?: number;
}

const seconds = (iso: string | null): number | undefined => (iso ? Date.parse(iso) / 1000 : undefined);

/** Sum of the sizes of the regular files below `dir` (iteratively, one directory open at a time). */
export async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  const pending = [dir];
  while (pending.length > 0) {
    const current = pending.pop() as string;
    for await (const entry of await opendir(current)) {
      const path = join(current, entry.name);
      if (entry.isDirectory()) pending.push(path);
      else if (entry.isFile()) total += (await stat(path).catch(() => ({ size: 0 }))).size;
    }
  }
  return total;
}

export class ServiceMetrics {
  readonly registry = new Registry();
  readonly #vmResults: Counter<'job' | 'result'>;
  readonly #failures: Counter<'job' | 'code'>;
  readonly #bytesRead: Counter<'job'>;
  readonly #bytesStored: Counter<'job'>;
  readonly #vmDuration: Histogram<'job'>;
  readonly #sizes = new Map<string, { bytes: number; at: number }>();

  constructor(options: MetricsOptions) {
    const { config, catalog } = options;
    const registers = [this.registry];
    const ttlMs = options.repositorySizeTtlMs ?? 5 * 60_000;
    collectDefaultMetrics({ register: this.registry, prefix: 'vcbt_' });
    this.#vmResults = new Counter({ name: 'vcbt_vm_results_total', help: 'VMs processed by this daemon\'s runs, by job and result (success, warning, failed)', labelNames: ['job', 'result'], registers });
    this.#failures = new Counter({ name: 'vcbt_vm_failures_total', help: 'VMs that failed in this daemon\'s runs, by job and error code (docs/errors.md)', labelNames: ['job', 'code'], registers });
    this.#bytesRead = new Counter({ name: 'vcbt_read_bytes_total', help: 'Bytes read from vSphere by this daemon\'s runs', labelNames: ['job'], registers });
    this.#bytesStored = new Counter({ name: 'vcbt_stored_bytes_total', help: 'Bytes stored in repositories (backup) or written to targets (replicate) by this daemon\'s runs', labelNames: ['job'], registers });
    this.#vmDuration = new Histogram({ name: 'vcbt_vm_duration_seconds', help: 'Time one VM took in a run (every attempt), by job', labelNames: ['job'], buckets: [10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800], registers });

    // A scrape collects every metric at once: the catalog gauges share one read of the catalog.
    let reading: Promise<void> | undefined;
    const collect = () => (reading ??= readCatalog().finally(() => (reading = undefined)));
    const jobLastSuccess = new Gauge({ name: 'vcbt_job_last_success_timestamp_seconds', help: 'End of the job\'s newest run that ended success or warning (Unix time)', labelNames: ['job'], registers, collect });
    const jobLastStatus = new Gauge({ name: 'vcbt_job_last_run_status', help: '1 for the status of the job\'s newest run (running, success, warning, failed, interrupted)', labelNames: ['job', 'status'], registers, collect });
    const jobLastDuration = new Gauge({ name: 'vcbt_job_last_run_duration_seconds', help: 'Duration of the job\'s newest ended run', labelNames: ['job'], registers, collect });
    const jobRunning = new Gauge({ name: 'vcbt_job_running', help: '1 while the daemon runs the job', labelNames: ['job'], registers, collect });
    const vmLastSuccess = new Gauge({ name: 'vcbt_vm_last_success_timestamp_seconds', help: 'End of the VM\'s newest task that protected it (success or warning), with the job that ran it', labelNames: ['job', 'vm', 'moref'], registers, collect });
    const vmLastFailed = new Gauge({ name: 'vcbt_vm_last_task_failed', help: '1 when the VM\'s newest task failed or was interrupted, else 0', labelNames: ['job', 'vm', 'moref'], registers, collect });
    const vmLastDuration = new Gauge({ name: 'vcbt_vm_last_task_duration_seconds', help: 'Duration of the VM\'s newest ended task', labelNames: ['job', 'vm', 'moref'], registers, collect });
    const vmLastRead = new Gauge({ name: 'vcbt_vm_last_task_read_bytes', help: 'Bytes the VM\'s newest task read', labelNames: ['job', 'vm', 'moref'], registers, collect });
    const vmLastStored = new Gauge({ name: 'vcbt_vm_last_task_stored_bytes', help: 'Bytes the VM\'s newest task stored', labelNames: ['job', 'vm', 'moref'], registers, collect });
    const repoSize = new Gauge({ name: 'vcbt_repository_size_bytes', help: 'Bytes of the files of the repository directory (refreshed at most every few minutes)', labelNames: ['repository'], registers, collect: () => readSizes() });

    const readCatalog = async () => {
      for (const g of [jobLastSuccess, jobLastStatus, jobLastDuration, jobRunning, vmLastSuccess, vmLastFailed, vmLastDuration, vmLastRead, vmLastStored]) g.reset();
      const running = new Set(options.activeJobs());
      for (const s of await jobStatus(config, catalog, { runs: 1 })) {
        const good = seconds(s.lastGoodAt);
        if (good !== undefined) jobLastSuccess.set({ job: s.name }, good);
        const last = s.runs[0];
        for (const status of ['running', 'success', 'warning', 'failed', 'interrupted']) jobLastStatus.set({ job: s.name, status }, last?.status === status ? 1 : 0);
        if (last?.endedAt) jobLastDuration.set({ job: s.name }, (Date.parse(last.endedAt) - Date.parse(last.startedAt)) / 1000);
        jobRunning.set({ job: s.name }, running.has(s.name) ? 1 : 0);
      }
      for (const t of await catalog.lastGoodTasks()) {
        const at = seconds(t.endedAt);
        if (at !== undefined) vmLastSuccess.set({ job: t.job, vm: t.vm, moref: t.moref }, at);
      }
      for (const t of await catalog.latestTasks()) {
        const labels = { job: t.job, vm: t.vm, moref: t.moref };
        vmLastFailed.set(labels, t.status === 'failed' || t.status === 'interrupted' ? 1 : 0);
        if (t.endedAt) vmLastDuration.set(labels, (Date.parse(t.endedAt) - Date.parse(t.startedAt)) / 1000);
        vmLastRead.set(labels, t.bytesRead);
        vmLastStored.set(labels, t.bytesStored);
      }
    };
    const readSizes = async () => {
      for (const repo of config.repositories.values()) {
        let known = this.#sizes.get(repo.name);
        if (!known || Date.now() - known.at > ttlMs) {
          const bytes = await directoryBytes(repo.path).catch(() => undefined);
          if (bytes !== undefined) this.#sizes.set(repo.name, (known = { bytes, at: Date.now() }));
        }
        if (known) repoSize.set({ repository: repo.name }, known.bytes);
      }
    };
  }

  /** Counts a run's event (the daemon calls this for every event of its runs). */
  observe(job: string, event: JobEvent): void {
    if (event.type !== 'vm-result') return;
    const vm = event.result;
    this.#vmResults.inc({ job, result: vm.result });
    if (vm.result === 'failed' && vm.error) this.#failures.inc({ job, code: vm.error.code });
    this.#bytesRead.inc({ job }, vm.bytesRead);
    this.#bytesStored.inc({ job }, vm.bytesWritten);
    this.#vmDuration.observe({ job }, Math.max(0, (Date.parse(vm.endedAt) - Date.parse(vm.startedAt)) / 1000));
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
