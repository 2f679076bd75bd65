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
import type { BaselineWords, CopyBaseline } from './copy-plan.ts';

export interface ReplicaState extends CopyBaseline {
  format: 'vcbt-replica';
  version: 1;
  target: string;
  snapshotCreatedAt: string | null;
  completedAt: string | null;
  inProgress: { startedAt: string; mode: 'full' | 'incremental' } | null;
}

export class ReplicaStateError extends VcbtError {}

/** Errors of the replicate job (REPLICATE_*, VM_POWERED_ON for a powered-on replica VM). */
export class ReplicateError extends VcbtError {}

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
  return parseReplicaState(text, `replica state ${path}`);
}

/** A replica state's JSON text; `where` names it in errors (a file, a VM's extraConfig key). */
export function parseReplicaState(text: string, where: string, remedy = 'delete it to force a full copy'): ReplicaState {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ReplicaStateError('REPLICA_STATE_CORRUPT', `${where} is not valid JSON; ${remedy}`, { where });
  }
  const state = value as Partial<ReplicaState>;
  if (state.format !== 'vcbt-replica' || state.version !== 1 || typeof state.deviceKey !== 'number' || typeof state.capacityBytes !== 'number' || !state.vm) {
    throw new ReplicaStateError('REPLICA_STATE_CORRUPT', `${where} is not a vcbt replica state of version 1; ${remedy}`, { where });
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

/** How replication's plan reasons name the baseline. */
export const replicaWords: BaselineWords = { baseline: 'the target', none: 'the target has no replica state (first replication)' };
