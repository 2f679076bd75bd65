// The copy plan: whether one disk's copy is full or incremental, and why. One rule for every
// snapshot job (replicate onto a target, backup into a repository, and the jobs to come):
//
// - baseline: what the last copy of the disk recorded: a replica state next to a target, or
//   the disk in a restore point. VM identity, device key, capacity, ChangeId (null: none).
// - disk now: the same facts read from vSphere for this run (DiskNow).
//
// Full when asked, when there is no baseline, when the baseline is another VM's or another
// disk's, when the capacity changed (KB 2090639: CBT data across a resize cannot be trusted),
// or when the baseline has no ChangeId (an interrupted full copy). Otherwise incremental
// since the baseline's ChangeId; whether the server still honours that ChangeId (same
// tracking epoch) is decided by the query itself (areas-to-copy.ts).
import type { CopyReasonCode } from './copy-reason.ts';

export interface VmRef {
  name: string;
  moref: string;
  instanceUuid: string | null;
}

/** The disk as this run sees it. A disk without active tracking has `changeId: null`. */
export interface DiskNow {
  server: string;
  vm: Pick<VmRef, 'moref' | 'instanceUuid'>;
  deviceKey: number;
  capacityBytes: number;
  changeId: string | null;
}

/** What the last copy of a disk recorded. `inProgress` set means that copy never finished. */
export interface CopyBaseline {
  server: string;
  vm: VmRef;
  deviceKey: number;
  capacityBytes: number;
  changeId: string | null;
  inProgress?: { startedAt: string; mode: 'full' | 'incremental' } | null;
}

export type CopyPlan =
  | { mode: 'full'; reasonCode: CopyReasonCode; reason: string }
  | { mode: 'incremental'; reasonCode: 'CHANGES_SINCE'; reason: string; sinceChangeId: string };

/** How the reasons name the baseline: "the target", "restore point 2026...". */
export interface BaselineWords {
  /** Names the baseline in a sentence. */
  baseline: string;
  /** The reason when there is no baseline at all. */
  none: string;
}

/** Whether a baseline was recorded for the same VM (instance UUID when both know it, else moref on the same server). */
export function isSameVm(baseline: Pick<CopyBaseline, 'server' | 'vm'>, now: Pick<DiskNow, 'server' | 'vm'>): boolean {
  return now.vm.instanceUuid && baseline.vm.instanceUuid ? now.vm.instanceUuid === baseline.vm.instanceUuid : now.vm.moref === baseline.vm.moref && now.server === baseline.server;
}

/** The same VM's same disk, with another capacity: CBT data across the resize is untrustworthy. */
export function diskResized(baseline: CopyBaseline | undefined, now: DiskNow): boolean {
  return baseline !== undefined && isSameVm(baseline, now) && baseline.deviceKey === now.deviceKey && baseline.capacityBytes !== now.capacityBytes;
}

/** Full or incremental, and why. The ChangeId epoch check happens in the query itself. */
export function planCopy(baseline: CopyBaseline | undefined, now: DiskNow, forceFull: boolean, words: BaselineWords): CopyPlan {
  const full = (reasonCode: CopyReasonCode, reason: string): CopyPlan => ({ mode: 'full', reasonCode, reason });
  if (forceFull) return full('FORCED', 'a full copy was asked for (--full)');
  if (!baseline) return full('FIRST_COPY', words.none);
  if (!isSameVm(baseline, now)) return full('OTHER_VM', `${words.baseline} holds a copy of another VM (${baseline.vm.name}, ${baseline.vm.moref})`);
  if (baseline.deviceKey !== now.deviceKey) return full('OTHER_DISK', `${words.baseline} holds disk ${baseline.deviceKey}, not disk ${now.deviceKey}`);
  if (baseline.capacityBytes !== now.capacityBytes) {
    return full('CAPACITY_CHANGED', `the disk's capacity changed from ${baseline.capacityBytes} to ${now.capacityBytes} bytes (changed-block data from before a resize cannot be trusted, KB 2090639)`);
  }
  if (!baseline.changeId) {
    return baseline.inProgress ? full('INTERRUPTED', 'the previous full copy was interrupted') : full('NO_CHANGEID', `${words.baseline} records no ChangeId`);
  }
  return { mode: 'incremental', reasonCode: 'CHANGES_SINCE', reason: `changes since ${baseline.changeId}`, sinceChangeId: baseline.changeId };
}
