// Opening a VM disk as it was at a snapshot, through one of the transports:
//
// - http: datastore `/folder` range reads of the snapshot's flat extent or, when the VM had
//   snapshots before ours, of its vmfsSparse/SEsparse delta chain (no VDDK needed).
// - nbd:  an NBD server the operator runs that exposes the snapshot's disks; its URI comes
//   from a template with placeholders {vm} (moref), {snapshot} (moref), {disk} (device key),
//   {file} (datastore path, URI-encoded) and {datastore}.
// - vddk: vcbt starts nbdkit's vddk plugin for the disk (src/vddk) and reads its export.
// - file: the datastore is mounted on this host (NFS, or a hot-added disk): the flat
//   extent is read as a local file; `--datastore-dir NAME=PATH` maps datastores to mounts.
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { VcbtError } from '../errors.ts';
import type { DiskReader } from '../transport/disk.ts';
import { openDatastoreDisk, type DatastoreAccess } from '../transport/datastore-http.ts';
import { openDisk } from '../transport/open-disk.ts';
import { openReconnectingReader } from '../transport/reconnecting-reader.ts';
import { openFileDisk } from '../transport/file-disk.ts';
import { parseDatastorePath, parseVmdkDescriptor } from '../vmdk/descriptor.ts';
import { checkVddk, launchVddk } from '../vddk/launcher.ts';
import type { MoRef, VsphereSession } from '../vsphere/vsphere.ts';
import type { VirtualDiskInfo, VmIdentity } from '../vsphere/inventory.ts';

export const transportNames = ['http', 'nbd', 'vddk', 'file'] as const;
export type TransportName = (typeof transportNames)[number];

/** Default inactivity deadline of one network read (see TransportOptions.ioTimeoutMs). */
export const DEFAULT_IO_TIMEOUT_MS = 60_000;

export interface TransportOptions {
  transport: TransportName;
  /** nbd: URI template, e.g. `nbd://backup-proxy:10809/{snapshot}/{disk}`. */
  nbdUriTemplate?: string;
  /** vddk: VDDK distribution directory, user and password for nbdkit, nbdkit path. */
  vddk?: { libdir: string; user: string; password: string; transports?: string[]; nbdkitPath?: string };
  /** file: datastore name -> local directory where it is mounted. */
  datastoreDirs?: ReadonlyMap<string, string>;
  /** NBD: connections to open (when the server allows multi-conn). */
  connections?: number;
  /**
   * Longest wait for progress on one read (no byte arriving) before the read counts as
   * failed and goes through the transport's retry/resume path; default
   * DEFAULT_IO_TIMEOUT_MS. A stalled peer must never keep the VM's snapshot open for long.
   */
  ioTimeoutMs?: number;
  /** Told when a cut NBD connection is reopened (to log it). */
  onReconnect?: (cause: unknown, attempt: number) => void;
}

export interface SnapshotDiskRef {
  session: VsphereSession;
  vm: VmIdentity;
  snapshot: MoRef;
  disk: VirtualDiskInfo;
  datacenter: string;
  signal?: AbortSignal;
}

export class TransportError extends VcbtError {}

function sourceLabel(ref: SnapshotDiskRef): string {
  return `VM "${ref.vm.name}" disk ${ref.disk.key} at ${ref.snapshot.value}`;
}

export function expandNbdTemplate(template: string, ref: Pick<SnapshotDiskRef, 'vm' | 'snapshot' | 'disk'>): string {
  const { datastore } = parseDatastorePath(ref.disk.fileName);
  const values: Record<string, string> = {
    vm: ref.vm.moref.value,
    snapshot: ref.snapshot.value,
    disk: String(ref.disk.key),
    file: encodeURIComponent(ref.disk.fileName),
    datastore: encodeURIComponent(datastore),
  };
  return template.replace(/\{(\w+)\}/g, (whole, name: string) => {
    const value = values[name];
    if (value === undefined) throw new TransportError('TRANSPORT_OPTIONS', `unknown placeholder ${whole} in --nbd-uri template "${template}" (known: {vm} {snapshot} {disk} {file} {datastore})`, { template });
    return value;
  });
}

async function openFromMountedDatastore(ref: SnapshotDiskRef, dirs: ReadonlyMap<string, string>): Promise<DiskReader> {
  const { datastore, path } = parseDatastorePath(ref.disk.fileName);
  const root = dirs.get(datastore);
  if (!root) {
    throw new TransportError('TRANSPORT_OPTIONS', `${sourceLabel(ref)}: datastore "${datastore}" has no --datastore-dir mapping (have: ${[...dirs.keys()].join(', ') || 'none'})`, { datastore });
  }
  const descriptorPath = join(root, path);
  const descriptor = parseVmdkDescriptor(await readFile(descriptorPath, 'latin1'), descriptorPath);
  if (descriptor.extents.length !== 1 || descriptor.capacityBytes !== ref.disk.capacityBytes) {
    throw new TransportError('TRANSPORT_UNSUPPORTED', `${descriptorPath}: ${descriptor.extents.length} extents totalling ${descriptor.capacityBytes} bytes; the file transport reads one flat extent of the disk's ${ref.disk.capacityBytes} bytes`, { path: descriptorPath });
  }
  const [extent] = descriptor.extents;
  const directory = path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '';
  const disk = await openFileDisk(join(root, directory, extent.file), {});
  if (extent.fileOffsetBytes === 0 && disk.sizeBytes === descriptor.capacityBytes) return disk;
  await disk.close();
  throw new TransportError('TRANSPORT_UNSUPPORTED', `${descriptorPath}: flat extent ${extent.file} is ${disk.sizeBytes} bytes at offset ${extent.fileOffsetBytes}, expected ${descriptor.capacityBytes} at 0`, { path: descriptorPath });
}

/** The same reader, also stopping `extra` (the nbdkit process behind it) when closed. */
function withExtraClose(disk: DiskReader, extra: () => Promise<void>): DiskReader {
  const allocation = disk.allocation?.bind(disk);
  return {
    sizeBytes: disk.sizeBytes,
    read: (offsetBytes, target, signal) => disk.read(offsetBytes, target, signal),
    ...(allocation ? { allocation } : {}),
    close: async () => {
      try {
        await disk.close();
      } finally {
        await extra();
      }
    },
  };
}

/**
 * What a transport needs that can be checked before a snapshot exists: the vddk transport's
 * VDDK and nbdkit, the file transport's mounted datastore directories.
 */
export async function checkTransport(options: TransportOptions): Promise<void> {
  if (options.transport === 'vddk') {
    if (!options.vddk) throw new TransportError('TRANSPORT_OPTIONS', 'the vddk transport needs --vddk-libdir', {});
    await checkVddk(options.vddk.libdir, options.vddk.nbdkitPath);
  }
  if (options.transport === 'file') {
    for (const [datastore, dir] of options.datastoreDirs ?? []) {
      const info = await stat(dir).catch(() => undefined);
      if (!info?.isDirectory()) throw new TransportError('TRANSPORT_OPTIONS', `--datastore-dir ${datastore}=${dir}: not a directory here`, { datastore, dir });
    }
  }
}

/** The session's datastore `/folder` access: its origin, TLS-checked agent and cookie. */
export function datastoreAccess(session: VsphereSession): DatastoreAccess {
  return {
    origin: new URL(session.sdkUrl.origin),
    agent: session.agent,
    cookieHeader: () => session.cookieHeader(),
    reauthenticate: () => session.relogin(),
  };
}

/** Opens the disk at the snapshot for reading with the chosen transport. */
export async function openSnapshotDisk(ref: SnapshotDiskRef, options: TransportOptions): Promise<DiskReader> {
  let reader: DiskReader;
  switch (options.transport) {
    case 'http': {
      const session = ref.session;
      reader = await openDatastoreDisk(
        {
          access: datastoreAccess(session),
          datacenter: ref.datacenter,
          file: ref.disk.fileName,
          capacityBytes: ref.disk.capacityBytes,
          ioTimeoutMs: options.ioTimeoutMs,
          label: `VM "${ref.vm.name}" disk ${ref.disk.key}`,
        },
        ref.signal,
      );
      break;
    }
    case 'nbd': {
      if (!options.nbdUriTemplate) throw new TransportError('TRANSPORT_OPTIONS', 'the nbd transport needs --nbd-uri (a template such as nbd://proxy/{snapshot}/{disk})', {});
      const uri = expandNbdTemplate(options.nbdUriTemplate, ref);
      // A cut NBD connection is reopened and the failed reads repeated (reads are idempotent).
      reader = await openReconnectingReader((signal) => openDisk(uri, { connections: options.connections, ioTimeoutMs: options.ioTimeoutMs, signal: signal ?? ref.signal }), { onReconnect: options.onReconnect });
      break;
    }
    case 'vddk': {
      const vddk = options.vddk;
      if (!vddk) throw new TransportError('TRANSPORT_OPTIONS', 'the vddk transport needs --vddk-libdir', {});
      const exported = await launchVddk(
        {
          server: ref.session.sdkUrl.hostname,
          user: vddk.user,
          password: vddk.password,
          thumbprintSha1: (await ref.session.serverFingerprints()).sha1,
          vmMoref: ref.vm.moref.value,
          snapshotMoref: ref.snapshot.value,
          file: ref.disk.fileName,
          libdir: vddk.libdir,
          transports: vddk.transports,
        },
        { nbdkitPath: vddk.nbdkitPath, signal: ref.signal },
      );
      try {
        const disk = await openReconnectingReader((signal) => openDisk(exported.uri, { connections: options.connections, ioTimeoutMs: options.ioTimeoutMs, signal: signal ?? ref.signal }), { onReconnect: options.onReconnect });
        reader = withExtraClose(disk, () => exported.close());
      } catch (error) {
        await exported.close();
        throw error;
      }
      break;
    }
    case 'file':
      reader = await openFromMountedDatastore(ref, options.datastoreDirs ?? new Map());
      break;
  }
  if (reader.sizeBytes < ref.disk.capacityBytes) {
    await reader.close();
    throw new TransportError('TRANSPORT_SIZE', `${sourceLabel(ref)}: the ${options.transport} source has ${reader.sizeBytes} bytes, the disk ${ref.disk.capacityBytes}`, { transport: options.transport });
  }
  return reader;
}
