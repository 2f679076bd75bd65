// Why a disk copy (backup or replication) is full or incremental, as a stable code that
// scripts can match; the prose `reason` next to it says the same for people and may be
// reworded. The planner (planCopy and the job's fallbacks) chooses the code; the --json
// documents of backup and replicate carry it per disk as `reasonCode`.

export type CopyReasonCode =
  /** Full: nothing was copied before (no replica state, no restore point holding this disk). */
  | 'FIRST_COPY'
  /** Full: a full copy was asked for (--full). */
  | 'FORCED'
  /** Full: the target or baseline holds a copy of another VM. */
  | 'OTHER_VM'
  /** Full: the target or baseline holds another disk of the VM. */
  | 'OTHER_DISK'
  /** Full: the disk's capacity changed since the baseline (CBT across a resize is untrustworthy, KB 2090639). */
  | 'CAPACITY_CHANGED'
  /** Full: the baseline records no ChangeId. */
  | 'NO_CHANGEID'
  /** Full: the previous full copy was interrupted. */
  | 'INTERRUPTED'
  /** Full: the server refused the recorded ChangeId (CBT was reset, another tracking epoch). */
  | 'CHANGEID_REFUSED'
  /** Full: the baseline restore point is damaged, so nothing may be built on it. */
  | 'BASELINE_DAMAGED'
  /** Incremental: the blocks changed since the baseline's ChangeId. */
  | 'CHANGES_SINCE';
