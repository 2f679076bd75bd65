// A VM's extraConfig: the `key = "value"` options of its .vmx that vSphere exposes as
// `config.extraConfig` (OptionValue[]) and changes through ReconfigVM_Task. vcbt keeps state
// there that must live with the VM itself (a replica's source and ChangeIds), not on the
// host that runs vcbt.
//
// - read: the options whose key starts with a prefix, as a Map (key -> text value).
// - set: one ReconfigVM_Task with the given options; as on vSphere, a key that exists is
//   replaced and an empty value removes it. Each value is sent as `xsi:type="xsd:string"`
//   (OptionValue.value is `xsd:anyType`: untyped text is refused by the server's decoder).
import { children, optionalText } from './decode.ts';
import type { VmIdentity } from './inventory.ts';
import { retrieveOne } from './property-collector.ts';
import type { VsphereSession } from './session.ts';
import { xsdString, type SoapObject } from './soap.ts';
import { runTask } from './tasks.ts';

function vmTarget(vm: VmIdentity) {
  return { vm: { name: vm.name, moref: vm.moref.value } };
}

/** The VM's extraConfig options whose key starts with `prefix` (all when empty). */
export async function readExtraConfig(session: VsphereSession, vm: VmIdentity, prefix = ''): Promise<Map<string, string>> {
  const props = await retrieveOne(session, vm.moref, ['config.extraConfig'], { target: vmTarget(vm), idempotent: true });
  const options = new Map<string, string>();
  const array = props.get('config.extraConfig');
  if (!array) return options;
  for (const option of children(array, 'OptionValue')) {
    const key = optionalText(option, 'key')?.trim();
    if (key && key.startsWith(prefix)) options.set(key, optionalText(option, 'value') ?? '');
  }
  return options;
}

/** The OptionValue data objects of a ConfigSpec's extraConfig. */
export function extraConfigSpec(options: ReadonlyMap<string, string>): SoapObject[] {
  return [...options].map(([key, value]) => ({ $type: 'OptionValue', key, value: xsdString(value) }));
}

/** Sets (or, with an empty value, removes) extraConfig options in one reconfiguration. */
export async function setExtraConfig(session: VsphereSession, vm: VmIdentity, options: ReadonlyMap<string, string>, signal?: AbortSignal): Promise<void> {
  if (options.size === 0) return;
  const spec = { $type: 'VirtualMachineConfigSpec', extraConfig: extraConfigSpec(options) };
  await runTask(session, 'ReconfigVM_Task', vm.moref, { spec }, { target: vmTarget(vm), signal });
}
