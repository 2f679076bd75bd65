// Job status: per job of the configuration, its latest runs from the catalog with the tasks
// of the newest one, and when it last protected its VMs (`lastGoodAt`: the end of its newest
// `success` or `warning` run). What `vcbt job status` prints and the API answers.
import type { ServiceConfig } from '../config.ts';
import type { Catalog, RunRecord, TaskRecord, VerificationRecord } from './catalog.ts';

export interface JobStatus {
  name: string;
  type: 'backup' | 'replicate';
  /** Newest first, at most `runs` of them. */
  runs: RunRecord[];
  /** The tasks (VMs) of the newest run; empty without one. */
  lastRunTasks: TaskRecord[];
  /** End of the newest run that ended success or warning, null when none is in the history. */
  lastGoodAt: string | null;
  /** The newest verification of its restore points (verify schedule or `vcbt job verify`), null when none. */
  lastVerification: VerificationRecord | null;
}

const GOOD_LOOKBACK_RUNS = 200;

export async function jobStatus(config: ServiceConfig, catalog: Catalog, options: { runs: number; job?: string }): Promise<JobStatus[]> {
  const out: JobStatus[] = [];
  for (const job of config.jobs.values()) {
    if (options.job !== undefined && job.name !== options.job) continue;
    const runs = await catalog.runs({ job: job.name, limit: options.runs });
    const newest = runs[0];
    const history = runs.length < options.runs ? runs : await catalog.runs({ job: job.name, limit: GOOD_LOOKBACK_RUNS });
    const good = history.find((r) => r.status === 'success' || r.status === 'warning');
    out.push({ name: job.name, type: job.type, runs, lastRunTasks: newest ? await catalog.tasks(newest.id) : [], lastGoodAt: good?.endedAt ?? null, lastVerification: (await catalog.verifications({ job: job.name, limit: 1 }))[0] ?? null });
  }
  return out;
}
