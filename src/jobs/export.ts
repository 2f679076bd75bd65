// The export job: one disk of a restore point served read-only over NBD by our own server
// (src/nbd/server.ts) - for nbdcopy, qemu-img, qemu (instant recovery), nbdfuse or the
// kernel's nbd-client. base:allocation comes from the index: zero chunks are reported as
// holes that read as zeroes, so clients copy only the stored data. The restore point's
// shared lock is held while the export runs (prune cannot collect its chunks).
import { VcbtError } from '../errors.ts';
import type { NbdServerOptions } from '../nbd/server.ts';
import { DEFAULT_SERVER_LIMITS, NbdServer } from '../nbd/server.ts';

/** The export's bounds under hostile clients (docs/nbd.md): connections, deadlines, memory. */
export const EXPORT_LIMITS = DEFAULT_SERVER_LIMITS;
import type { Repository } from '../repository/repository.ts';
import type { RestoredDisk } from '../repository/restored-disk.ts';

export class ExportError extends VcbtError {}

export interface ExportOptions {
  repository: Repository;
  pointId: string;
  deviceKey: number;
  listen: NbdServerOptions['listen'];
  /** NBD export name; default `<pointId>-<deviceKey>`. */
  exportName?: string;
  /** Clients served at once (default 16; more are refused). */
  maxConnections?: number;
  /** Handshake deadline, and how long queued replies may wait for a client to read them (default 60 s). */
  ioTimeoutMs?: number;
}

export interface RunningExport {
  /** The NBD URI to give a client (nbd://host:port/name or nbd+unix:///name?socket=PATH). */
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
      maxConnections: options.maxConnections,
      ioTimeoutMs: options.ioTimeoutMs,
    });
  } catch (error) {
    await disk.close();
    const where = 'socketPath' in options.listen ? options.listen.socketPath : `${options.listen.host ?? '127.0.0.1'}:${options.listen.port ?? 10809}`;
    const errno = (error as NodeJS.ErrnoException).code;
    if (typeof errno !== 'string' || !errno.startsWith('E')) throw error;
    throw new ExportError('EXPORT_LISTEN', `cannot serve restore point ${options.pointId} disk ${options.deviceKey} on ${where}: ${errno} (${(error as Error).message})`, { listen: where, errno }, { cause: error });
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
