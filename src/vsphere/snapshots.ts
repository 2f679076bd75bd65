// Snapshots: create (optionally quiesced), rename (the owner record's lease), remove with
// consolidation, list. Ours are recognised by BOTH the name prefix and the marker in the
// description, so an operator's snapshot that happens to start with "vcbt-" is never touched.
//
// Owner record: the description of every snapshot vcbt takes carries
// `owner={"host":..,"pid":..,"run":..,"started":ISO,"lease":ISO}` after the marker: which run
// on which host owns it and until when (server time) its lease holds. The rule that decides
// whether an owner is still alive lives with the jobs (src/jobs/snapshot-owner.ts); this file
// only writes and reads the record.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { asMoRef, child, children, optionalText, parseBoolean, requireChild, requireText, type MoRef } from './decode.ts';
import { VsphereError } from './errors.ts';
import { retrieveOne } from './property-collector.ts';
import { runTask, type TaskProgress } from './tasks.ts';
import type { VmIdentity } from './inventory.ts';
import type { VsphereSession } from './session.ts';
import type { XmlElement } from './xml.ts';

export const SNAPSHOT_NAME_PREFIX = 'vcbt-';
/** Lease of a short-lived snapshot taken without an explicit owner (e.g. a CBT stun cycle). */
const defaultLeaseMs = 10 * 60_000;
export const SNAPSHOT_MARKER = '[vcbt-owned]';

export interface SnapshotInfo {
  moref: MoRef;
  name: string;
  description: string;
  createTime: string;
  quiesced: boolean;
}

/** Who owns a vcbt snapshot: host name, process id, run id, start time and lease end (server time, ISO). */
export interface SnapshotOwner {
  host: string;
  pid: number;
  run: string;
  started: string;
  lease: string;
}

export interface CreateSnapshotOptions {
  /** Defaults to `vcbt-<purpose>-<ISO time>`. */
  name?: string;
  purpose?: string;
  /** The owner record written into the description (none: a marker-only description). */
  owner?: SnapshotOwner;
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
  // Every vcbt snapshot names its owner, so a concurrent run never takes it for a leftover.
  const owner = options.owner ?? { host: hostname(), pid: process.pid, run: randomUUID(), started: new Date().toISOString(), lease: new Date((await serverTime(session)).getTime() + defaultLeaseMs).toISOString() };
  const description = snapshotDescription(purpose, owner);
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

/** The description of a vcbt snapshot: marker, owner record, and a sentence for the operator. */
export function snapshotDescription(purpose: string, owner: SnapshotOwner | undefined): string {
  const record = owner ? ` owner=${JSON.stringify(owner)}` : '';
  return `${SNAPSHOT_MARKER}${record} ${purpose} snapshot created by vcbt; removed when its run ends (a run that died leaves it to the next run)`;
}

/** The owner record of a vcbt snapshot's description; undefined when absent or malformed. */
export function parseSnapshotOwner(description: string): SnapshotOwner | undefined {
  const found = /owner=(\{[^}]*\})/.exec(description);
  if (!found) return undefined;
  try {
    const value = JSON.parse(found[1]) as Partial<SnapshotOwner>;
    if (typeof value.host !== 'string' || !Number.isSafeInteger(value.pid) || typeof value.run !== 'string' || typeof value.started !== 'string' || typeof value.lease !== 'string') return undefined;
    if (Number.isNaN(Date.parse(value.lease)) || Number.isNaN(Date.parse(value.started))) return undefined;
    return value as SnapshotOwner;
  } catch {
    return undefined;
  }
}

/** Rewrites a snapshot's name and description (RenameSnapshot): how an owner renews its lease. */
export async function renameSnapshot(session: VsphereSession, vm: VmIdentity, snapshot: MoRef, change: { name: string; description: string }, signal?: AbortSignal): Promise<void> {
  await session.call('RenameSnapshot', snapshot, { name: change.name, description: change.description }, { target: vmTarget(vm), idempotent: true, signal });
}

/** The server's clock (ServiceInstance.CurrentTime): leases are written and judged in it, so hosts' clocks never matter. */
export async function serverTime(session: VsphereSession, signal?: AbortSignal): Promise<Date> {
  const response = await session.call('CurrentTime', { type: 'ServiceInstance', value: 'ServiceInstance' }, {}, { idempotent: true, signal });
  const text = requireText(response, 'returnval');
  const time = new Date(text);
  if (Number.isNaN(time.getTime())) throw new VsphereError('VSPHERE_BAD_RESPONSE', `CurrentTime returned "${text}", not a time`, session.target());
  return time;
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
