// Snapshot ownership: one VM is never worked on by two vcbt runs at once, on one host or many,
// and nothing a live run owns is ever removed by another. vSphere is the only shared state.
//
// Vocabulary
// - owner record: written into the description of every snapshot a run takes (host, pid,
//   run id, start time, lease end; src/vsphere/snapshots.ts). Lease times are the vSphere
//   server's clock (CurrentTime), so the clocks of backup hosts never enter the rule.
// - lease: the owner renews it (RenameSnapshot) every third of its length while it works.
// - live owner: a vcbt snapshot whose lease has not expired and, when it was taken on this
//   host, whose process still exists. A vcbt snapshot that is not live is a *leftover*: its
//   run died (or predates owner records) and the next run removes it.
// - claim: a run lists the VM's snapshots; leftovers go; if a live owner remains, the run waits
//   (bounded by `waitBusyMs`) and then fails with VM_BUSY naming the owner. Otherwise it takes
//   its snapshot and lists again: when another live vcbt snapshot is older (createTime, then
//   moref as tie-break), the other run was first; this run removes its own snapshot and waits.
//   Both racers apply the same order to the same server-side list, so the oldest claim always
//   proceeds and no two runs proceed together.
// - lost: the snapshot vanished or changed owner while the run worked (removed, consolidated,
//   reverted away by someone else). The run then commits nothing: SNAPSHOT_LOST.
//
// Why this is safe: a snapshot is only removed by another run when its owner is provably gone
// (same host: no such process; any host: the lease, renewed every leaseMs/3, ran out by the
// server's own clock). A live owner renews long before expiry; an owner that cannot renew for a
// whole lease (hung, partitioned) stops before relying on the snapshot again: every sink
// confirms the snapshot is intact before recording anything (confirmIntact), so a run whose
// snapshot was taken from it never commits.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { VcbtError } from '../errors.ts';
import {
  createSnapshot,
  isOurs,
  listSnapshots,
  parseSnapshotOwner,
  removeSnapshot,
  renameSnapshot,
  serverTime,
  snapshotDescription,
  VsphereError,
  type MoRef,
  type SnapshotInfo,
  type SnapshotOwner,
  type VmIdentity,
  type VsphereSession,
} from '../vsphere/vsphere.ts';

/** Codes: VM_BUSY (another live run owns the VM), SNAPSHOT_LOST (our snapshot vanished mid-run). */
export class SnapshotOwnerError extends VcbtError {}

/** How long a lease lasts without renewal; renewed every third of it. */
export const DEFAULT_SNAPSHOT_LEASE_MS = 10 * 60_000;
/** How often a waiting run looks again whether the VM is free. */
export const DEFAULT_BUSY_POLL_MS = 2_000;

export interface OwnedSnapshotOptions {
  purpose: string;
  quiesce?: boolean;
  /** How long to wait for another live run to finish before VM_BUSY (default 0: fail at once). */
  waitBusyMs?: number;
  leaseMs?: number;
  pollMs?: number;
  signal?: AbortSignal;
  log: (line: string) => void;
}

export interface OwnedSnapshot {
  moref: MoRef;
  info: SnapshotInfo;
  /** Leftover snapshots of dead runs removed before this one was taken. */
  leftoversRemoved: string[];
  /** Aborts when the snapshot is found lost (or the caller's signal aborts). */
  signal: AbortSignal;
  /** Throws SNAPSHOT_LOST unless the snapshot still exists and is still ours. Call before recording anything. */
  confirmIntact(): Promise<void>;
}

type Verdict = { live: true; owner: SnapshotOwner } | { live: false; why: string };

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether the run owning a vcbt snapshot is still alive, judged at server time `now`. */
export function judgeOwner(snapshot: SnapshotInfo, now: Date, localHost: string = hostname()): Verdict {
  const owner = parseSnapshotOwner(snapshot.description);
  if (!owner) return { live: false, why: 'it has no owner record (taken by a vcbt without ownership records, or damaged)' };
  if (Date.parse(owner.lease) <= now.getTime()) return { live: false, why: `its owner's lease (host ${owner.host}, pid ${owner.pid}) expired at ${owner.lease}` };
  if (owner.host === localHost && !processExists(owner.pid)) return { live: false, why: `its owner, process ${owner.pid} on this host, is gone` };
  return { live: true, owner };
}

function describeOwner(owner: SnapshotOwner): string {
  return `host ${owner.host}, pid ${owner.pid}, started ${owner.started}`;
}

function olderThan(a: SnapshotInfo, b: SnapshotInfo): boolean {
  const at = Date.parse(a.createTime);
  const bt = Date.parse(b.createTime);
  if (at !== bt) return at < bt;
  return a.moref.value < b.moref.value;
}

async function removeIfPresent(session: VsphereSession, vm: VmIdentity, snapshot: MoRef): Promise<boolean> {
  try {
    await removeSnapshot(session, vm, snapshot);
    return true;
  } catch (error) {
    if (error instanceof VsphereError && error.code === 'VSPHERE_OBJECT_NOT_FOUND') return false;
    throw error;
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Claims the VM (see the header), runs `work` with the owned snapshot, and always removes the
 * snapshot afterwards: on success, error and abort. Throws VM_BUSY or SNAPSHOT_LOST as above.
 */
export async function withOwnedSnapshot<T>(session: VsphereSession, vm: VmIdentity, options: OwnedSnapshotOptions, work: (snapshot: OwnedSnapshot) => Promise<T>): Promise<T> {
  const leaseMs = options.leaseMs ?? DEFAULT_SNAPSHOT_LEASE_MS;
  const pollMs = options.pollMs ?? DEFAULT_BUSY_POLL_MS;
  const deadline = Date.now() + (options.waitBusyMs ?? 0);
  const localHost = hostname();
  const owner: SnapshotOwner = { host: localHost, pid: process.pid, run: randomUUID(), started: new Date().toISOString(), lease: '' };
  const leftoversRemoved: string[] = [];
  const what = `VM "${vm.name}"`;

  const busy = (holder: SnapshotOwner, snapshot: MoRef) =>
    new SnapshotOwnerError('VM_BUSY', `${what} is busy: another vcbt run (${describeOwner(holder)}) owns snapshot ${snapshot.value}; retry later or wait with --wait-busy DURATION`, {
      vm: vm.name,
      owner: { host: holder.host, pid: holder.pid, started: holder.started },
      snapshot: snapshot.value,
    });
  const waitOrFail = async (holder: SnapshotOwner, snapshot: MoRef) => {
    const left = deadline - Date.now();
    if (left <= 0) throw busy(holder, snapshot);
    options.log(`${what} is busy (another vcbt run: ${describeOwner(holder)}); waiting up to ${Math.ceil(left / 1000)} s`);
    await sleep(Math.min(pollMs, left), options.signal);
  };

  let mine: SnapshotInfo;
  for (;;) {
    const now = await serverTime(session, options.signal);
    let holder: { owner: SnapshotOwner; snapshot: MoRef } | undefined;
    for (const snapshot of (await listSnapshots(session, vm)).filter(isOurs)) {
      const verdict = judgeOwner(snapshot, now, localHost);
      if (verdict.live) {
        holder ??= { owner: verdict.owner, snapshot: snapshot.moref };
        continue;
      }
      options.log(`removing leftover snapshot ${snapshot.moref.value} "${snapshot.name}": ${verdict.why}`);
      if (await removeIfPresent(session, vm, snapshot.moref)) leftoversRemoved.push(snapshot.moref.value);
    }
    if (holder) {
      await waitOrFail(holder.owner, holder.snapshot);
      continue;
    }
    owner.lease = new Date(now.getTime() + leaseMs).toISOString();
    const created = await createSnapshot(session, vm, { purpose: options.purpose, quiesce: options.quiesce, owner });
    const after = await listSnapshots(session, vm);
    const found = after.find((s) => s.moref.value === created.value);
    if (!found) throw new SnapshotOwnerError('SNAPSHOT_LOST', `snapshot ${created.value} of ${what} vanished right after it was taken`, { vm: vm.name, snapshot: created.value });
    const rival = after.filter((s) => s.moref.value !== created.value && isOurs(s) && olderThan(s, found)).find((s) => judgeOwner(s, now, localHost).live);
    if (!rival) {
      mine = found;
      break;
    }
    // Another run claimed the VM first: step back without leaving our snapshot behind.
    await removeIfPresent(session, vm, created);
    const rivalOwner = parseSnapshotOwner(rival.description) as SnapshotOwner;
    await waitOrFail(rivalOwner, rival.moref);
  }

  const lost = new AbortController();
  const lostError = () =>
    new SnapshotOwnerError('SNAPSHOT_LOST', `snapshot ${mine.moref.value} of ${what} was removed or changed by someone else while this run used it; nothing was committed or recorded`, {
      vm: vm.name,
      snapshot: mine.moref.value,
    });
  const isLost = (error: unknown) => error instanceof SnapshotOwnerError && error.code === 'SNAPSHOT_LOST';
  const confirmIntact = async () => {
    const now = (await listSnapshots(session, vm)).find((s) => s.moref.value === mine.moref.value);
    if (!now || parseSnapshotOwner(now.description)?.run !== owner.run || now.createTime !== mine.createTime) {
      if (!lost.signal.aborted) lost.abort(lostError());
      throw lost.signal.reason;
    }
  };
  let renewing: Promise<void> = Promise.resolve();
  const renew = async () => {
    try {
      const now = await serverTime(session);
      owner.lease = new Date(now.getTime() + leaseMs).toISOString();
      await renameSnapshot(session, vm, mine.moref, { name: mine.name, description: snapshotDescription(options.purpose, owner) });
    } catch (error) {
      if (error instanceof VsphereError && error.code === 'VSPHERE_OBJECT_NOT_FOUND') {
        if (!lost.signal.aborted) lost.abort(lostError());
        return;
      }
      options.log(`renewing the lease of snapshot ${mine.moref.value} failed (${error instanceof Error ? error.message : String(error)}); retrying in ${Math.round(leaseMs / 3000)} s`);
    }
  };
  const timer = setInterval(() => {
    renewing = renewing.then(renew);
  }, Math.max(1, Math.floor(leaseMs / 3)));
  timer.unref();

  const signal = options.signal ? AbortSignal.any([options.signal, lost.signal]) : lost.signal;
  let result: T;
  try {
    result = await work({ moref: mine.moref, info: mine, leftoversRemoved, signal, confirmIntact });
  } catch (error) {
    clearInterval(timer);
    await renewing;
    // A failure caused by the snapshot vanishing (a removed snapshot's disks, a gone moref)
    // is reported as what it is.
    if (!lost.signal.aborted && !isLost(error)) await confirmIntact().catch(() => {});
    const reported = lost.signal.aborted ? lost.signal.reason : error;
    try {
      await removeIfPresent(session, vm, mine.moref);
    } catch (removeError) {
      const first = reported instanceof Error ? reported.message : String(reported);
      const second = removeError instanceof Error ? removeError.message : String(removeError);
      throw new SnapshotOwnerError('SNAPSHOT_REMOVE_FAILED', `removing snapshot ${mine.moref.value} of ${what} failed (${second}) after: ${first}`, {
        vm: vm.name,
        snapshot: mine.moref.value,
        firstErrorCode: (reported as { code?: unknown }).code,
      }, { cause: reported });
    }
    throw reported;
  }
  clearInterval(timer);
  await renewing;
  // Gone by now is harmless: the work confirmed the snapshot intact before it recorded anything.
  await removeIfPresent(session, vm, mine.moref);
  return result;
}
