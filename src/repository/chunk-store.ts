// Where chunk files live: chunks/<first two hex digits of the id>/<64 hex digits>. The 256
// fan-out directories are made at init, so writers never create directories and a commit
// only has to fsync the fan-out directories it touched.
import * as path from 'node:path';

export function chunkIdHex(id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.length).toString('hex');
}

export function chunkFanoutDir(repoPath: string, idHex: string): string {
  return path.join(repoPath, 'chunks', idHex.slice(0, 2));
}

export function chunkPath(repoPath: string, idHex: string): string {
  return path.join(chunkFanoutDir(repoPath, idHex), idHex);
}

export function allFanoutNames(): string[] {
  return Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
}
