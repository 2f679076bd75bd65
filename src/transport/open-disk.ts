// openDisk: the transport for a URI or path. nbd://, nbds://, nbd+unix://, nbds+unix:// go to
// the NBD client; anything else without a scheme is a local file.

import { VcbtError } from '../errors.ts';
import { isNbdUri } from '../nbd/uri.ts';
import type { NbdTlsOptions } from '../nbd/tls.ts';
import type { Disk, DiskReader } from './disk.ts';
import { openFileDisk } from './file-disk.ts';
import { openNbdDisk } from './nbd-disk.ts';

export interface OpenDiskOptions {
  writable?: boolean;
  /** Local files opened writable: create when missing. */
  create?: boolean;
  /** Local files opened writable: extend (sparse) to this size. */
  sizeBytes?: number;
  /** nbds:// URIs: how to trust the server. */
  tls?: NbdTlsOptions;
  /** NBD: connections to open when the server allows multi-conn. */
  connections?: number;
  /** NBD: inactivity deadline of the handshake and of every request (default 60 s). */
  ioTimeoutMs?: number;
  signal?: AbortSignal;
}

export function openDisk(uriOrPath: string, options: OpenDiskOptions & { writable: true }): Promise<Disk>;
export function openDisk(uriOrPath: string, options?: OpenDiskOptions): Promise<DiskReader>;
export async function openDisk(uriOrPath: string, options: OpenDiskOptions = {}): Promise<DiskReader> {
  if (isNbdUri(uriOrPath)) {
    return openNbdDisk(uriOrPath, { writable: options.writable, tls: options.tls, connections: options.connections, ioTimeoutMs: options.ioTimeoutMs, signal: options.signal });
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(uriOrPath)) {
    throw new VcbtError('DISK_URI', `cannot open "${uriOrPath}": unsupported scheme (use a file path, nbd://, nbds:// or nbd+unix://)`, { uri: uriOrPath });
  }
  return openFileDisk(uriOrPath, { writable: options.writable, create: options.create, sizeBytes: options.sizeBytes });
}
