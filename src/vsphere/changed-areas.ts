// QueryChangedDiskAreas, done completely: one call only describes the window
// [startOffset, startOffset + length), so we loop until the whole capacity is covered.
// Answers are checked (window must start where asked and have positive length - otherwise
// we would loop forever or skip bytes; areas sorted, non-overlapping, inside the disk) and
// merged. A fault on a ChangeId query never becomes "no changes": FileFault/InvalidArgument
// become ChangeIdInvalidError (CBT_CHANGEID_INVALID) so callers fall back to `*`.
import { validateAreas } from '../extents/validate.ts';
import type { Extent } from '../extents/extent.ts';
import { child, children, longOf, requireChild, withTarget, type MoRef } from './decode.ts';
import { ChangeIdInvalidError, VsphereError, VsphereFault, describeTarget } from './errors.ts';
import { ref } from './soap.ts';
import type { VmIdentity } from './inventory.ts';
import type { VsphereSession } from './session.ts';

/** The ChangeId that asks for the allocated (in-use) areas instead of changes. */
export const ALLOCATED_AREAS = '*';

export interface ChangedAreasQuery {
  vm: VmIdentity;
  /** Required for a powered-on VM. */
  snapshot?: MoRef;
  deviceKey: number;
  capacityBytes: number;
  /** ChangeId of the previous backup, or ALLOCATED_AREAS. */
  changeId: string;
  /**
   * The disk's ChangeId now (from the snapshot's disk). If its epoch (before `/`) differs
   * from `changeId`'s, CBT was reset since: fail with CBT_CHANGEID_INVALID without asking.
   */
  currentChangeId?: string;
  signal?: AbortSignal;
  /** Called after each answered window with the bytes covered so far. */
  onProgress?: (coveredBytes: number, capacityBytes: number) => void;
}

/** The tracking epoch of a ChangeId (`52 54 eb ... 2e/102` → `52 54 eb ... 2e`), if well-formed. */
export function changeIdEpoch(changeId: string): string | undefined {
  const slash = changeId.lastIndexOf('/');
  return slash > 0 ? changeId.slice(0, slash).trim() : undefined;
}

/**
 * Faults that mean "this ChangeId is not usable": FileFault (unknown or voided ChangeId) and
 * InvalidArgument about the changeId. An InvalidArgument naming another parameter (snapshot,
 * deviceKey, startOffset) is a different error and stays a VsphereFault.
 */
function rejectsChangeId(fault: VsphereFault): boolean {
  if (fault.faultType === 'FileFault') return true;
  if (fault.faultType !== 'InvalidArgument') return false;
  const property = fault.detail ? child(fault.detail, 'invalidProperty')?.text.trim() : undefined;
  return property === undefined || property === '' || property === 'changeId';
}

/** Changed (or allocated) areas of one disk, validated and merged, in bytes. */
export async function queryChangedAreas(session: VsphereSession, query: ChangedAreasQuery): Promise<Extent[]> {
  const { vm, deviceKey, capacityBytes, changeId } = query;
  const callTarget = { vm: { name: vm.name, moref: vm.moref.value }, diskKey: deviceKey };
  const target = session.target(callTarget);
  if (changeId !== ALLOCATED_AREAS && query.currentChangeId !== undefined) {
    const wanted = changeIdEpoch(changeId);
    const current = changeIdEpoch(query.currentChangeId);
    if (wanted !== undefined && current !== undefined && wanted !== current) {
      throw new ChangeIdInvalidError(`its tracking epoch differs from the disk's current ChangeId "${query.currentChangeId}" (CBT was reset)`, changeId, target);
    }
  }
  const areas: Extent[] = [];
  let startOffset = 0;
  await withTarget(target, async () => {
    while (startOffset < capacityBytes) {
      let response;
      try {
        response = await session.call(
          'QueryChangedDiskAreas',
          vm.moref,
          { snapshot: query.snapshot ? ref(query.snapshot) : undefined, deviceKey, startOffset, changeId },
          { idempotent: true, target: callTarget, signal: query.signal },
        );
      } catch (error) {
        if (error instanceof VsphereFault && changeId !== ALLOCATED_AREAS && rejectsChangeId(error)) {
          throw new ChangeIdInvalidError(`the server answered ${error.faultType}: ${error.faultMessage}`, changeId, target, error);
        }
        throw error;
      }
      const info = requireChild(response, 'returnval');
      const windowStart = longOf(info, 'startOffset');
      const windowLength = longOf(info, 'length');
      if (windowStart !== startOffset || windowLength <= 0) {
        throw new VsphereError(
          'CBT_QUERY_NO_PROGRESS',
          `QueryChangedDiskAreas at startOffset ${startOffset} answered the window [${windowStart}, +${windowLength}); refusing to loop or skip bytes`,
          target,
          { startOffset, windowStart, windowLength },
        );
      }
      for (const area of children(info, 'changedArea')) areas.push({ offsetBytes: longOf(area, 'start'), lengthBytes: longOf(area, 'length') });
      startOffset = windowStart + windowLength;
      query.onProgress?.(Math.min(startOffset, capacityBytes), capacityBytes);
    }
  });
  return validateAreas(areas, { capacityBytes, source: `QueryChangedDiskAreas (${describeTarget(target)}, changeId "${changeId}")`, requireSorted: true });
}
