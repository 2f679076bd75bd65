// Chunks as blobs: a chunk is stored once under its id in hex (the storage decides where;
// locally chunks/<first two hex digits>/<64 hex digits>, see storage/local.ts).
import type { BlobRef } from './storage/storage.ts';

export function chunkIdHex(id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.length).toString('hex');
}

export function chunkRef(idHex: string): BlobRef {
  return { kind: 'chunk', name: idHex };
}
