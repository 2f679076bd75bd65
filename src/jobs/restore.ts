// The restore job: one disk of a restore point onto a target - a local file (created sparse
// when missing) or an NBD URI (any writable export: qemu-nbd, nbdkit, nbdkit-vddk on a new
// VMDK). The repository streams the disk with `windowChunks` decodes in flight on its
// workers (bounded memory); zero chunks become zero ranges on the target, so a new file
// stays sparse and an NBD server may punch holes. An existing target must be at least the
// disk's size (bytes past it are left alone). A new file is created 0600 (it holds the VM's
// data). When a restore fails, a file it created is removed (no full-size file with partial
// content is left to be mistaken for a restored disk); an existing target is reported as
// partially written (RESTORE_TARGET_PARTIAL, the cause attached).
import { rm, stat } from 'node:fs/promises';
import { VcbtError } from '../errors.ts';
import { isNbdUri } from '../nbd/uri.ts';
import type { Repository } from '../repository/repository.ts';
import type { Disk } from '../transport/disk.ts';
import { openDisk } from '../transport/open-disk.ts';

export class RestoreError extends VcbtError {}

export interface RestoreOptions {
  repository: Repository;
  pointId: string;
  deviceKey: number;
  /** A file path or an NBD URI. */
  target: string;
  signal?: AbortSignal;
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export interface RestoreResult {
  pointId: string;
  deviceKey: number;
  label: string;
  target: string;
  capacityBytes: number;
  /** The target was created by this restore (a new sparse file). */
  created: boolean;
  targetBytes: number;
  bytesWritten: number;
  bytesZero: number;
  elapsedMs: number;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, (error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return false;
    throw error;
  });
}

async function openTarget(target: string, capacityBytes: number, signal?: AbortSignal): Promise<{ disk: Disk; created: boolean }> {
  const created = !isNbdUri(target) && !(await exists(target));
  const disk = created
    ? await openDisk(target, { writable: true, create: true, sizeBytes: capacityBytes, signal })
    : await openDisk(target, { writable: true, signal });
  if (disk.sizeBytes < capacityBytes) {
    await disk.close();
    throw new RestoreError('RESTORE_TARGET_SIZE', `target ${target} has ${disk.sizeBytes} bytes, less than the disk's ${capacityBytes}; give a target of at least the disk's size (or a new file name)`, { target, targetBytes: disk.sizeBytes, capacityBytes });
  }
  return { disk, created };
}

export async function restore(options: RestoreOptions): Promise<RestoreResult> {
  const started = performance.now();
  const { signal } = options;
  // Opening the restore point first: an unknown point or disk never touches the target.
  const restored = await options.repository.openDisk(options.pointId, options.deviceKey);
  try {
    const { disk: target, created } = await openTarget(options.target, restored.sizeBytes, signal);
    let closed = false;
    try {
      let doneBytes = 0;
      const progress = (bytes: number) => options.onProgress?.((doneBytes += bytes), restored.sizeBytes);
      const stats = await restored.restoreTo(
        {
          write: async (offsetBytes, data) => {
            await target.write(offsetBytes, data, signal);
            progress(data.length);
          },
          zero: async (offsetBytes, lengthBytes) => {
            await target.writeZeroes(offsetBytes, lengthBytes, signal);
            progress(lengthBytes);
          },
        },
        { signal },
      );
      await target.flush(signal);
      closed = true;
      await target.close();
      return {
        pointId: restored.pointId,
        deviceKey: restored.disk.deviceKey,
        label: restored.disk.label,
        target: options.target,
        capacityBytes: restored.sizeBytes,
        created,
        targetBytes: target.sizeBytes,
        ...stats,
        elapsedMs: performance.now() - started,
      };
    } catch (error) {
      if (!closed) await target.close().catch(() => undefined);
      if (created) {
        await rm(options.target, { force: true });
        throw error;
      }
      const cause = error as { code?: string; message?: string };
      throw new RestoreError(
        'RESTORE_TARGET_PARTIAL',
        `restore into ${options.target} failed after it started writing; the target is partially written: ${cause.code ?? 'ERROR'}: ${cause.message ?? String(error)}`,
        { target: options.target, causeCode: cause.code },
        { cause: error },
      );
    }
  } finally {
    await restored.close();
  }
}
