// The areas a copy of one disk must read, from its plan (replica-state.ts planCopy):
// an incremental asks vSphere for the areas changed since the baseline's ChangeId; a ChangeId
// the server refuses (CBT reset, voided epoch, FileFault) turns the copy into a full one and
// says why - a refusal never means "no changes". A full copy reads the allocated areas ("*").
import type { Extent } from '../extents/extent.ts';
import { ALLOCATED_AREAS, ChangeIdInvalidError, queryChangedAreas, type ChangedAreasQuery, type VsphereSession } from '../vsphere/vsphere.ts';
import type { CopyPlan } from './replica-state.ts';

export interface AreasToCopy {
  mode: 'full' | 'incremental';
  reason: string;
  areas: Extent[];
}

export async function areasToCopy(session: VsphereSession, query: Omit<ChangedAreasQuery, 'changeId' | 'currentChangeId'>, plan: CopyPlan, currentChangeId: string): Promise<AreasToCopy> {
  if (plan.mode === 'full') return { mode: 'full', reason: plan.reason, areas: await queryChangedAreas(session, { ...query, changeId: ALLOCATED_AREAS }) };
  try {
    const areas = await queryChangedAreas(session, { ...query, changeId: plan.sinceChangeId, currentChangeId });
    return { mode: 'incremental', reason: `changes since ${plan.sinceChangeId}`, areas };
  } catch (error) {
    if (!(error instanceof ChangeIdInvalidError)) throw error;
    return {
      mode: 'full',
      reason: `the server refused the recorded ChangeId (${error.message}); copying everything`,
      areas: await queryChangedAreas(session, { ...query, changeId: ALLOCATED_AREAS }),
    };
  }
}
