// Prune: apply a retention policy (retention.ts), delete the manifests it drops, remove stale
// locks, then collect garbage (gc.ts) - all under the exclusive lock. A dry run takes a
// shared lock, deletes nothing and reports what would go. A removed point's committed record
// goes right before its manifest, its check record after (point-records.ts). Damaged manifests are never
// removed by prune (verify reports them); they also make GC skip its sweep. A point the policy
// drops whose blobs are still under Object Lock is kept and reported (`locked`, with its date).
import { RepositoryError } from './errors.ts';
import { collectGarbage, type GcReport } from './gc.ts';
import { describeLock, lockRef } from './lock.ts';
import { pointRef } from './manifest.ts';
import { checkRef, committedRef } from './point-records.ts';
import { applyRetention, validatePolicy, type RetentionCandidate, type RetentionDecision, type RetentionPolicy } from './retention.ts';
import type { Repository } from './repository.ts';
import type { BlobRef } from './storage/storage.ts';

export interface PruneReport {
  dryRun: boolean;
  keep: RetentionDecision['keep'];
  remove: RetentionCandidate[];
  /** Points the policy drops that Object Lock still protects: kept, with the date they unlock. */
  locked: Array<RetentionCandidate & { lockedUntil: string }>;
  /** Point ids whose manifest could not be read (kept, reported). */
  damaged: string[];
  /** Stale locks of dead or frozen processes, removed (or, in a dry run, only seen). */
  staleLocks: string[];
  gc: GcReport;
}

/** `vmIds`: apply the policy to these VMs' restore points only (a job's retention); default every VM. */
export async function prune(repo: Repository, policy: RetentionPolicy, options: { dryRun?: boolean; vmIds?: ReadonlySet<string> } = {}): Promise<PruneReport> {
  validatePolicy(policy);
  const dryRun = options.dryRun ?? false;
  const lock = await repo.lock(dryRun ? 'shared' : 'exclusive', dryRun ? 'prune dry run' : 'prune');
  try {
    const candidates: RetentionCandidate[] = [];
    const damaged: string[] = [];
    for (const id of await repo.listPointIds()) {
      try {
        const manifest = await repo.readManifest(id);
        if (!options.vmIds || options.vmIds.has(manifest.vm.id)) candidates.push({ id, createdAt: manifest.createdAt, vmId: manifest.vm.id });
      } catch (error) {
        if (error instanceof RepositoryError && error.code !== 'REPO_POINT_NOT_FOUND') damaged.push(id);
        else throw error;
      }
    }
    const decision = applyRetention(candidates, policy);
    // Object Lock: a point whose blobs are still retained cannot be deleted; never tried.
    const locked: PruneReport['locked'] = [];
    const remove: RetentionCandidate[] = [];
    for (const point of decision.remove) {
      const lockedUntil = async (ref: BlobRef) => (repo.storage.lockedUntilMs ? repo.storage.lockedUntilMs(ref) : undefined);
      const untils = await Promise.all([pointRef(point.id), committedRef(point.id)].map(lockedUntil));
      const untilMs = Math.max(...untils.map((u) => u ?? 0));
      if (untilMs > 0) locked.push({ ...point, lockedUntil: new Date(untilMs).toISOString() });
      else remove.push(point);
    }
    const staleLocks = lock.staleLocks.map(describeLock);
    if (!dryRun) {
      for (const stale of lock.staleLocks) await repo.storage.delete(lockRef(stale.name));
      for (const point of remove) {
        // Committed record first: a crash between leaves a manifest without its record (still
        // listed, pruned again), never a record whose manifest looks lost.
        await repo.storage.delete(committedRef(point.id));
        await repo.storage.delete(pointRef(point.id));
        await repo.storage.delete(checkRef(point.id));
      }
    }
    const gc = await collectGarbage(repo, { dryRun, excludePoints: new Set(remove.map((p) => p.id)) });
    return { dryRun, keep: decision.keep, remove, locked, damaged, staleLocks, gc };
  } finally {
    await lock.release();
  }
}
