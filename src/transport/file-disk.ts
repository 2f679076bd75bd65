// A local file as a disk: raw images and the flat extent of a VMDK (one file, byte 0 is
// sector 0). Reads and writes are positional (at an offset). Reads run on libuv's thread
// pool, so many may wait on the device at once. Writes are made synchronously on the calling
// thread: a write lands in the page cache without waiting for the device, and handing it to
// the thread pool instead cost 2.4x the CPU (wakeups of pool threads; 500 MiB in 256 KiB
// writes: 180 ms of CPU synchronous, 430 ms through the pool; bench/README.md, "Copying
// over NBD"), which on a busy machine is the copy's speed. Durability is still flush's job
// (fdatasync, on the thread pool: that one waits for the device).
//
// Sparse writes: Node has no fallocate(PUNCH_HOLE) and no lseek(SEEK_DATA), so:
// - a file created or extended by us starts as a hole over the new range (ftruncate), and we
//   remember which ranges are still untouched holes ("known zero");
// - writeZeroes over known-zero ranges writes nothing (the target stays sparse, e.g. a first
//   full copy into a new file); over other ranges of 4 MiB or more it punches a hole with
//   util-linux `fallocate --punch-hole` (a full copy over an old replica stays sparse and does
//   not write gigabytes of zeroes); shorter ranges, and file systems that cannot punch, get
//   real zeroes written;
// - allocation() is not offered: without SEEK_DATA the only way to know is to read, which is
//   what the caller's zero detection does anyway.

import { execFile } from 'node:child_process';
import { open, type FileHandle } from 'node:fs/promises';
import { constants, writeSync } from 'node:fs';
import { VcbtError } from '../errors.ts';
import { subtract, type Extent } from '../extents/extent.ts';
import type { Disk, DiskReader } from './disk.ts';
import { checkDiskRange } from './range.ts';

export interface FileDiskOptions {
  /** Open for writing (default: read-only). */
  writable?: boolean;
  /** Writable only: create the file when missing. */
  create?: boolean;
  /** Writable only: extend a smaller file (sparse) to this size; a larger file is an error. */
  sizeBytes?: number;
}

const ZERO_BUFFER_BYTES = 1024 * 1024;
/** Zero ranges this long are deallocated rather than written (one process spawn pays off). */
const PUNCH_MIN_BYTES = 4 * 1024 * 1024;

export class FileDisk implements Disk {
  readonly path: string;
  readonly sizeBytes: number;
  readonly writable: boolean;
  readonly #handle: FileHandle;
  /** Normalized ranges that are holes we made and nobody wrote since. */
  #knownZero: Extent[];
  #zeroBuffer: Uint8Array | null = null;
  #canPunch = true;

  private constructor(path: string, handle: FileHandle, sizeBytes: number, writable: boolean, knownZero: Extent[]) {
    this.path = path;
    this.#handle = handle;
    this.sizeBytes = sizeBytes;
    this.writable = writable;
    this.#knownZero = knownZero;
  }

  static async open(path: string, options: FileDiskOptions = {}): Promise<FileDisk> {
    const writable = options.writable ?? false;
    let flags = writable ? constants.O_RDWR : constants.O_RDONLY;
    if (writable && options.create) flags |= constants.O_CREAT;
    let handle: FileHandle;
    try {
      // 0600: a disk image holds the VM's data (mode applies only when the file is created).
      handle = await open(path, flags, 0o600);
    } catch (error) {
      const cause = error as NodeJS.ErrnoException;
      throw new VcbtError('FILE_OPEN', `cannot open ${path}${writable ? ' for writing' : ''}: ${cause.message}`, { file: path, errno: cause.code }, { cause });
    }
    try {
      const info = await handle.stat();
      if (!info.isFile()) {
        const kind = info.isDirectory() ? 'a directory' : info.isBlockDevice() ? 'a block device' : 'not a regular file';
        throw new VcbtError('FILE_OPEN', `${path} is ${kind}; vcbt reads and writes regular files only`, { file: path });
      }
      if (!info.isFile()) {
        throw new VcbtError('FILE_OPEN', `${path} is ${info.isDirectory() ? 'a directory' : 'not a regular file'}; vcbt reads and writes regular files only`, { file: path });
      }
      let sizeBytes = info.size;
      let knownZero: Extent[] = [];
      if (writable && options.sizeBytes !== undefined && options.sizeBytes !== sizeBytes) {
        if (options.sizeBytes < sizeBytes) {
          throw new VcbtError('DISK_SIZE', `${path} is ${sizeBytes} bytes, larger than the ${options.sizeBytes} bytes asked for`, {
            file: path, sizeBytes, wantedBytes: options.sizeBytes,
          });
        }
        await handle.truncate(options.sizeBytes);
        knownZero = [{ offsetBytes: sizeBytes, lengthBytes: options.sizeBytes - sizeBytes }];
        sizeBytes = options.sizeBytes;
      }
      return new FileDisk(path, handle, sizeBytes, writable, knownZero);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  async read(offsetBytes: number, target: Uint8Array, signal?: AbortSignal): Promise<void> {
    checkDiskRange(this.path, this.sizeBytes, 'read', offsetBytes, target.length);
    signal?.throwIfAborted();
    let doneBytes = 0;
    while (doneBytes < target.length) {
      const { bytesRead } = await this.#handle.read(target, doneBytes, target.length - doneBytes, offsetBytes + doneBytes);
      if (bytesRead === 0) {
        throw new VcbtError('DISK_SHORT_READ', `${this.path}: file ended at offset ${offsetBytes + doneBytes} while reading ${target.length} bytes at ${offsetBytes} (did it shrink?)`, {
          file: this.path, offsetBytes, lengthBytes: target.length,
        });
      }
      doneBytes += bytesRead;
    }
  }

  async write(offsetBytes: number, data: Uint8Array, signal?: AbortSignal): Promise<void> {
    this.#checkWrite('write', offsetBytes, data.length);
    signal?.throwIfAborted();
    this.#knownZero = subtract(this.#knownZero, [{ offsetBytes, lengthBytes: data.length }]);
    await this.#writeFully(offsetBytes, data);
  }

  async writeZeroes(offsetBytes: number, lengthBytes: number, signal?: AbortSignal): Promise<void> {
    this.#checkWrite('writeZeroes', offsetBytes, lengthBytes);
    signal?.throwIfAborted();
    const needed = subtract([{ offsetBytes, lengthBytes }], this.#knownZero);
    this.#zeroBuffer ??= new Uint8Array(ZERO_BUFFER_BYTES);
    for (const range of needed) {
      if (range.lengthBytes >= PUNCH_MIN_BYTES && this.#canPunch && (await this.#punchHole(range))) continue;
      for (let at = range.offsetBytes; at < range.offsetBytes + range.lengthBytes; at += ZERO_BUFFER_BYTES) {
        signal?.throwIfAborted();
        await this.#writeFully(at, this.#zeroBuffer.subarray(0, Math.min(ZERO_BUFFER_BYTES, range.offsetBytes + range.lengthBytes - at)));
      }
    }
  }

  /**
   * Deallocates a range with util-linux `fallocate --punch-hole` (Node has no fallocate):
   * the range then reads as zeroes and takes no space. False when the file system or the
   * tool cannot, after which writeZeroes writes real zeroes.
   */
  async #punchHole(range: Extent): Promise<boolean> {
    const punched = await new Promise<boolean>((resolve) => {
      execFile('fallocate', ['--punch-hole', '--keep-size', '--offset', String(range.offsetBytes), '--length', String(range.lengthBytes), this.path], (error) => resolve(!error));
    });
    if (!punched) this.#canPunch = false;
    return punched;
  }

  async flush(): Promise<void> {
    if (this.writable) await this.#handle.datasync();
  }

  async close(): Promise<void> {
    await this.#handle.close();
  }

  /** Ranges still known to be untouched holes (for tests and for callers deciding what to skip). */
  knownZeroRanges(): readonly Extent[] {
    return this.#knownZero;
  }

  /** Synchronous on purpose (see the header): into the page cache, no thread pool round trip. */
  async #writeFully(offsetBytes: number, data: Uint8Array): Promise<void> {
    let doneBytes = 0;
    while (doneBytes < data.length) {
      doneBytes += writeSync(this.#handle.fd, data, doneBytes, data.length - doneBytes, offsetBytes + doneBytes);
    }
  }

  #checkWrite(operation: string, offsetBytes: number, lengthBytes: number): void {
    if (!this.writable) throw new VcbtError('DISK_READ_ONLY', `${this.path} was opened read-only, cannot ${operation}`, { file: this.path });
    checkDiskRange(this.path, this.sizeBytes, operation, offsetBytes, lengthBytes);
  }
}

export function openFileDisk(path: string, options: FileDiskOptions & { writable: true }): Promise<Disk>;
export function openFileDisk(path: string, options?: FileDiskOptions): Promise<DiskReader>;
export function openFileDisk(path: string, options: FileDiskOptions = {}): Promise<FileDisk> {
  return FileDisk.open(path, options);
}

