// Reading a disk whose snapshot sits on a delta chain (the VM had snapshots before vcbt's)
// over datastore HTTP: src/vmdk composes the chain; this file gives it the "read bytes of
// file X" seam over `/folder` ranged GETs (DatastoreFiles: keep-alive agent, resume after a
// cut, inactivity deadline, cookie renewal), and presents the chain as a DiskReader.
//
// File names inside the chain are paths inside the snapshot descriptor's datastore; an
// absolute parent hint `/vmfs/volumes/<datastore>/<path>` is mapped to that datastore by name.
import { posix } from 'node:path';
import { VcbtError } from '../errors.ts';
import { openVmdkChain, type VmdkChain } from '../vmdk/chain.ts';
import { parseDatastorePath } from '../vmdk/descriptor.ts';
import type { VmdkFile, VmdkFiles } from '../vmdk/files.ts';
import type { DiskReader } from './disk.ts';
import type { DatastoreDiskOptions, DatastoreFiles, RemoteFile } from './datastore-http.ts';
import { checkDiskRange } from './range.ts';

/** Metadata of a chain is small; a size probe asks for one byte to learn the file's size. */
const probeBytes = 1;

function datastoreFiles(files: DatastoreFiles, datastore: string): VmdkFiles {
  const locate = (name: string): RemoteFile => {
    const absolute = /^\/vmfs\/volumes\/([^/]+)\/(.+)$/.exec(name);
    if (absolute) return files.remote(absolute[1], absolute[2]);
    if (posix.isAbsolute(name)) {
      throw new VcbtError('VMDK_DESCRIPTOR', `${files.name}: "${name}" is neither inside the datastore nor under /vmfs/volumes/<datastore>/`, { file: name, offsetBytes: 0 });
    }
    return files.remote(datastore, posix.normalize(name));
  };
  return {
    async readText(name, maxBytes, signal) {
      return (await files.getSmall(locate(name), maxBytes, signal)).body.toString('latin1');
    },
    async open(name, signal): Promise<VmdkFile> {
      const remote = locate(name);
      const probe = await files.getSmall(remote, probeBytes, signal);
      if (probe.totalBytes === undefined || !Number.isSafeInteger(probe.totalBytes)) {
        throw new VcbtError('HTTP_STATUS', `${files.name}: GET ${remote.file} told no file size (Content-Range)`, { file: remote.file, status: probe.status });
      }
      return {
        name: remote.file,
        sizeBytes: probe.totalBytes,
        read: (offsetBytes, target, readSignal) => files.readRange(remote, offsetBytes, target, readSignal),
        close: async () => undefined,
      };
    },
  };
}

/** A delta chain as a disk. */
export class DatastoreChainDisk implements DiskReader {
  readonly sizeBytes: number;
  readonly files: DatastoreFiles;
  readonly chain: VmdkChain;

  constructor(files: DatastoreFiles, chain: VmdkChain) {
    this.files = files;
    this.chain = chain;
    this.sizeBytes = chain.capacityBytes;
  }

  get resumedRequests(): number {
    return this.files.resumedRequests;
  }

  get cookieRenewals(): number {
    return this.files.cookieRenewals;
  }

  read(offsetBytes: number, target: Uint8Array, signal?: AbortSignal): Promise<void> {
    checkDiskRange(this.files.name, this.sizeBytes, 'read', offsetBytes, target.length);
    return this.chain.read(offsetBytes, target, signal);
  }

  close(): Promise<void> {
    return this.chain.close();
  }
}

export async function openDatastoreChain(files: DatastoreFiles, options: DatastoreDiskOptions, signal?: AbortSignal): Promise<DatastoreChainDisk> {
  const { datastore, path } = parseDatastorePath(options.file);
  const chain = await openVmdkChain({ files: datastoreFiles(files, datastore), descriptor: path, maxInFlight: 8, signal });
  return new DatastoreChainDisk(files, chain);
}
