// An NBD export as a disk: the NbdClient already has DiskReader/DiskWriter's shape; this
// checks what the caller needs (writable) when opening. allocation() answers from
// base:allocation block status, or "all data" when the server offers none.

import { NbdClient, type NbdClientOptions } from '../nbd/client.ts';
import { NbdError } from '../nbd/errors.ts';
import type { Disk } from './disk.ts';

export interface NbdDiskOptions extends NbdClientOptions {
  writable?: boolean;
}

export async function openNbdDisk(uri: string, options: NbdDiskOptions = {}): Promise<NbdClient & Disk> {
  const client = await NbdClient.connect(uri, options);
  if (options.writable && client.readOnly) {
    await client.close();
    throw new NbdError('NBD_UNSUPPORTED', `${client.uri}: the export is read-only but was opened for writing`, { server: client.uri });
  }
  return client;
}
