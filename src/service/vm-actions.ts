// Actions on one VM that the API offers: switch its CBT on, and back it up now (a run of a
// backup job restricted to it, `vcbt job run NAME --vm` semantics).
//
// Vocabulary
// - covering backup job: a backup job of the VM's server whose selection selects the VM now.
import { VcbtError } from '../errors.ts';
import { changeCbt, listVmPlacements } from '../jobs/vsphere-admin.ts';
import type { JobConfig, ServiceConfig } from './config.ts';
import { openServerSession } from './run.ts';
import { selectVms } from './selection.ts';

/** Codes: VM_NOT_FOUND (context `server`, `moref`), JOB_NOT_FOUND, JOB_AMBIGUOUS (context `jobs`). */
export class VmActionError extends VcbtError {}

/** Switches CBT on (a no-op when it is on); answers the VM as it is afterwards. */
export async function enableVmCbt(config: ServiceConfig, env: NodeJS.ProcessEnv, server: string, moref: string): Promise<{ name: string; moref: string; cbtEnabled: boolean }> {
  const session = await openServerSession(config, server, env);
  try {
    const vm = await changeCbt(session, { moref }, 'enable');
    return { name: vm.name, moref: vm.moref.value, cbtEnabled: vm.cbtEnabled };
  } finally {
    await session.logout().catch(() => undefined);
  }
}

/**
 * The backup job to back the VM up now: `jobName` when given (it must be a backup job of the
 * VM's server that selects it), else the one covering backup job. Answers the job and the
 * VM's name (what `--vm` takes).
 */
export async function backupJobFor(config: ServiceConfig, env: NodeJS.ProcessEnv, server: string, moref: string, jobName?: string): Promise<{ job: JobConfig; vmName: string }> {
  const session = await openServerSession(config, server, env);
  try {
    const placements = await listVmPlacements(session);
    const vm = placements.find((p) => p.vm.moref.value === moref);
    if (!vm) throw new VmActionError('VM_NOT_FOUND', `no VM ${moref} on server "${server}"`, { server, moref });
    const candidates = [...config.jobs.values()].filter((j) => j.type === 'backup' && j.server === server && (jobName === undefined || j.name === jobName));
    const covering = candidates.filter((j) => selectVms([vm], j.vms).selected.length > 0);
    if (jobName !== undefined && covering.length === 0) {
      throw new VmActionError('JOB_NOT_FOUND', `no backup job "${jobName}" of server "${server}" selects VM "${vm.vm.name}"`, { job: jobName, server, moref });
    }
    if (covering.length === 0) throw new VmActionError('JOB_NOT_FOUND', `no backup job selects VM "${vm.vm.name}" (add it to a job's vms.include)`, { server, moref });
    if (covering.length > 1) throw new VmActionError('JOB_AMBIGUOUS', `${covering.length} backup jobs select VM "${vm.vm.name}" (${covering.map((j) => j.name).join(', ')}); say which with "job"`, { jobs: covering.map((j) => j.name) });
    return { job: covering[0] as JobConfig, vmName: vm.vm.name };
  } finally {
    await session.logout().catch(() => undefined);
  }
}
