// Durable, private file operations. Every file the repository writes goes through
// writeFileAtomic: a temp file in the repository's tmp/ directory (same file system), written,
// fsynced, renamed over the final name, then the final directory fsynced, so a crash leaves
// either the old state or the complete new file, never a torn one. Modes are set explicitly
// (chmod/fchmod) so the umask cannot widen them: directories 0700, files 0600.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

export const dirMode = 0o700;
export const fileMode = 0o600;

export function tempName(): string {
  return `${randomBytes(12).toString('hex')}.tmp`;
}

export async function mkdirPrivate(dir: string): Promise<void> {
  await fsp.mkdir(dir, { recursive: true, mode: dirMode });
  await fsp.chmod(dir, dirMode);
}

export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fsp.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export function fsyncDirSync(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Write `data` to finalPath durably via tmpDir; fsyncs the final directory unless told the caller batches that. */
export async function writeFileAtomic(tmpDir: string, finalPath: string, data: Uint8Array | string, options: { syncDir?: boolean } = {}): Promise<void> {
  const tempPath = path.join(tmpDir, tempName());
  const handle = await fsp.open(tempPath, 'wx', fileMode);
  try {
    await handle.chmod(fileMode);
    await handle.writeFile(data);
    await handle.sync();
  } catch (error) {
    await handle.close();
    await fsp.rm(tempPath, { force: true });
    throw error;
  }
  await handle.close();
  await fsp.rename(tempPath, finalPath);
  if (options.syncDir !== false) await fsyncDir(path.dirname(finalPath));
}

/**
 * Worker-thread half of a durable write: the bytes go to a new temp file (mode 0600), not
 * yet fsynced. The caller finishes with makeDurable (fsync + rename) before referencing it.
 */
export function writeTempFileSync(tmpDir: string, parts: readonly Uint8Array[]): string {
  const tempPath = path.join(tmpDir, tempName());
  const fd = fs.openSync(tempPath, 'wx', fileMode);
  try {
    fs.fchmodSync(fd, fileMode);
    for (const part of parts) {
      let written = 0;
      while (written < part.length) written += fs.writeSync(fd, part, written, part.length - written);
    }
  } catch (error) {
    fs.closeSync(fd);
    fs.rmSync(tempPath, { force: true });
    throw error;
  }
  fs.closeSync(fd);
  return tempPath;
}

/** fsync a finished temp file and rename it to finalPath (the caller fsyncs the directory). */
export async function makeDurable(tempPath: string, finalPath: string): Promise<void> {
  const handle = await fsp.open(tempPath, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fsp.rename(tempPath, finalPath);
}

export function isNotFound(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}
