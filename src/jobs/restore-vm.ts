// The restore-vm job: a restore point back into vSphere as a new VM, without VDDK (transport
// `nfc`), built from the configuration the backup stored with the point (vm-capture.ts).
//
// Before anything is created, every check that can fail: the point has a configuration
// (RESTORE_VM_NO_CONFIG), the name is free (VM_EXISTS), every NIC's network exists on the
// target or is mapped (NETWORK_NOT_FOUND, listing the networks found), the placement exists
// (PLACEMENT_NOT_FOUND), the datastore has room (DATASTORE_SPACE: the disks' capacities when
// thick, their stored non-zero bytes when thin).
//
// Then: an OVF descriptor of the configuration (src/vsphere/ovf.ts) -> CreateImportSpec ->
// ImportVApp (the VM exists from here) -> each disk of the point streamed as a
// streamOptimized VMDK made on the fly from the repository (src/vmdk/stream-optimized.ts;
// zero chunks emit no grains) to its lease URL, HttpNfcLeaseProgress keeping the lease alive
// -> HttpNfcLeaseComplete -> ReconfigVM_Task for what OVF does not carry (cores per socket,
// firmware, secure boot, annotation, extraConfig, MACs with --keep-mac) -> the stored .nvram
// PUT next to the new .vmx -> power on when asked.
//
// Any failure before HttpNfcLeaseComplete aborts the lease (vSphere removes the VM); a
// failure after it destroys the new VM. Nothing half-made stays in the inventory.
import { UsageError, VcbtError } from '../errors.ts';
import type { Repository } from '../repository/repository.ts';
import type { RestoredDisk } from '../repository/restored-disk.ts';
import { DatastoreFiles } from '../transport/datastore-http.ts';
import { parseDatastorePath } from '../vmdk/descriptor.ts';
import { encodeStreamOptimized, type StreamStats } from '../vmdk/stream-optimized.ts';
import {
  applyConfiguration,
  buildOvfDescriptor,
  createVm,
  createImportSpec,
  destroyVm,
  importVApp,
  isVsphereFault,
  leaseAbort,
  leaseComplete,
  leaseProgress,
  listNetworks,
  powerOnVm,
  readVm,
  readVmConfig,
  resolvePlacement,
  uploadToLease,
  vmNamed,
  waitForLease,
  type MoRef,
  type NetworkInfo,
  type ResolvedPlacement,
  type VmConfiguration,
  type VsphereSession,
} from '../vsphere/vsphere.ts';
import { writePointToNewVm } from './point-to-new-vm.ts';
import { resolvePointId } from './restore-points.ts';
import { datastoreAccess } from './snapshot-source.ts';
import { networkName, nvramPathOf, storedVmCapture, type VmCapture } from './vm-capture.ts';

export class RestoreVmError extends VcbtError {}

export type RestoreVmTransport = 'nfc' | 'nbd';

export interface RestoreVmOptions {
  session: VsphereSession;
  repository: Repository;
  /** A restore point id or `latest` (with `vm`). */
  point: string;
  vm?: string;
  name: string;
  /** Default: the datastore of the point's first disk. */
  datastore?: string;
  folder?: string;
  resourcePool?: string;
  host?: string;
  /** Source network name -> target network name. */
  networkMap?: ReadonlyMap<string, string>;
  diskProvisioning?: 'thin' | 'thick';
  keepMac?: boolean;
  powerOn?: boolean;
  /** nfc (default): an OVF import; nbd: CreateVM_Task, then writes through `nbdUriTemplate`. */
  transport?: RestoreVmTransport;
  /** transport nbd: a writable NBD export of the new VM's disks ({vm} {disk} {file} {datastore}). */
  nbdUriTemplate?: string;
  /** Seconds between HttpNfcLeaseProgress calls while uploading (default 30). */
  leaseKeepAliveMs?: number;
  signal?: AbortSignal;
  onEvent?: (line: string) => void;
  /** Per source disk key: bytes of the disk encoded and sent so far. */
  onProgress?: (deviceKey: number, doneBytes: number, totalBytes: number) => void;
}

export interface RestoreVmDiskResult {
  /** Device key of the new VM's disk. */
  key: number;
  /** Device key in the restore point. */
  sourceKey: number;
  capacityBytes: number;
  /** Bytes sent: the streamOptimized VMDK uploaded (nfc), or the data written (nbd: zero chunks are not written). */
  bytesWritten: number;
  grainsWritten: number;
  grainsZero: number;
}

export interface RestoreVmResult {
  pointId: string;
  vm: { name: string; moref: string; instanceUuid: string | null };
  disks: RestoreVmDiskResult[];
  transport: RestoreVmTransport;
  datastore: string;
  poweredOn: boolean;
  nvramRestored: boolean;
  /** Warnings of CreateImportSpec and of the steps after the upload. */
  warnings: string[];
  elapsedMs: number;
}

/** Each NIC's target network name; NETWORK_NOT_FOUND when one has none on the target. */
export function mapNetworks(config: VmConfiguration, available: readonly NetworkInfo[], mapping: ReadonlyMap<string, string>): Map<number, { name: string; network: MoRef }> {
  const byName = new Map(available.map((n) => [n.name, n.moref]));
  const out = new Map<number, { name: string; network: MoRef }>();
  const missing: string[] = [];
  for (const nic of config.nics) {
    const source = networkName(nic.network);
    if (source === null) continue;
    const wanted = mapping.get(source) ?? source;
    const network = byName.get(wanted);
    if (!network) {
      missing.push(mapping.has(source) ? `"${wanted}" (mapped from "${source}")` : `"${source}"`);
      continue;
    }
    out.set(nic.key, { name: wanted, network });
  }
  for (const source of mapping.keys()) {
    if (!config.nics.some((n) => networkName(n.network) === source)) {
      throw new UsageError(`--network ${source}=...: no NIC of the restore point is on network "${source}" (its NICs are on: ${[...new Set(config.nics.map((n) => networkName(n.network) ?? 'none'))].join(', ') || 'no NICs'})`, { network: source });
    }
  }
  if (missing.length > 0) {
    const found = available.map((n) => n.name);
    throw new RestoreVmError('NETWORK_NOT_FOUND', `network ${missing.join(', ')} does not exist on the target; map it with --network OLD=NEW; networks found: ${found.join(', ') || 'none'}`, { missing, found });
  }
  return out;
}

/** Bytes the disks need on the datastore: capacities (thick), or the non-zero stored bytes (thin). */
async function requiredBytes(disks: readonly RestoredDisk[], thin: boolean): Promise<number> {
  let total = 0;
  for (const disk of disks) {
    if (!thin) {
      total += disk.sizeBytes;
      continue;
    }
    for (const extent of await disk.allocation({ offsetBytes: 0, lengthBytes: disk.sizeBytes })) if (!extent.zero) total += extent.lengthBytes;
  }
  return total;
}

function defaultDatastore(capture: VmCapture): string {
  const first = capture.configuration.disks[0]?.fileName ?? capture.configuration.vmPathName;
  return parseDatastorePath(first).datastore;
}

export async function restoreVm(options: RestoreVmOptions): Promise<RestoreVmResult> {
  const started = performance.now();
  const { session, repository, signal } = options;
  const log = options.onEvent ?? (() => {});
  const pointId = await resolvePointId(repository, options.point, options.vm);
  const manifest = await repository.readManifest(pointId);
  const capture = storedVmCapture(manifest);
  if (!capture) throw new RestoreVmError('RESTORE_VM_NO_CONFIG', `restore point ${pointId} has no VM configuration (it was written before vcbt recorded one); restore its disks with vcbt restore`, { pointId });
  const config = capture.configuration;
  const pointDisks = manifest.disks.filter((d) => config.disks.some((c) => c.key === d.deviceKey));
  if (pointDisks.length === 0) throw new RestoreVmError('RESTORE_VM_NO_CONFIG', `restore point ${pointId} holds none of the VM's disks`, { pointId });

  // Every check that can fail, before anything is created.
  const existing = await vmNamed(session, options.name);
  if (existing) throw new RestoreVmError('VM_EXISTS', `a VM named "${options.name}" already exists (${existing.value}); pick another --name`, { name: options.name, moref: existing.value });
  const networks = mapNetworks(config, await listNetworks(session), options.networkMap ?? new Map());
  const source = manifest.source as { datacenter?: unknown } | null;
  const placement: ResolvedPlacement = await resolvePlacement(session, {
    preferredDatacenter: typeof source?.datacenter === 'string' ? source.datacenter : undefined,
    datastore: options.datastore ?? defaultDatastore(capture),
    folder: options.folder,
    resourcePool: options.resourcePool,
    host: options.host,
  });
  const restored: RestoredDisk[] = [];
  try {
    for (const disk of pointDisks) restored.push(await repository.openDisk(pointId, disk.deviceKey));
    const thin = options.diskProvisioning !== 'thick';
    const needBytes = await requiredBytes(restored, thin);
    if (needBytes > placement.datastore.freeBytes) {
      throw new RestoreVmError('DATASTORE_SPACE', `datastore ${placement.datastore.name} has ${placement.datastore.freeBytes} bytes free; the ${thin ? 'thin' : 'thick'} disks need ${needBytes}`, {
        datastore: placement.datastore.name,
        freeBytes: placement.datastore.freeBytes,
        neededBytes: needBytes,
      });
    }
    log(`restoring restore point ${pointId} as VM "${options.name}" on datastore ${placement.datastore.name} (${restored.length} disk(s), ${needBytes} bytes needed, ${placement.datastore.freeBytes} free)`);

    const made = options.transport === 'nbd'
      ? await createAndWrite(options, { pointId, config, placement, thin, log })
      : await importAndUpload(options, { config, placement, networks, pointDisks, restored, thin, log });
    const uploaded = made;
    const spec = { warnings: made.warnings };
    const vmRef = { name: options.name, moref: uploaded.entity };
    try {
      await applyConfiguration(session, vmRef, config, { keepMac: options.keepMac ?? false, signal });
      const nvramRestored = await putNvram(session, placement, vmRef, capture, signal);
      let poweredOn = false;
      if (options.powerOn) {
        await powerOnVm(session, vmRef, signal);
        poweredOn = true;
      }
      const info = await readVm(session, uploaded.entity);
      const newConfig = await readVmConfig(session, uploaded.entity, vmRef);
      return {
        pointId,
        vm: { name: info.name, moref: info.moref.value, instanceUuid: info.instanceUuid ?? null },
        disks: uploaded.disks.map((d, i) => ({ ...d, key: newConfig.disks[i]?.key ?? d.key })),
        transport: options.transport ?? 'nfc',
        datastore: placement.datastore.name,
        poweredOn,
        nvramRestored,
        warnings: spec.warnings,
        elapsedMs: performance.now() - started,
      };
    } catch (error) {
      log(`VM "${options.name}" (${uploaded.entity.value}) is removed again: ${(error as Error).message}`);
      await destroyVm(session, vmRef).catch((cleanup: unknown) => log(`removing VM ${uploaded.entity.value} failed too: ${(cleanup as Error).message}`));
      throw error;
    }
  } finally {
    for (const disk of restored) await disk.close();
  }
}

interface ImportContext {
  config: VmConfiguration;
  placement: ResolvedPlacement;
  networks: Map<number, { name: string; network: MoRef }>;
  pointDisks: ReadonlyArray<{ deviceKey: number }>;
  restored: readonly RestoredDisk[];
  thin: boolean;
  log: (line: string) => void;
}

interface MadeVm {
  entity: MoRef;
  disks: RestoreVmDiskResult[];
  warnings: string[];
}

/** Transport nfc: OVF descriptor, ImportVApp, every disk uploaded as a streamOptimized VMDK. */
async function importAndUpload(options: RestoreVmOptions, context: ImportContext): Promise<MadeVm> {
  const { session } = options;
  const { config, placement, networks, pointDisks, restored, thin, log } = context;
  const files = pointDisks.map((d) => ({ key: d.deviceKey, fileName: `${options.name}-disk${d.deviceKey}.vmdk` }));
  const ovf = buildOvfDescriptor(config, { name: options.name, disks: files, keepMac: options.keepMac ?? false, nicNetworks: new Map([...networks].map(([key, n]) => [key, n.name])) });
  const spec = await createImportSpec(session, ovf, { resourcePool: placement.resourcePool, datastore: placement.datastore.moref, folder: placement.folder, host: placement.host }, {
    entityName: options.name,
    networkMapping: [...new Map([...networks.values()].map((n) => [n.name, n])).values()].map((n) => ({ name: n.name, network: n.network })),
    diskProvisioning: thin ? 'thin' : 'thick',
  });
  for (const warning of spec.warnings) log(`import warning: ${warning}`);

  let lease: MoRef;
  try {
    lease = await importVApp(session, spec, { resourcePool: placement.resourcePool, datastore: placement.datastore.moref, folder: placement.folder, host: placement.host });
  } catch (error) {
    if (isVsphereFault(error, 'DuplicateName')) throw new RestoreVmError('VM_EXISTS', `vSphere refused the name "${options.name}": a VM of that name exists`, { name: options.name }, { cause: error });
    if (isVsphereFault(error, 'NoDiskSpace') || isVsphereFault(error, 'InsufficientResourcesFault') || isVsphereFault(error, 'InsufficientStorageSpace')) {
      throw new RestoreVmError('DATASTORE_SPACE', `vSphere refused the import for lack of space on ${placement.datastore.name}: ${(error as Error).message}`, { datastore: placement.datastore.name }, { cause: error });
    }
    throw error;
  }
  const uploaded = await uploadDisks(options, lease, spec.fileItems, files, restored, log);
  return { entity: uploaded.entity, disks: uploaded.disks, warnings: spec.warnings };
}

/**
 * Transport nbd: CreateVM_Task with empty disks of the stored configuration (same device keys),
 * then every disk of the point written through a writable NBD export of the new VM's disks,
 * data chunks only (point-to-new-vm.ts). A failure after the VM exists destroys it.
 */
async function createAndWrite(options: RestoreVmOptions, context: { pointId: string; config: VmConfiguration; placement: ResolvedPlacement; thin: boolean; log: (line: string) => void }): Promise<MadeVm> {
  const { session, repository, signal } = options;
  if (!options.nbdUriTemplate) throw new UsageError('restore-vm --transport nbd needs --nbd-uri TEMPLATE: a writable NBD export of the new VM\'s disks');
  const entity = await createVm(session, context.placement, { name: options.name, config: context.config, keepMac: options.keepMac ?? false, thin: context.thin, networkMap: options.networkMap }, signal);
  try {
    const vm = await readVm(session, entity);
    context.log(`VM "${options.name}" (${entity.value}) created with empty disks; writing the restore point's data through ${options.nbdUriTemplate}`);
    const written = await writePointToNewVm({ session, repository, pointId: context.pointId, vm, nbdUriTemplate: options.nbdUriTemplate, signal, onProgress: options.onProgress });
    return { entity, disks: written.map((d) => ({ key: d.key, sourceKey: d.key, capacityBytes: d.capacityBytes, bytesWritten: d.bytesWritten, grainsWritten: 0, grainsZero: 0 })), warnings: [] };
  } catch (error) {
    context.log(`VM "${options.name}" (${entity.value}) is removed again: ${(error as Error).message}`);
    await destroyVm(session, { name: options.name, moref: entity }).catch((cleanup: unknown) => context.log(`removing VM ${entity.value} failed too: ${(cleanup as Error).message}`));
    throw error;
  }
}

/** Uploads every disk to its lease URL; aborts the lease on any failure. */
async function uploadDisks(
  options: RestoreVmOptions,
  lease: MoRef,
  fileItems: ReadonlyArray<{ deviceId: string; path: string }>,
  files: ReadonlyArray<{ key: number; fileName: string }>,
  restored: readonly RestoredDisk[],
  log: (line: string) => void,
): Promise<{ entity: MoRef; disks: RestoreVmDiskResult[] }> {
  const { session, signal } = options;
  const totalBytes = restored.reduce((sum, d) => sum + d.sizeBytes, 0);
  let doneBytes = 0;
  let keepAlive: NodeJS.Timeout | undefined;
  let keepAliveFailure: Error | undefined;
  try {
    const ready = await waitForLease(session, lease, signal);
    const percent = () => (totalBytes === 0 ? 100 : (doneBytes / totalBytes) * 100);
    keepAlive = setInterval(() => {
      leaseProgress(session, lease, percent()).catch((error: unknown) => (keepAliveFailure ??= error as Error));
    }, options.leaseKeepAliveMs ?? 30_000);
    keepAlive.unref();
    const disks: RestoreVmDiskResult[] = [];
    for (const [i, file] of files.entries()) {
      signal?.throwIfAborted();
      if (keepAliveFailure) throw keepAliveFailure;
      const item = fileItems.find((f) => f.path === file.fileName);
      const device = item ? ready.devices.find((d) => d.importKey === item.deviceId) : undefined;
      if (!device) throw new RestoreVmError('OVF_IMPORT_SPEC', `the import lease has no device URL for ${file.fileName}`, { file: file.fileName });
      const disk = restored[i];
      const stats: StreamStats = { streamBytes: 0, grainsWritten: 0, grainsZero: 0 };
      const before = doneBytes;
      log(`disk ${file.key}: uploading ${disk.sizeBytes} bytes as a streamOptimized VMDK to ${device.url.host}`);
      await leaseProgress(session, lease, percent());
      const stream = encodeStreamOptimized(disk, {
        fileName: file.fileName,
        signal,
        onProgress: (bytes) => {
          doneBytes = before + bytes;
          options.onProgress?.(file.key, bytes, disk.sizeBytes);
        },
      }, stats);
      await uploadToLease(session, device, stream, { signal });
      doneBytes = before + disk.sizeBytes;
      log(`disk ${file.key}: ${stats.streamBytes} bytes sent (${stats.grainsWritten} grains, ${stats.grainsZero} zero grains skipped)`);
      disks.push({ key: file.key, sourceKey: file.key, capacityBytes: disk.sizeBytes, bytesWritten: stats.streamBytes, grainsWritten: stats.grainsWritten, grainsZero: stats.grainsZero });
    }
    clearInterval(keepAlive);
    if (keepAliveFailure) throw keepAliveFailure;
    await leaseProgress(session, lease, 100);
    await leaseComplete(session, lease);
    return { entity: ready.entity, disks };
  } catch (error) {
    clearInterval(keepAlive);
    const reason = error instanceof Error ? error.message : String(error);
    await leaseAbort(session, lease, reason.slice(0, 500)).catch(() => undefined);
    log(`import of "${options.name}" aborted: ${reason}`);
    throw error;
  }
}

/** PUTs the stored .nvram as the new VM's; false when none was stored. */
async function putNvram(session: VsphereSession, placement: ResolvedPlacement, vm: { name: string; moref: MoRef }, capture: VmCapture, signal?: AbortSignal): Promise<boolean> {
  const nvram = capture.files.nvram;
  if (!nvram) return false;
  const vmPathName = (await readVmConfig(session, vm.moref, vm)).vmPathName;
  const target = nvramPathOf(vmPathName, '');
  const { datastore, path } = parseDatastorePath(target);
  const files = new DatastoreFiles({ access: datastoreAccess(session), datacenter: placement.datacenter.name, file: target, capacityBytes: 0 });
  await files.putSmall(files.remote(datastore, path), Buffer.from(nvram.base64, 'base64'), signal);
  return true;
}
