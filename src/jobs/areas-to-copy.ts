// The areas a copy of one disk must read, from its plan (copy-plan.ts): an incremental asks
// vSphere for the areas changed since the baseline's ChangeId; a ChangeId the server refuses
// (CBT reset, voided epoch, FileFault) turns the copy into a full one and says why - a
// refusal never means "no changes". A full copy reads the allocated areas ("*").
import type { Extent } from '../extents/extent.ts';
import { ALLOCATED_AREAS, ChangeIdInvalidError, queryChangedAreas, type ChangedAreasQuery, type VsphereSession } from '../vsphere/vsphere.ts';
import type { CopyPlan } from './copy-plan.ts';

export type AreasToCopy = CopyPlan & { areas: Extent[] };

export async function areasToCopy(session: VsphereSession, query: Omit<ChangedAreasQuery, 'changeId' | 'currentChangeId'>, plan: CopyPlan, currentChangeId: string): Promise<AreasToCopy> {
  if (plan.mode === 'full') return { ...plan, areas: await queryChangedAreas(session, { ...query, changeId: ALLOCATED_AREAS }) };
  try {
    return { ...plan, areas: await queryChangedAreas(session, { ...query, changeId: plan.sinceChangeId, currentChangeId }) };
  } catch (error) {
    if (!(error instanceof ChangeIdInvalidError)) throw error;
    return {
      mode: 'full',
      reasonCode: 'CHANGEID_REFUSED',
      reason: `the server refused the recorded ChangeId (${error.message}); copying everything`,
      areas: await queryChangedAreas(session, { ...query, changeId: ALLOCATED_AREAS }),
    };
  }
}
