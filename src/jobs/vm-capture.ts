// VM capture: what a backup records of the VM besides its disks, so that `vcbt restore-vm`
// can rebuild it: the configuration as the snapshot froze it (src/vsphere/vm-config.ts) and
// the VM's `.vmx` and `.nvram` files, read whole through the datastore's `/folder` access
// (the session's TLS-checked agent and cookie, as disks are read).
//
// Stored in the restore point's manifest as `vmConfig.configuration` and `vmConfig.files`
// (docs/format.md, "VM configuration"); the manifest is encrypted in an encrypted
// repository, so these are too. A file that cannot be read does not fail the backup (the
// disks are what matters): its entry is null and `files.problem` says why.
import { createHash } from 'node:crypto';
import { VcbtError } from '../errors.ts';
import { DatastoreFiles } from '../transport/datastore-http.ts';
import { parseDatastorePath } from '../vmdk/descriptor.ts';
import { readVmConfig, type MoRef, type VmConfiguration, type VsphereSession } from '../vsphere/vsphere.ts';
import { datastoreAccess } from './snapshot-source.ts';

/** Largest `.vmx`/`.nvram` kept (an EFI NVRAM is some hundred KiB). */
export const maxVmFileBytes = 8 << 20;

export interface StoredVmFile {
  /** `[datastore] dir/name.vmx`. */
  path: string;
  sizeBytes: number;
  sha256: string;
  base64: string;
}

export interface StoredVmFiles {
  vmx: StoredVmFile | null;
  nvram: StoredVmFile | null;
  /** Why a file is missing, or null. */
  problem: string | null;
}

export interface VmCapture {
  configuration: VmConfiguration;
  files: StoredVmFiles;
}

/** The `nvram` entry of a .vmx (relative to the .vmx's directory), or `<name>.nvram` next to it. */
export function nvramPathOf(vmxPath: string, vmxText: string): string {
  const { datastore, path } = parseDatastorePath(vmxPath);
  const directory = path.includes('/') ? path.slice(0, path.lastIndexOf('/') + 1) : '';
  const entry = /^\s*nvram\s*=\s*"([^"]*)"\s*$/m.exec(vmxText)?.[1];
  if (entry && entry.startsWith('/')) return entry; // an absolute path is outside what /folder serves; reported below
  const name = entry || `${path.slice(directory.length).replace(/\.vmx$/i, '')}.nvram`;
  return `[${datastore}] ${directory}${name}`;
}

async function readVmFile(files: DatastoreFiles, file: string, signal?: AbortSignal): Promise<StoredVmFile | null> {
  const { datastore, path } = parseDatastorePath(file);
  let body: Buffer;
  try {
    const reply = await files.getSmall(files.remote(datastore, path), maxVmFileBytes + 1, signal);
    body = reply.body;
  } catch (error) {
    const status = error instanceof VcbtError ? error.context.status : undefined;
    if (status === 404) return null;
    if (status === 416) body = Buffer.alloc(0); // a range of an empty file
    else throw error;
  }
  if (body.length > maxVmFileBytes) throw new VcbtError('HTTP_SIZE', `${file} is larger than ${maxVmFileBytes} bytes`, { file });
  return { path: file, sizeBytes: body.length, sha256: createHash('sha256').update(body).digest('hex'), base64: body.toString('base64') };
}

/** The .vmx and .nvram files of a VM whose .vmx is `vmPathName`. */
export async function readVmFiles(session: VsphereSession, datacenter: string, vmPathName: string, signal?: AbortSignal): Promise<StoredVmFiles> {
  const files = new DatastoreFiles({ access: datastoreAccess(session), datacenter, file: vmPathName, capacityBytes: 0 });
  const found: StoredVmFiles = { vmx: null, nvram: null, problem: null };
  try {
    found.vmx = await readVmFile(files, vmPathName, signal);
    if (!found.vmx) {
      found.problem = `${vmPathName} was not found on the datastore`;
      return found;
    }
    const nvram = nvramPathOf(vmPathName, Buffer.from(found.vmx.base64, 'base64').toString('utf8'));
    if (!nvram.startsWith('[')) {
      found.problem = `the NVRAM file ${nvram} is outside the VM's datastore folder`;
      return found;
    }
    found.nvram = await readVmFile(files, nvram, signal);
    if (!found.nvram) found.problem = `${nvram} was not found on the datastore`;
  } catch (error) {
    signal?.throwIfAborted();
    found.problem = error instanceof Error ? error.message : String(error);
  }
  return found;
}

/** The VM's configuration at `snapshot` and its .vmx/.nvram files. */
export async function captureVm(session: VsphereSession, vm: { name: string; moref: MoRef }, snapshot: MoRef, datacenter: string, signal?: AbortSignal): Promise<VmCapture> {
  const configuration = await readVmConfig(session, snapshot, vm);
  const files = configuration.vmPathName ? await readVmFiles(session, datacenter, configuration.vmPathName, signal) : { vmx: null, nvram: null, problem: 'the VM has no .vmx path' };
  return { configuration, files };
}

/** The capture a manifest holds, or null for a point written before captures were recorded (or by another writer). */
export function storedVmCapture(manifest: { vmConfig: unknown }): VmCapture | null {
  const config = manifest.vmConfig as { configuration?: unknown; files?: unknown } | null;
  if (!config || typeof config !== 'object') return null;
  const configuration = config.configuration as VmConfiguration | undefined;
  if (!configuration || typeof configuration !== 'object' || !Array.isArray(configuration.disks) || !Array.isArray(configuration.nics)) return null;
  const files = (config.files as StoredVmFiles | undefined) ?? { vmx: null, nvram: null, problem: 'not recorded' };
  return { configuration, files };
}

/** What `vcbt points` shows of a stored configuration. */
export interface VmHardwareSummary {
  hardwareVersion: string;
  guestId: string;
  firmware: VmConfiguration['firmware'];
  secureBoot: boolean;
  numCpu: number;
  coresPerSocket: number;
  memoryMiB: number;
  disks: Array<{ key: number; capacityBytes: number; controller: string; provisioning: string; mode: string }>;
  nics: Array<{ key: number; adapterType: string; network: string | null; macAddress: string | null; addressType: string }>;
  /** Whether the .vmx and .nvram files are stored. */
  vmxStored: boolean;
  nvramStored: boolean;
}

/** The network a NIC is on, by name (the key of a distributed port group whose name is unknown). */
export function networkName(network: VmConfiguration['nics'][number]['network']): string | null {
  if (network.kind === 'none') return null;
  if (network.kind === 'network') return network.name;
  if (network.kind === 'distributed') return network.name ?? network.portgroupKey;
  return network.name ?? network.opaqueNetworkId;
}

export function summarizeCapture(capture: VmCapture): VmHardwareSummary {
  const c = capture.configuration;
  const controllers = new Map(c.controllers.map((ctl) => [ctl.key, ctl]));
  return {
    hardwareVersion: c.hardwareVersion,
    guestId: c.guestId,
    firmware: c.firmware,
    secureBoot: c.secureBoot,
    numCpu: c.numCpu,
    coresPerSocket: c.coresPerSocket,
    memoryMiB: c.memoryMiB,
    disks: c.disks.map((d) => {
      const ctl = d.controllerKey === null ? undefined : controllers.get(d.controllerKey);
      return { key: d.key, capacityBytes: d.capacityBytes, controller: ctl ? `${ctl.bus}${ctl.busNumber}:${d.unitNumber ?? '?'}` : 'unknown', provisioning: d.provisioning, mode: d.mode };
    }),
    nics: c.nics.map((n) => ({ key: n.key, adapterType: n.adapterType, network: networkName(n.network), macAddress: n.macAddress, addressType: n.addressType })),
    vmxStored: capture.files.vmx !== null,
    nvramStored: capture.files.nvram !== null,
  };
}
