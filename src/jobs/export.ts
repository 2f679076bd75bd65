// The export job: one disk of a restore point served read-only over NBD by our own server
// (src/nbd/server.ts) - for nbdcopy, qemu-img, qemu (instant recovery), nbdfuse or the
// kernel's nbd-client. base:allocation comes from the index: zero chunks are reported as
// holes that read as zeroes, so clients copy only the stored data. The restore point's
// shared lock is held while the export runs (prune cannot collect its chunks).
import type { NbdServerOptions } from '../nbd/server.ts';
import { NbdServer } from '../nbd/server.ts';
import type { Repository } from '../repository/repository.ts';
import type { RestoredDisk } from '../repository/restored-disk.ts';

export interface ExportOptions {
  repository: Repository;
  pointId: string;
  deviceKey: number;
  listen: NbdServerOptions['listen'];
  /** NBD export name; default `<pointId>-<deviceKey>`. */
  exportName?: string;
}

export interface RunningExport {
  uri: string;
  exportName: string;
  pointId: string;
  deviceKey: number;
  label: string;
  capacityBytes: number;
  /** Stops serving, drops clients and releases the restore point. */
  close(): Promise<void>;
}

export async function exportDisk(options: ExportOptions): Promise<RunningExport> {
  const disk: RestoredDisk = await options.repository.openDisk(options.pointId, options.deviceKey);
  const exportName = options.exportName ?? `${disk.pointId}-${disk.disk.deviceKey}`;
  let server: NbdServer;
  try {
    server = await NbdServer.listen({
      exports: [{ name: exportName, description: `vcbt restore point ${disk.pointId} disk ${disk.disk.deviceKey} (${disk.disk.label})`, disk, writable: false }],
      listen: options.listen,
    });
  } catch (error) {
    await disk.close();
    throw error;
  }
  return {
    uri: server.uri(exportName),
    exportName,
    pointId: disk.pointId,
    deviceKey: disk.disk.deviceKey,
    label: disk.disk.label,
    capacityBytes: disk.sizeBytes,
    async close() {
      try {
        await server.close();
      } finally {
        await disk.close();
      }
    },
  };
}
