// Bringing a new VM in line with a stored configuration after an OVF import, for what the
// OVF descriptor cannot carry or a server may not apply: cores per socket, firmware and
// secure boot, the annotation, extraConfig, and (when kept) each NIC's MAC address. One
// ReconfigVM_Task; its spec's fields go in vim25's schema order.
//
// extraConfig options that identify the old VM or belong to its host are not copied
// (`skippedExtraConfig`): the new VM gets its own UUIDs, NVRAM name, swap and tools state.
import { child, children, optionalLong, type MoRef } from './decode.ts';
import { retrieveOne } from './property-collector.ts';
import { echo, xsdString, type SoapObject } from './soap.ts';
import type { VsphereSession } from './session.ts';
import { runTask } from './tasks.ts';
import type { VmConfiguration } from './vm-config.ts';
import type { XmlElement } from './xml.ts';

/** extraConfig key prefixes never copied onto a restored VM. */
export const skippedExtraConfig = [
  'nvram',
  'uuid.',
  'vc.uuid',
  'sched.swap.derivedName',
  'migrate.',
  'vmware.tools.',
  'checkpoint.',
  'vmotion.',
  'hostCPUID.',
  'guestCPUID.',
  'userCPUID.',
  'monitor.phys_bits_used',
  'softPowerOff',
  'toolsInstallManager.',
  'cpuid.coresPerSocket',
  'numa.autosize',
  'vcbt.',
];

export function copiedExtraConfig(config: VmConfiguration): Array<{ key: string; value: string }> {
  return config.extraConfig.filter((o) => o.key !== '' && !skippedExtraConfig.some((prefix) => o.key === prefix || o.key.startsWith(prefix)));
}

/**
 * A copy of `element` with the text of the named children replaced; a child it lacks is
 * inserted before the first child that `order` (the schema's sequence) puts after it.
 */
function withTexts(element: XmlElement, texts: Record<string, string>, order: readonly string[]): XmlElement {
  const out = element.children.map((c) => (c.name in texts && c.children.length === 0 ? { ...c, text: texts[c.name] } : c));
  for (const [name, text] of Object.entries(texts)) {
    if (out.some((c) => c.name === name)) continue;
    const later = new Set(order.slice(order.indexOf(name) + 1));
    const at = out.findIndex((c) => later.has(c.name));
    const added: XmlElement = { name, namespace: element.namespace, attributes: new Map(), children: [], text, xsiType: undefined };
    out.splice(at === -1 ? out.length : at, 0, added);
  }
  return { ...element, children: out };
}

/** VirtualEthernetCard's fields after VirtualDevice's, in schema order. */
const ethernetCardOrder = ['addressType', 'macAddress', 'wakeOnLanEnabled', 'resourceAllocation', 'externalId', 'uptCompatibilityEnabled'];

export interface ApplyConfigurationOptions {
  /** Set each NIC's MAC to the stored one (as a manual address). */
  keepMac: boolean;
  signal?: AbortSignal;
}

/**
 * Reconfigures `vm` (a VM just imported from `config`) so that what OVF left out matches.
 * NICs are matched in device order.
 */
export async function applyConfiguration(session: VsphereSession, vm: { name: string; moref: MoRef }, config: VmConfiguration, options: ApplyConfigurationOptions): Promise<void> {
  const target = { vm: { name: vm.name, moref: vm.moref.value } };
  const deviceChange: SoapObject[] = [];
  if (options.keepMac) {
    const devices = (await retrieveOne(session, vm.moref, ['config.hardware.device'], { target, idempotent: true })).get('config.hardware.device');
    const nics = (devices ? children(devices, 'VirtualDevice') : []).filter((d) => child(d, 'macAddress') !== undefined || child(d, 'addressType') !== undefined);
    nics.sort((a, b) => (optionalLong(a, 'key') ?? 0) - (optionalLong(b, 'key') ?? 0));
    for (const [i, nic] of nics.entries()) {
      const stored = config.nics[i];
      if (!stored?.macAddress) continue;
      deviceChange.push({ $type: 'VirtualDeviceConfigSpec', operation: 'edit', device: echo(withTexts(nic, { addressType: 'manual', macAddress: stored.macAddress }, ethernetCardOrder)) });
    }
  }
  const spec: SoapObject = {
    $type: 'VirtualMachineConfigSpec',
    annotation: config.annotation,
    numCoresPerSocket: config.coresPerSocket,
    deviceChange: deviceChange.length > 0 ? deviceChange : undefined,
    extraConfig: copiedExtraConfig(config).map((o) => ({ $type: 'OptionValue', key: o.key, value: xsdString(o.value) })),
    bootOptions: config.firmware === 'efi' ? { $type: 'VirtualMachineBootOptions', efiSecureBootEnabled: config.secureBoot } : undefined,
    firmware: config.firmware,
  };
  await runTask(session, 'ReconfigVM_Task', vm.moref, { spec }, { target, signal: options.signal });
}

/** PowerOnVM_Task. */
export async function powerOnVm(session: VsphereSession, vm: { name: string; moref: MoRef }, signal?: AbortSignal): Promise<void> {
  await runTask(session, 'PowerOnVM_Task', vm.moref, {}, { target: { vm: { name: vm.name, moref: vm.moref.value } }, signal });
}

/** Destroy_Task: removes the VM and its files. */
export async function destroyVm(session: VsphereSession, vm: { name: string; moref: MoRef }, signal?: AbortSignal): Promise<void> {
  await runTask(session, 'Destroy_Task', vm.moref, {}, { target: { vm: { name: vm.name, moref: vm.moref.value } }, signal });
}
