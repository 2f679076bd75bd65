// Placement: where each VM lives in the inventory, for selecting VMs by folder, host, cluster,
// resource pool, datastore or custom attribute. Two property reads cover the whole inventory:
// every managed entity's name and parent (one ContainerView), and every VM's own state with
// its parent folder, host, resource pool, datastores and custom values.
//
// Vocabulary
// - folder path: the VM's folder as an inventory path without the root folder, the form
//   FindByInventoryPath takes (`DC0/vm/Production`).
// - cluster: the ClusterComputeResource of the VM's host (none for a standalone host).
// - resource pools: the VM's pool and every pool above it, nearest first (`RP0`, `Resources`).
// - attributes: custom attribute name -> value (vSphere "Custom Attributes").
import { asMoRef, child, children, withTarget, type MoRef } from './decode.ts';
import { decodeVm, vmProperties, type VmInfo } from './inventory.ts';
import { retrieveAllOfType } from './property-collector.ts';
import type { VsphereSession } from './session.ts';
import type { XmlElement } from './xml.ts';

export interface VmPlacement {
  vm: VmInfo;
  datacenter: string | undefined;
  folderPath: string;
  host: string | undefined;
  cluster: string | undefined;
  resourcePools: string[];
  datastores: string[];
  attributes: Record<string, string>;
}

interface Entity {
  type: string;
  name: string;
  parent: MoRef | undefined;
}

const placementProperties = [...vmProperties, 'parent', 'runtime.host', 'resourcePool', 'datastore', 'customValue', 'availableField'];

/** Every VM with its placement, sorted by name. */
export async function listVmPlacements(session: VsphereSession): Promise<VmPlacement[]> {
  return withTarget(session.target(), async () => {
    const entities = new Map<string, Entity>();
    for (const o of await retrieveAllOfType(session, 'ManagedEntity', ['name', 'parent'])) {
      const parent = o.props.get('parent');
      entities.set(`${o.obj.type}:${o.obj.value}`, { type: o.obj.type, name: o.props.get('name')?.text ?? o.obj.value, parent: parent ? asMoRef(parent) : undefined });
    }
    const entity = (ref: MoRef | undefined) => (ref ? entities.get(`${ref.type}:${ref.value}`) : undefined);
    /** Ancestors of `ref`, itself first, up to (not including) the root folder. */
    const lineage = (ref: MoRef | undefined): Entity[] => {
      const out: Entity[] = [];
      for (let e = entity(ref); e && e.parent; e = entity(e.parent)) out.push(e);
      return out;
    };
    const vms = await retrieveAllOfType(session, 'VirtualMachine', placementProperties);
    return vms
      .map((o): VmPlacement => {
        const parentEl = o.props.get('parent');
        const folders = lineage(parentEl ? asMoRef(parentEl) : undefined);
        const hostEl = o.props.get('runtime.host');
        const host = hostEl ? entity(asMoRef(hostEl)) : undefined;
        const compute = host ? entity(host.parent) : undefined;
        const poolEl = o.props.get('resourcePool');
        const pools = lineage(poolEl ? asMoRef(poolEl) : undefined).filter((e) => e.type === 'ResourcePool');
        const datastoresEl = o.props.get('datastore');
        const datastores = datastoresEl ? children(datastoresEl, 'ManagedObjectReference').map((d) => entity(asMoRef(d))?.name ?? d.text) : [];
        return {
          vm: decodeVm(o.obj, o.props),
          datacenter: folders.find((e) => e.type === 'Datacenter')?.name,
          folderPath: folders.map((e) => e.name).reverse().join('/'),
          host: host?.name,
          cluster: compute?.type === 'ClusterComputeResource' ? compute.name : undefined,
          resourcePools: pools.map((p) => p.name),
          datastores,
          attributes: decodeAttributes(o.props.get('customValue'), o.props.get('availableField')),
        };
      })
      .sort((a, b) => a.vm.name.localeCompare(b.vm.name));
  });
}

function decodeAttributes(values: XmlElement | undefined, fields: XmlElement | undefined): Record<string, string> {
  const names = new Map<string, string>();
  for (const def of fields ? children(fields, 'CustomFieldDef') : []) {
    const key = child(def, 'key')?.text;
    const name = child(def, 'name')?.text;
    if (key !== undefined && name !== undefined) names.set(key, name);
  }
  const out: Record<string, string> = {};
  for (const value of values ? children(values, 'CustomFieldValue') : []) {
    const key = child(value, 'key')?.text;
    if (key === undefined) continue;
    out[names.get(key) ?? key] = child(value, 'value')?.text ?? '';
  }
  return out;
}
