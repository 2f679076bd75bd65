// Where a new VM goes: the datacenter, datastore, VM folder, resource pool and (optionally)
// host an import or a VM creation names, resolved from what an administrator types.
//
// - datastore: by name, within the datacenter; with its free space and capacity.
// - folder: an inventory path (`DC0/vm/Restored`, or relative to the datacenter's VM folder:
//   `Restored`); default the datacenter's VM folder.
// - resource pool: an inventory path (`DC0/host/Cluster/Resources/Pool`); default the root
//   pool of the host's compute resource (with `host`) or of the datacenter's first one.
// - host: by name; its compute resource gives the default pool.
// Anything not found is PLACEMENT_NOT_FOUND naming what exists.
import { asMoRef, children, optionalLong, withTarget, type MoRef } from './decode.ts';
import { VsphereError } from './errors.ts';
import { retrieveAllOfType, retrieveOne } from './property-collector.ts';
import { returnValues } from './soap.ts';
import type { VsphereSession } from './session.ts';

export interface ImportPlacementRequest {
  /** Datacenter name; default the only (or first) datacenter. */
  datacenter?: string;
  datastore: string;
  folder?: string;
  resourcePool?: string;
  host?: string;
}

export interface ResolvedPlacement {
  datacenter: { moref: MoRef; name: string };
  datastore: { moref: MoRef; name: string; freeBytes: number; capacityBytes: number };
  folder: MoRef;
  resourcePool: MoRef;
  host: MoRef | undefined;
}

function notFound(session: VsphereSession, what: string, given: string, found: string[]): VsphereError {
  return new VsphereError('PLACEMENT_NOT_FOUND', `no ${what} "${given}"; found: ${found.join(', ') || 'none'}`, session.target(), { [what.replace(/ /g, '')]: given, found });
}

async function findByPath(session: VsphereSession, path: string): Promise<MoRef | undefined> {
  const response = await session.call('FindByInventoryPath', session.serviceContent.searchIndex, { inventoryPath: path }, { idempotent: true });
  const found = returnValues(response)[0];
  return found ? asMoRef(found) : undefined;
}

export async function resolvePlacement(session: VsphereSession, request: ImportPlacementRequest): Promise<ResolvedPlacement> {
  return withTarget(session.target(), async () => {
    const datacenters = await retrieveAllOfType(session, 'Datacenter', ['name', 'vmFolder', 'datastore']);
    const names = datacenters.map((d) => d.props.get('name')?.text ?? d.obj.value);
    const dc = request.datacenter === undefined ? datacenters[0] : datacenters.find((d) => d.props.get('name')?.text === request.datacenter);
    if (!dc) throw notFound(session, 'datacenter', request.datacenter ?? '(any)', names);
    const dcName = dc.props.get('name')?.text ?? dc.obj.value;
    const vmFolderEl = dc.props.get('vmFolder');
    if (!vmFolderEl) throw new VsphereError('VSPHERE_BAD_RESPONSE', `datacenter ${dcName} has no VM folder`, session.target());

    const dsList = dc.props.get('datastore');
    const dsRefs = dsList ? children(dsList, 'ManagedObjectReference').map(asMoRef) : [];
    const datastores = await retrieveAllOfType(session, 'Datastore', ['name', 'summary']);
    const inDc = datastores.filter((d) => dsRefs.length === 0 || dsRefs.some((r) => r.value === d.obj.value));
    const ds = inDc.find((d) => d.props.get('name')?.text === request.datastore);
    if (!ds) throw notFound(session, 'datastore', request.datastore, inDc.map((d) => d.props.get('name')?.text ?? d.obj.value));
    const summary = ds.props.get('summary');
    const datastore = {
      moref: ds.obj,
      name: request.datastore,
      freeBytes: summary ? (optionalLong(summary, 'freeSpace') ?? 0) : 0,
      capacityBytes: summary ? (optionalLong(summary, 'capacity') ?? 0) : 0,
    };

    let folder = asMoRef(vmFolderEl);
    if (request.folder !== undefined && request.folder !== '') {
      const path = request.folder.startsWith(`${dcName}/`) ? request.folder : `${dcName}/vm/${request.folder}`;
      const found = await findByPath(session, path);
      if (!found || found.type !== 'Folder') throw notFound(session, 'folder', request.folder, [`${dcName}/vm`]);
      folder = found;
    }

    let host: MoRef | undefined;
    let compute: MoRef | undefined;
    if (request.host !== undefined) {
      const hosts = await retrieveAllOfType(session, 'HostSystem', ['name', 'parent']);
      const found = hosts.find((h) => h.props.get('name')?.text === request.host);
      if (!found) throw notFound(session, 'host', request.host, hosts.map((h) => h.props.get('name')?.text ?? h.obj.value));
      host = found.obj;
      const parent = found.props.get('parent');
      compute = parent ? asMoRef(parent) : undefined;
    }

    let resourcePool: MoRef | undefined;
    if (request.resourcePool !== undefined) {
      const path = request.resourcePool.startsWith(`${dcName}/`) ? request.resourcePool : `${dcName}/host/${request.resourcePool}`;
      const found = await findByPath(session, path);
      if (!found || found.type !== 'ResourcePool') throw notFound(session, 'resource pool', request.resourcePool, [`${dcName}/host/<cluster or host>/Resources/...`]);
      resourcePool = found;
    } else {
      if (!compute) {
        const computes = await retrieveAllOfType(session, 'ComputeResource', ['name']);
        compute = computes.sort((a, b) => (a.props.get('name')?.text ?? '').localeCompare(b.props.get('name')?.text ?? ''))[0]?.obj;
      }
      if (compute) {
        const pool = (await retrieveOne(session, compute, ['resourcePool'], { idempotent: true })).get('resourcePool');
        resourcePool = pool ? asMoRef(pool) : undefined;
      }
      if (!resourcePool) throw notFound(session, 'resource pool', '(default)', []);
    }
    return { datacenter: { moref: dc.obj, name: dcName }, datastore, folder, resourcePool, host };
  });
}

/** Whether a VM of this name exists (anywhere in the inventory); its moref if so. */
export async function vmNamed(session: VsphereSession, name: string): Promise<MoRef | undefined> {
  const all = await retrieveAllOfType(session, 'VirtualMachine', ['name']);
  return all.find((o) => o.props.get('name')?.text === name)?.obj;
}
