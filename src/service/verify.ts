// Scheduled verification: a job's `verify` (docs/service.md) reads back the restore points the
// job made, as `vcbt verify [--read-data]` does for the points it picks, and records what it
// found in the catalog. The daemon runs it on the job's verify schedule; `vcbt job verify`
// runs it now.
//
// Vocabulary
// - the job's points: the restore points the catalog says this job's tasks made that are
//   still in the repository (pruned ones are gone).
// - sample: `latest` (the newest point of each VM; the default), `all`, or N points picked at
//   random among the job's points.
// - result: `success` when nothing is damaged (also when there is nothing to verify yet),
//   `failed` when a problem was found (the damaged points are listed) or the verification
//   could not run (its error).
import { hostname } from 'node:os';
import { randomInt } from 'node:crypto';
import { VcbtError, isErrorCode } from '../errors.ts';
import { verifyRepository } from '../jobs/repository-admin.ts';
import type { Catalog, RunTrigger, VerificationRecord } from './catalog/catalog.ts';
import type { JobConfig, ServiceConfig, VerifyConfig } from './config.ts';
import { openConfiguredRepository } from './run.ts';

/** The points to read: from the job's points (oldest first) present in the repository. */
export function samplePoints(points: ReadonlyArray<{ pointId: string; moref: string }>, present: ReadonlySet<string>, sample: VerifyConfig['points'], pick: (n: number) => number = randomInt): string[] {
  const there = points.filter((p) => present.has(p.pointId));
  const unique = [...new Map(there.map((p) => [p.pointId, p])).values()];
  if (sample === 'all') return unique.map((p) => p.pointId);
  if (sample === 'latest') return [...new Map(unique.map((p) => [p.moref, p.pointId])).values()];
  const pool = unique.map((p) => p.pointId);
  const chosen: string[] = [];
  while (chosen.length < sample.random && pool.length > 0) chosen.push(...pool.splice(pick(pool.length), 1));
  return chosen;
}

export interface VerificationOptions {
  config: ServiceConfig;
  job: JobConfig;
  catalog: Catalog;
  env: NodeJS.ProcessEnv;
  trigger: RunTrigger;
  log?: (line: string) => void;
  /** Overrides the job's `verify` (a manual verification of a job without one). */
  verify?: VerifyConfig;
}

/** Verifies the job's points per its `verify` settings; records and answers the verification. */
export async function runVerification(options: VerificationOptions): Promise<VerificationRecord> {
  const { config, job, catalog } = options;
  const settings = options.verify ?? job.verify;
  if (job.type !== 'backup' || job.repository === undefined || !settings) throw new VcbtError('CONFIG_INVALID', `job ${job.name} has no verify settings (a backup job's verify key)`, { job: job.name });
  const log = options.log ?? (() => {});
  const startedAt = new Date().toISOString();
  const id = await catalog.startVerification({ job: job.name, repository: job.repository, trigger: options.trigger, startedAt, readData: settings.readData, host: hostname(), pid: process.pid });
  const end = { status: 'success' as VerificationRecord['status'], endedAt: '', pointsChecked: 0, chunksChecked: 0, corruptions: 0, damagedPoints: [] as string[], error: null as VerificationRecord['error'] };
  try {
    const repository = await openConfiguredRepository(config, job.repository, options.env);
    try {
      const present = new Set(await repository.listPointIds());
      const pointIds = samplePoints(await catalog.jobPoints(job.name), present, settings.points);
      if (pointIds.length === 0) {
        log(`job ${job.name}: verification ${id}: no restore point of this job in repository ${job.repository} yet`);
      } else {
        log(`job ${job.name}: verification ${id}: ${pointIds.length} restore points${settings.readData ? ', reading every chunk' : ''}`);
        const report = await verifyRepository(repository, { pointIds, readData: settings.readData });
        end.pointsChecked = report.pointsChecked;
        end.chunksChecked = report.chunksChecked;
        end.corruptions = report.corruptions.length;
        end.damagedPoints = report.points.filter((p) => p.status !== 'clean').map((p) => p.pointId);
        if (report.corruptions.length > 0) {
          end.status = 'failed';
          const first = report.corruptions[0]!;
          end.error = { code: isErrorCode(first.code) ? first.code : 'INTERNAL', message: `${report.corruptions.length} problem(s); first: ${first.object} ${first.name}: ${first.message}; damaged restore points: ${end.damagedPoints.join(', ')}` };
        }
      }
    } finally {
      await repository.close();
    }
  } catch (error) {
    end.status = 'failed';
    end.error = error instanceof VcbtError ? { code: error.code, message: error.message } : { code: 'INTERNAL', message: error instanceof Error ? error.message : String(error) };
  }
  end.endedAt = new Date().toISOString();
  await catalog.endVerification(id, end);
  log(`job ${job.name}: verification ${id} ended ${end.status}${end.error ? `: ${end.error.code}: ${end.error.message}` : ` (${end.pointsChecked} points, ${end.chunksChecked} chunks)`}`);
  return { id, job: job.name, repository: job.repository, trigger: options.trigger, startedAt, readData: settings.readData, host: hostname(), pid: process.pid, ...end };
}
