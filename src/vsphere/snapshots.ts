// Snapshots: create (optionally quiesced), remove with consolidation, and find leftovers of
// ours from crashed runs. Ours are recognised by BOTH the name prefix and the marker in the
// description, so an operator's snapshot that happens to start with "vcbt-" is never removed.
import { asMoRef, child, children, optionalText, parseBoolean, requireChild, requireText, type MoRef } from './decode.ts';
import { VsphereError } from './errors.ts';
import { retrieveOne } from './property-collector.ts';
import { runTask, type TaskProgress } from './tasks.ts';
import type { VmIdentity } from './inventory.ts';
import type { VsphereSession } from './session.ts';
import type { XmlElement } from './xml.ts';

export const SNAPSHOT_NAME_PREFIX = 'vcbt-';
export const SNAPSHOT_MARKER = '[vcbt-owned]';

export interface SnapshotInfo {
  moref: MoRef;
  name: string;
  description: string;
  createTime: string;
  quiesced: boolean;
}

export interface CreateSnapshotOptions {
  /** Defaults to `vcbt-<purpose>-<ISO time>`. */
  name?: string;
  purpose?: string;
  quiesce?: boolean;
  onProgress?: (progress: TaskProgress) => void;
}

function vmTarget(vm: VmIdentity) {
  return { vm: { name: vm.name, moref: vm.moref.value } };
}

/**
 * Creates a snapshot without memory. No AbortSignal on purpose: once asked for, the
 * snapshot must be known to the caller so it can be removed; waiting is short.
 */
export async function createSnapshot(session: VsphereSession, vm: VmIdentity, options: CreateSnapshotOptions = {}): Promise<MoRef> {
  const purpose = options.purpose ?? 'backup';
  const name = options.name ?? `${SNAPSHOT_NAME_PREFIX}${purpose}-${new Date().toISOString()}`;
  const description = `${SNAPSHOT_MARKER} ${purpose} snapshot created by vcbt; safe to delete when no vcbt job runs`;
  const result = await runTask(
    session,
    'CreateSnapshot_Task',
    vm.moref,
    { name, description, memory: false, quiesce: options.quiesce ?? false },
    { target: vmTarget(vm), onProgress: options.onProgress },
  );
  if (!result) throw new VsphereError('VSPHERE_BAD_RESPONSE', 'CreateSnapshot_Task succeeded without a snapshot reference', session.target(vmTarget(vm)));
  return asMoRef(result);
}

/**
 * Removes one snapshot (children kept, disks consolidated), then runs ConsolidateVMDisks_Task
 * if the server still reports `runtime.consolidationNeeded`. Returns whether that was needed.
 */
export async function removeSnapshot(session: VsphereSession, vm: VmIdentity, snapshot: MoRef, options: { onProgress?: (p: TaskProgress) => void } = {}): Promise<{ consolidated: boolean }> {
  const target = vmTarget(vm);
  await runTask(session, 'RemoveSnapshot_Task', snapshot, { removeChildren: false, consolidate: true }, { target, onProgress: options.onProgress });
  const props = await retrieveOne(session, vm.moref, ['runtime.consolidationNeeded'], { target, idempotent: true });
  const needed = props.get('runtime.consolidationNeeded');
  if (!needed || !parseBoolean(needed.text, 'runtime.consolidationNeeded')) return { consolidated: false };
  await runTask(session, 'ConsolidateVMDisks_Task', vm.moref, {}, { target, onProgress: options.onProgress });
  return { consolidated: true };
}

/** Every snapshot of the VM, depth first (parents before children). */
export async function listSnapshots(session: VsphereSession, vm: VmIdentity): Promise<SnapshotInfo[]> {
  const props = await retrieveOne(session, vm.moref, ['snapshot'], { target: vmTarget(vm), idempotent: true });
  const info = props.get('snapshot');
  const found: SnapshotInfo[] = [];
  const walk = (trees: XmlElement[]) => {
    for (const tree of trees) {
      found.push({
        moref: asMoRef(requireChild(tree, 'snapshot')),
        name: requireText(tree, 'name'),
        description: optionalText(tree, 'description') ?? '',
        createTime: optionalText(tree, 'createTime') ?? '',
        quiesced: child(tree, 'quiesced') ? parseBoolean(requireText(tree, 'quiesced'), 'quiesced') : false,
      });
      walk(children(tree, 'childSnapshotList'));
    }
  };
  if (info) walk(children(info, 'rootSnapshotList'));
  return found;
}

export function isOurs(snapshot: Pick<SnapshotInfo, 'name' | 'description'>): boolean {
  return snapshot.name.startsWith(SNAPSHOT_NAME_PREFIX) && snapshot.description.includes(SNAPSHOT_MARKER);
}

/** Snapshots a crashed vcbt run left behind (to remove before a new backup). */
export async function findLeftoverSnapshots(session: VsphereSession, vm: VmIdentity): Promise<SnapshotInfo[]> {
  return (await listSnapshots(session, vm)).filter(isOurs);
}

/**
 * Runs `work` with a fresh snapshot and always removes it afterwards: on success, on error
 * and when `signal` aborts (the work sees the signal; removal does not).
 */
export async function withSnapshot<T>(session: VsphereSession, vm: VmIdentity, options: CreateSnapshotOptions, work: (snapshot: MoRef) => Promise<T>): Promise<T> {
  const snapshot = await createSnapshot(session, vm, options);
  let result: T;
  try {
    result = await work(snapshot);
  } catch (error) {
    try {
      await removeSnapshot(session, vm, snapshot);
    } catch (removeError) {
      // Both matter: the leftover snapshot must be visible, the first error is kept as cause.
      const first = error instanceof Error ? error.message : String(error);
      const second = removeError instanceof Error ? removeError.message : String(removeError);
      throw new VsphereError('SNAPSHOT_REMOVE_FAILED', `removing snapshot ${snapshot.value} failed (${second}) after: ${first}`, session.target(vmTarget(vm)), {
        snapshot: snapshot.value,
        firstErrorCode: (error as { code?: unknown }).code,
      }, { cause: error });
    }
    throw error;
  }
  await removeSnapshot(session, vm, snapshot);
  return result;
}
