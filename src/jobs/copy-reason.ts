// Why a disk's copy is full or incremental, as a stable code next to the prose reason. Codes
// appear in `--json` documents (`reasonCode`) and never change meaning; the prose may.
//
// - FORCED: a full copy was asked for (`--full`).
// - FIRST_COPY: no baseline: the target has no replica state, or no restore point holds the disk.
// - OTHER_VM: the baseline is a copy of another VM.
// - OTHER_DISK: the baseline holds another disk of the VM.
// - CAPACITY_CHANGED: the disk's capacity changed since the baseline (KB 2090639).
// - NO_CHANGEID: the baseline records no ChangeId.
// - INTERRUPTED: the previous full copy onto the target was interrupted.
// - CHANGEID_REFUSED: the server refused the baseline's ChangeId (CBT reset, voided epoch).
// - BASELINE_DAMAGED: the baseline restore point's data is damaged or missing.
// - CHANGES_SINCE: incremental: the areas changed since the baseline's ChangeId.
export type CopyReasonCode =
  | 'FORCED'
  | 'FIRST_COPY'
  | 'OTHER_VM'
  | 'OTHER_DISK'
  | 'CAPACITY_CHANGED'
  | 'NO_CHANGEID'
  | 'INTERRUPTED'
  | 'CHANGEID_REFUSED'
  | 'BASELINE_DAMAGED'
  | 'CHANGES_SINCE';
