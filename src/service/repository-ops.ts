// The API's work on repositories, each through the CLI's job code: verify (all points, the
// ones named, or a random sample; structure only or --read-data), prune (a dry run answers
// what would go; the real one is an operation run), restore a disk to a file under
// `daemon.restoreDirectory`, the repository's figures and their history.
//
// Vocabulary
// - restore directory: `daemon.restoreDirectory`; the API restores only to files inside it.
//   A path is taken relative to it; one that leaves it (`..`, absolute elsewhere, a symbolic
//   link on the way) is refused with RESTORE_PATH_REFUSED; an existing file only with
//   `overwrite` (else RESTORE_TARGET_EXISTS). Files are created 0600 (they hold VM data);
//   directories made on the way 0700.
// - size sample: the repository's figures recorded in the catalog after each run and
//   operation that changes it (repositoryStats), the history the console charts.
import { randomInt } from 'node:crypto';
import { chmod, lstat, mkdir, realpath } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { VcbtError } from '../errors.ts';
import { prune, verifyRepository } from '../jobs/repository-admin.ts';
import { repositoryStats, type RepositoryStats } from '../jobs/repository-stats.ts';
import { restore } from '../jobs/restore.ts';
import type { RetentionPolicy } from '../repository/retention.ts';
import type { Catalog } from './catalog/catalog.ts';
import type { ServiceConfig } from './config.ts';
import type { Operation } from './operations.ts';
import { openConfiguredRepository } from './run.ts';

/** Codes: RESTORE_PATH_REFUSED (context `path`), RESTORE_TARGET_EXISTS (context `path`), REPO_CORRUPT (verify found damage). */
export class RepositoryOpError extends VcbtError {}

async function withRepository<T>(config: ServiceConfig, env: NodeJS.ProcessEnv, name: string, work: (repo: Awaited<ReturnType<typeof openConfiguredRepository>>) => Promise<T>): Promise<T> {
  const repo = await openConfiguredRepository(config, name, env);
  try {
    return await work(repo);
  } finally {
    await repo.close();
  }
}

export interface VerifyRequest {
  pointIds?: string[];
  /** Verify this many restore points picked at random (instead of all). */
  sample?: number;
  readData: boolean;
}

export function verifyOperation(config: ServiceConfig, env: NodeJS.ProcessEnv, name: string, request: VerifyRequest): Operation {
  return {
    kind: 'verify',
    target: name,
    subject: name,
    work: (ctx) =>
      withRepository(config, env, name, async (repo) => {
        let pointIds = request.pointIds;
        if (request.sample !== undefined) {
          const all = await repo.listPointIds();
          const picked: string[] = [];
          while (picked.length < Math.min(request.sample, all.length)) picked.push(...all.splice(randomInt(all.length), 1));
          pointIds = picked.sort();
          ctx.log(`sample: ${pointIds.length} restore points (${pointIds.join(', ') || 'none'})`);
        }
        if (pointIds && pointIds.length === 0) return {};
        const report = await verifyRepository(repo, { pointIds, readData: request.readData, onProgress: ({ chunks, of }) => ctx.progress(chunks, of) });
        ctx.log(`verify${report.readData ? ' --read-data' : ''}: ${report.pointsChecked} restore points, ${report.chunksChecked} chunks checked, ${report.corruptions.length} problems`);
        for (const c of report.corruptions) ctx.log(`CORRUPT ${c.object} ${c.name}: ${c.code}: ${c.message} (affects ${c.affectedPoints.join(', ') || 'no point'})`);
        const damaged = report.points.filter((p) => p.status !== 'clean');
        if (report.corruptions.length > 0 || damaged.length > 0) {
          throw new RepositoryOpError('REPO_CORRUPT', `verify found ${report.corruptions.length} problems; damaged restore points: ${damaged.map((p) => p.pointId).join(', ') || 'none'}`, { repository: name, points: damaged.map((p) => p.pointId) });
        }
        return { bytesRead: report.bytesDecoded };
      }),
  };
}

export interface PrunePreview {
  keep: Array<{ id: string; createdAt: string; vmId: string; reasons: string[] }>;
  remove: Array<{ id: string; createdAt: string; vmId: string }>;
  damaged: string[];
}

export async function pruneDryRun(config: ServiceConfig, env: NodeJS.ProcessEnv, name: string, policy: RetentionPolicy): Promise<PrunePreview> {
  return withRepository(config, env, name, async (repo) => {
    const report = await prune(repo, policy, { dryRun: true });
    return {
      keep: report.keep.map((k) => ({ id: k.id, createdAt: k.createdAt, vmId: k.vmId, reasons: [...k.reasons] })),
      remove: report.remove.map((r) => ({ id: r.id, createdAt: r.createdAt, vmId: r.vmId })),
      damaged: report.damaged,
    };
  });
}

export function pruneOperation(config: ServiceConfig, env: NodeJS.ProcessEnv, name: string, policy: RetentionPolicy): Operation {
  return {
    kind: 'prune',
    target: name,
    subject: name,
    work: (ctx) =>
      withRepository(config, env, name, async (repo) => {
        const report = await prune(repo, policy);
        ctx.log(`prune: ${report.remove.length} restore points removed (${report.remove.map((r) => r.id).join(', ') || 'none'}), ${report.keep.length} kept; ${report.gc.chunksDeleted} chunks (${report.gc.bytesDeleted} bytes) deleted`);
        return {};
      }),
  };
}

/** The file a restore may write: inside the restore directory, not a symbolic link, new unless `overwrite`. */
export async function restoreTarget(config: ServiceConfig, path: string, overwrite: boolean): Promise<string> {
  const root = config.daemon.restoreDirectory;
  if (root === undefined) throw new RepositoryOpError('RESTORE_PATH_REFUSED', 'restoring to a file through the API needs daemon.restoreDirectory in the configuration', { path });
  const target = resolve(root, path);
  const inside = (base: string, p: string) => {
    const rel = relative(base, p);
    return rel !== '' && !rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel);
  };
  if (!inside(root, target)) throw new RepositoryOpError('RESTORE_PATH_REFUSED', `${path} is not inside the restore directory (daemon.restoreDirectory); give a path relative to it`, { path });
  await mkdir(root, { recursive: true, mode: 0o700 });
  await mkdir(dirname(target), { recursive: true, mode: 0o700 });
  const realRoot = await realpath(root);
  const realParent = await realpath(dirname(target));
  if (realParent !== realRoot && !inside(realRoot, realParent)) throw new RepositoryOpError('RESTORE_PATH_REFUSED', `${path} leads out of the restore directory through a symbolic link`, { path });
  const existing = await lstat(target).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (existing?.isSymbolicLink()) throw new RepositoryOpError('RESTORE_PATH_REFUSED', `${path} is a symbolic link; the API restores to files only`, { path });
  if (existing && !existing.isFile()) throw new RepositoryOpError('RESTORE_PATH_REFUSED', `${path} exists and is not a file`, { path });
  if (existing && !overwrite) throw new RepositoryOpError('RESTORE_TARGET_EXISTS', `${path} exists in the restore directory; confirm with overwrite to write over it`, { path });
  if (existing) await chmod(target, 0o600);
  return resolve(realParent, target.slice(dirname(target).length + 1));
}

export function restoreOperation(config: ServiceConfig, env: NodeJS.ProcessEnv, request: { repository: string; pointId: string; deviceKey: number; target: string; shownPath: string }): Operation {
  return {
    kind: 'restore',
    target: request.repository,
    subject: `${request.pointId} disk ${request.deviceKey}`,
    work: (ctx) =>
      withRepository(config, env, request.repository, async (repo) => {
        ctx.log(`restoring restore point ${request.pointId} disk ${request.deviceKey} to ${request.shownPath} in the restore directory`);
        const done = await restore({ repository: repo, pointId: request.pointId, deviceKey: request.deviceKey, target: request.target, signal: ctx.signal, onProgress: (d, t) => ctx.progress(d, t, request.deviceKey) });
        ctx.log(`restored ${done.capacityBytes} bytes (${done.bytesWritten} written, ${done.bytesZero} zero) in ${done.elapsedMs} ms`);
        return { pointId: request.pointId, bytesRead: done.capacityBytes, bytesStored: done.bytesWritten };
      }),
  };
}

/** The repository's figures now. */
export function repositoryFigures(config: ServiceConfig, env: NodeJS.ProcessEnv, name: string): Promise<RepositoryStats> {
  return withRepository(config, env, name, (repo) => repositoryStats(repo));
}

/** Records the repository's size in the catalog (after a run or operation that changed it); failures only logged. */
export async function recordRepositorySize(config: ServiceConfig, catalog: Catalog, env: NodeJS.ProcessEnv, name: string, log: (line: string) => void): Promise<void> {
  try {
    const s = await repositoryFigures(config, env, name);
    await catalog.addRepositorySize({ repository: name, at: new Date().toISOString(), storedBytes: s.storedBytes, logicalBytes: s.logicalBytes, chunks: s.chunks, points: s.points });
  } catch (error) {
    log(`repository ${name}: size not recorded: ${error instanceof VcbtError ? `${error.code}: ` : ''}${error instanceof Error ? error.message : String(error)}`);
  }
}
