// Replica state: what a replication target last received, recorded next to the target so
// the next `vcbt replicate` asks vSphere only for what changed since.
//
// File: `<target>.vcbt-replica.json` for a file target; for an NBD target, a file named by
// the SHA-256 of its URI under `$XDG_STATE_HOME/vcbt/replicas/` (or --state-dir). Written
// atomically (temp file, fsync, rename, directory fsync), mode 0600. Format (version 1):
//
//   { "format": "vcbt-replica", "version": 1, "target": "...", "server": "host:port",
//     "vm": { "name", "moref", "instanceUuid" }, "deviceKey": 2000, "capacityBytes": N,
//     "changeId": "52 54 .../17" | null, "snapshotCreatedAt": ISO | null,
//     "completedAt": ISO | null, "inProgress": { "startedAt": ISO, "mode": "full"|"incremental" } | null }
//
// While a copy runs, `inProgress` is set and `changeId` keeps the last ChangeId the target
// fully matches (null during a full copy). That is always safe to resume from: the areas
// changed since it, at any later snapshot, include everything the interrupted copy touched.
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { VcbtError } from '../errors.ts';
import { isNbdUri } from '../nbd/uri.ts';

export interface ReplicaState {
  format: 'vcbt-replica';
  version: 1;
  target: string;
  server: string;
  vm: { name: string; moref: string; instanceUuid: string | null };
  deviceKey: number;
  capacityBytes: number;
  changeId: string | null;
  snapshotCreatedAt: string | null;
  completedAt: string | null;
  inProgress: { startedAt: string; mode: 'full' | 'incremental' } | null;
}

export class ReplicaStateError extends VcbtError {}

export function replicaStatePath(target: string, env: NodeJS.ProcessEnv, stateDir?: string): string {
  if (!isNbdUri(target)) return stateDir ? join(stateDir, `${basename(target)}.vcbt-replica.json`) : `${target}.vcbt-replica.json`;
  const base = stateDir ?? join(env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'vcbt', 'replicas');
  return join(base, `${createHash('sha256').update(target).digest('hex').slice(0, 32)}.json`);
}

export async function loadReplicaState(path: string): Promise<ReplicaState | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ReplicaStateError('REPLICA_STATE_CORRUPT', `replica state ${path} is not valid JSON; delete it to force a full copy`, { path });
  }
  const state = value as Partial<ReplicaState>;
  if (state.format !== 'vcbt-replica' || state.version !== 1 || typeof state.deviceKey !== 'number' || typeof state.capacityBytes !== 'number' || !state.vm) {
    throw new ReplicaStateError('REPLICA_STATE_CORRUPT', `replica state ${path} is not a vcbt replica state of version 1; delete it to force a full copy`, { path });
  }
  return state as ReplicaState;
}

export async function saveReplicaState(path: string, state: ReplicaState): Promise<void> {
  const directory = dirname(path);
  await mkdir(directory, { recursive: true, mode: 0o700 });
  const temporary = `${path}.tmp-${process.pid}`;
  const handle = await open(temporary, 'w', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(state, null, 2)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, path);
  const dir = await open(directory, 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

export interface DiskNow {
  server: string;
  vm: { moref: string; instanceUuid: string | null };
  deviceKey: number;
  capacityBytes: number;
  changeId: string | undefined;
}

export type CopyPlan = { mode: 'full'; reason: string } | { mode: 'incremental'; sinceChangeId: string };

/**
 * What the last copy of a disk recorded: a replica state, or a disk of a restore point
 * (src/jobs/backup.ts). `inProgress` set means that copy never finished.
 */
export type CopyBaseline = Pick<ReplicaState, 'server' | 'vm' | 'deviceKey' | 'capacityBytes' | 'changeId'> & { inProgress?: ReplicaState['inProgress'] };

/** How the reasons name the baseline: replication's defaults, or the backup's words. */
export interface BaselineWords {
  /** Names the baseline in a sentence, e.g. "the target", "restore point 2026...". */
  baseline: string;
  /** The reason when there is no baseline at all. */
  none: string;
}

const replicaWords: BaselineWords = { baseline: 'the target', none: 'the target has no replica state (first replication)' };

/** Whether a baseline was recorded for the same VM (instance UUID when both know it, else moref on the same server). */
export function isSameVm(state: Pick<CopyBaseline, 'server' | 'vm'>, now: Pick<DiskNow, 'server' | 'vm'>): boolean {
  return now.vm.instanceUuid && state.vm.instanceUuid ? now.vm.instanceUuid === state.vm.instanceUuid : now.vm.moref === state.vm.moref && now.server === state.server;
}

/** The same VM's same disk, with another capacity: CBT data across the resize is untrustworthy. */
export function diskResized(state: CopyBaseline | undefined, now: DiskNow): boolean {
  return state !== undefined && isSameVm(state, now) && state.deviceKey === now.deviceKey && state.capacityBytes !== now.capacityBytes;
}

/** Full or incremental, and why. The ChangeId epoch check happens in the query itself. */
export function planCopy(state: CopyBaseline | undefined, now: DiskNow, forceFull: boolean, words: BaselineWords = replicaWords): CopyPlan {
  if (forceFull) return { mode: 'full', reason: 'a full copy was asked for (--full)' };
  if (!state) return { mode: 'full', reason: words.none };
  if (!isSameVm(state, now)) return { mode: 'full', reason: `${words.baseline} holds a copy of another VM (${state.vm.name}, ${state.vm.moref})` };
  if (state.deviceKey !== now.deviceKey) return { mode: 'full', reason: `${words.baseline} holds disk ${state.deviceKey}, not disk ${now.deviceKey}` };
  if (state.capacityBytes !== now.capacityBytes) {
    return { mode: 'full', reason: `the disk's capacity changed from ${state.capacityBytes} to ${now.capacityBytes} bytes (changed-block data from before a resize cannot be trusted, KB 2090639)` };
  }
  if (!state.changeId) {
    return { mode: 'full', reason: state.inProgress ? 'the previous full copy was interrupted' : `${words.baseline} records no ChangeId` };
  }
  return { mode: 'incremental', sinceChangeId: state.changeId };
}
