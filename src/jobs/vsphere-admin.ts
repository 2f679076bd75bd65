// The vSphere work the commands (and the service to come) ask for outside snapshot jobs:
// opening a session, naming a VM, listing VMs (with their placement, for the service's VM
// selection), switching CBT. The CLI reaches vSphere only
// through src/jobs (eslint.config.js enforces it); this file is that door for these tasks.
import { connect, disableCbt, enableCbt, findVm, listVmPlacements, listVms, parseVmSelector, resetCbt, type ConnectOptions, type VmInfo, type VmSelector, type VsphereSession } from '../vsphere/vsphere.ts';

export { listVmPlacements, listVms, parseVmSelector };

/** Logs in to a vCenter/ESXi (TLS verified or pinned; see src/vsphere/session.ts). */
export function openVsphereSession(options: ConnectOptions): Promise<VsphereSession> {
  return connect(options);
}

export const cbtActions = ['enable', 'disable', 'reset'] as const;
export type CbtAction = (typeof cbtActions)[number];

const apply = { enable: enableCbt, disable: disableCbt, reset: resetCbt } as const;

/** Switches CBT on a VM (reset: a new tracking epoch) and returns the VM as it is afterwards. */
export async function changeCbt(session: VsphereSession, selector: VmSelector, action: CbtAction): Promise<VmInfo> {
  const found = await findVm(session, selector);
  await apply[action](session, found);
  return findVm(session, { moref: found.moref.value });
}
