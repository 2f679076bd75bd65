// Restore points as the backup jobs see them: which VM a point belongs to, listing them with
// their damage (`vcbt points`), and resolving what the operator typed (`--point ID|latest`,
// `--vm NAME|moref|uuid`) to a point id.
//
// Damaged point: its manifest cannot be read or is gone (its VM is then unknown), or the last
// `vcbt verify` found data of it lost (its check record). `latest` never skips one silently:
// when the newest candidate is damaged it fails with RESTORE_POINT_DAMAGED naming it, unless
// the caller asks for the newest sound point (`--skip-damaged`), which is then said.
//
// A backup stores the VM as `vm: { id, name, moref, instanceUuid, server }` where `id` is the
// instance UUID (stable across renames and vCenter re-registrations), or `server/moref` for a
// VM without one. Prune and "latest" group restore points by that id.
import { VcbtError } from '../errors.ts';
import type { Repository, RestorePointSummary } from '../repository/repository.ts';
import type { RestorePointManifest } from '../repository/manifest.ts';
import { storedVmCapture, summarizeCapture, type VmHardwareSummary } from './vm-capture.ts';
import { diskIsDamaged, readCheckRecord, type PointCheck } from '../repository/point-records.ts';

export class RestorePointError extends VcbtError {}

export const LATEST_POINT = 'latest';

/** The VM fields a backup writes into every manifest. */
export interface BackedUpVm {
  id: string;
  name: string;
  moref: string;
  instanceUuid: string | null;
  server: string;
}

export function backupVmId(server: string, vm: { moref: string; instanceUuid: string | null }): string {
  return vm.instanceUuid ?? `${server}/${vm.moref}`;
}

/** The VM of a manifest written by `vcbt backup` (other writers may lack moref/server). */
export function backedUpVm(manifest: Pick<RestorePointManifest, 'vm'>): BackedUpVm {
  const vm = manifest.vm;
  const text = (value: unknown): string | null => (typeof value === 'string' ? value : null);
  return { id: vm.id, name: vm.name, moref: text(vm.moref) ?? '', instanceUuid: text(vm.instanceUuid), server: text(vm.server) ?? '' };
}

/**
 * Whether `--vm TEXT` names this VM, without asking vSphere: its name, instance UUID, moref or
 * repository id; `name:`, `uuid:`, `moref:` prefixes as in vSphere selectors.
 */
export function vmMatches(vm: RestorePointSummary['vm'], text: string): boolean {
  const prefixed = /^(moref|uuid|name):(.+)$/.exec(text);
  const fields = { name: vm.name, uuid: vm.instanceUuid, moref: vm.moref };
  if (prefixed) return fields[prefixed[1] as keyof typeof fields] === prefixed[2];
  return text === vm.id || text === vm.name || text === vm.instanceUuid || text === vm.moref;
}

/** A restore point as `vcbt points` lists it. */
export interface ListedPoint {
  id: string;
  createdAt: string;
  /** Null when the manifest cannot be read (the VM is unknown). */
  vm: RestorePointSummary['vm'] | null;
  snapshot: unknown;
  disks: RestorePointManifest['disks'];
  /** The manifest cannot be used, or the last verify found data lost. */
  damaged: boolean;
  /** Why the manifest cannot be used (null when it reads). */
  manifestProblem: { code: string; message: string } | null;
  /** The last `vcbt verify` of this point (its check record), null when never verified. */
  lastVerify: PointCheck | null;
  /** The VM's hardware as stored with the point; null for points that predate it, or an unreadable manifest. */
  hardware: VmHardwareSummary | null;
}

/** Every restore point, oldest first, damaged ones included (with `vm` filtering: those of the VM, and every damaged one whose VM is unknown). */
export async function listPoints(repository: Repository, vm?: string): Promise<ListedPoint[]> {
  const listed: ListedPoint[] = [];
  for (const point of await repository.listPoints()) {
    if (vm !== undefined && point.summary && !vmMatches(point.summary.vm, vm)) continue;
    const lastVerify = (await readCheckRecord(repository.storage, point.id)) ?? null;
    const manifest = point.summary ? await repository.readManifest(point.id) : undefined;
    listed.push({
      id: point.id,
      createdAt: point.createdAt,
      vm: point.summary?.vm ?? null,
      snapshot: manifest?.snapshot ?? null,
      disks: manifest?.disks ?? [],
      damaged: point.damage !== undefined || (lastVerify !== null && lastVerify.status !== 'clean'),
      manifestProblem: point.damage ?? null,
      lastVerify,
      hardware: (() => {
        const capture = manifest ? storedVmCapture(manifest) : null;
        return capture ? summarizeCapture(capture) : null;
      })(),
    });
  }
  return listed;
}

export interface ResolveOptions {
  /** The disk wanted: a point whose verify found only other disks damaged still serves it. */
  deviceKey?: number;
  /** `latest`: take the newest sound point instead of failing on a damaged newer one. */
  skipDamaged?: boolean;
  /** Told about each damaged point skipped. */
  onSkipped?: (pointId: string, why: string) => void;
}

/**
 * `latest` (the newest point of the VM given) or an exact id; fails with the choices. A
 * damaged point newer than the VM's newest sound one - the VM's own, or one whose manifest
 * cannot be read (it may be this VM's) - is RESTORE_POINT_DAMAGED unless `skipDamaged`.
 */
export async function resolvePointId(repository: Repository, point: string, vm?: string, options: ResolveOptions = {}): Promise<string> {
  if (point !== LATEST_POINT) return point;
  if (vm === undefined) throw new RestorePointError('RESTORE_POINT_AMBIGUOUS', `--point ${LATEST_POINT} needs --vm to say whose latest restore point`, {});
  const all = await repository.listPoints();
  const ofVm = all.filter((p) => p.summary && vmMatches(p.summary.vm, vm));
  if (ofVm.length === 0) throw new RestorePointError('REPO_POINT_NOT_FOUND', `no restore point of VM "${vm}" in ${repository.path}`, { vm });
  const ids = new Set(ofVm.map((p) => p.summary?.vm.id));
  if (ids.size > 1) {
    throw new RestorePointError('RESTORE_POINT_AMBIGUOUS', `"${vm}" matches ${ids.size} different VMs in ${repository.path} (ids ${[...ids].join(', ')}); give --vm uuid:... or --point ID`, { vm });
  }
  const candidates = all.filter((p) => !p.summary || vmMatches(p.summary.vm, vm));
  for (let i = candidates.length - 1; i >= 0; i--) {
    const candidate = candidates[i];
    let why: string | undefined;
    if (candidate.damage) why = `its manifest cannot be read (${candidate.damage.code}: ${candidate.damage.message}), so it may be a restore point of "${vm}"`;
    else {
      const record = await readCheckRecord(repository.storage, candidate.id);
      const damaged = options.deviceKey === undefined ? record !== undefined && record.status !== 'clean' : diskIsDamaged(record, options.deviceKey);
      if (damaged && record) why = `vcbt verify marked it ${record.status} at ${record.checkedAt}`;
    }
    if (why === undefined) return candidate.id;
    if (!options.skipDamaged) {
      throw new RestorePointError('RESTORE_POINT_DAMAGED', `the newest restore point for --point ${LATEST_POINT} --vm "${vm}" is ${candidate.id}, which is damaged: ${why}; give --point ID, or --skip-damaged for the newest sound one`, { vm, pointId: candidate.id });
    }
    options.onSkipped?.(candidate.id, why);
  }
  throw new RestorePointError('REPO_POINT_NOT_FOUND', `no sound restore point of VM "${vm}" in ${repository.path}`, { vm });
}
