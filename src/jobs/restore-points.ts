// Restore points as the backup jobs see them: which VM a point belongs to, and resolving what
// the operator typed (`--point ID|latest`, `--vm NAME|moref|uuid`) to a point id.
//
// A backup stores the VM as `vm: { id, name, moref, instanceUuid, server }` where `id` is the
// instance UUID (stable across renames and vCenter re-registrations), or `server/moref` for a
// VM without one. Prune and "latest" group restore points by that id.
import { VcbtError } from '../errors.ts';
import type { Repository, RestorePointSummary } from '../repository/repository.ts';
import type { RestorePointManifest } from '../repository/manifest.ts';

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

/** `latest` (the newest point of the VM given) or an exact id; fails with the choices. */
export async function resolvePointId(repository: Repository, point: string, vm?: string): Promise<string> {
  if (point !== LATEST_POINT) return point;
  if (vm === undefined) throw new RestorePointError('RESTORE_POINT_AMBIGUOUS', `--point ${LATEST_POINT} needs --vm to say whose latest restore point`, {});
  const ofVm = (await repository.listRestorePoints()).filter((p) => vmMatches(p.vm, vm));
  const newest = ofVm.at(-1);
  if (!newest) throw new RestorePointError('REPO_POINT_NOT_FOUND', `no restore point of VM "${vm}" in ${repository.path}`, { vm });
  const ids = new Set(ofVm.map((p) => p.vm.id));
  if (ids.size > 1) {
    throw new RestorePointError('RESTORE_POINT_AMBIGUOUS', `"${vm}" matches ${ids.size} different VMs in ${repository.path} (ids ${[...ids].join(', ')}); give --vm uuid:... or --point ID`, { vm });
  }
  return newest.id;
}
