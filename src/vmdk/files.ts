// The seam between VMware disk formats and wherever their files live: "read these bytes of file
// X". The datastore HTTP transport implements it with Range requests, tests and benches with
// local files (`localVmdkFiles`).
//
// Vocabulary: a file name is the path the chain uses for it: the top descriptor's name as
// given, every other file joined to its descriptor's directory (posix). Absolute parent hints
// (`/vmfs/volumes/<datastore>/...`) are passed through for the seam to map or refuse.
import { open, stat } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { VmdkError } from './errors.ts';

export interface VmdkFile {
  /** The name the chain opened it by, for messages. */
  readonly name: string;
  readonly sizeBytes: number;
  /** Fill target with the bytes at offsetBytes (never short: inside [0, sizeBytes)). */
  read(offsetBytes: number, target: Uint8Array, signal?: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

export interface VmdkFiles {
  /** A small text file (a descriptor): its first maxBytes at most. */
  readText(name: string, maxBytes: number, signal?: AbortSignal): Promise<string>;
  open(name: string, signal?: AbortSignal): Promise<VmdkFile>;
}

/** Files of a local directory tree; names are paths (relative to `root` when given). */
export function localVmdkFiles(root = ''): VmdkFiles {
  const resolve = (name: string) => (root && !isAbsolute(name) ? join(root, name) : name);
  return {
    async readText(name, maxBytes) {
      const handle = await open(resolve(name), 'r');
      try {
        const buffer = Buffer.alloc(maxBytes);
        const { bytesRead } = await handle.read(buffer, 0, maxBytes, 0);
        return buffer.subarray(0, bytesRead).toString('latin1');
      } finally {
        await handle.close();
      }
    },
    async open(name) {
      const path = resolve(name);
      const handle = await open(path, 'r');
      const { size } = await stat(path);
      return {
        name,
        sizeBytes: size,
        async read(offsetBytes, target) {
          let done = 0;
          while (done < target.length) {
            const { bytesRead } = await handle.read(target, done, target.length - done, offsetBytes + done);
            if (bytesRead === 0) throw new VmdkError('VMDK_TRUNCATED', `${name} ends at ${offsetBytes + done} bytes, inside a read of ${target.length} bytes at ${offsetBytes}`, { file: name, offsetBytes: offsetBytes + done });
            done += bytesRead;
          }
        },
        close: () => handle.close(),
      };
    },
  };
}
