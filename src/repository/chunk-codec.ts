// The chunk file encoding (docs/format.md, "Chunk files"). A chunk file is a 16-byte header
// followed by the payload:
//   0  4  magic "VCBC"
//   4  1  version (1)
//   5  1  encoding: 0 = raw, 1 = zstd frame
//   6  1  flags: bit 0 = payload is an AES-256-GCM box (aad = header || chunk id)
//   7  1  reserved, 0
//   8  4  plaintextBytes (u32 LE)
//  12  4  payloadBytes (u32 LE): the file is exactly 16 + payloadBytes long
// The header lets a structure check catch truncation without decoding; decoding re-hashes
// the plaintext and compares it with the chunk's id (its file name).
import * as zlib from 'node:zlib';
import { chunkId, open, seal, type MasterKeys } from './crypto.ts';

export const chunkHeaderBytes = 16;
const magic = Buffer.from('VCBC');
export const encodingRaw = 0;
export const encodingZstd = 1;
const flagEncrypted = 1;

export interface ChunkHeader {
  encoding: number;
  encrypted: boolean;
  plaintextBytes: number;
  payloadBytes: number;
}

/** Why a chunk file did not decode; `reason` goes into verify reports. */
export class ChunkDecodeError extends Error {}

export function encodeChunk(plaintext: Uint8Array, id: Uint8Array, compressionLevel: number, keys: MasterKeys | undefined): Buffer[] {
  const compressed = zlib.zstdCompressSync(plaintext, { params: { [zlib.constants.ZSTD_c_compressionLevel]: compressionLevel } });
  const useZstd = compressed.length < plaintext.length;
  const body = useZstd ? compressed : plaintext;
  const header = Buffer.alloc(chunkHeaderBytes);
  magic.copy(header, 0);
  header[4] = 1;
  header[5] = useZstd ? encodingZstd : encodingRaw;
  header[6] = keys ? flagEncrypted : 0;
  header.writeUInt32LE(plaintext.length, 8);
  const payload = keys ? seal(keys.dataKey, body, headerAad(header, id, body.length + 28)) : body;
  header.writeUInt32LE(payload.length, 12);
  return [header, Buffer.from(payload.buffer, payload.byteOffset, payload.length)];
}

// The aad carries the header with its final payload length, so a header edit fails the tag.
function headerAad(header: Buffer, id: Uint8Array, payloadBytes: number): Buffer {
  const aad = Buffer.alloc(chunkHeaderBytes + id.length);
  header.copy(aad, 0);
  aad.writeUInt32LE(payloadBytes, 12);
  aad.set(id, chunkHeaderBytes);
  return aad;
}

export function parseChunkHeader(bytes: Uint8Array): ChunkHeader {
  if (bytes.length < chunkHeaderBytes) throw new ChunkDecodeError(`chunk file is ${bytes.length} bytes, shorter than its header`);
  const header = Buffer.from(bytes.buffer, bytes.byteOffset, chunkHeaderBytes);
  if (!header.subarray(0, 4).equals(magic)) throw new ChunkDecodeError('chunk file has a bad magic');
  if (header[4] !== 1) throw new ChunkDecodeError(`chunk file version ${header[4]} is unknown`);
  if (header[5] !== encodingRaw && header[5] !== encodingZstd) throw new ChunkDecodeError(`chunk encoding ${header[5]} is unknown`);
  return {
    encoding: header[5],
    encrypted: (header[6] & flagEncrypted) !== 0,
    plaintextBytes: header.readUInt32LE(8),
    payloadBytes: header.readUInt32LE(12),
  };
}

/**
 * Decodes a whole chunk file and proves it is the chunk named `id`. Never produces more than
 * `maxPlaintextBytes` (the repository's chunk size): a header claiming more, or a zstd frame
 * that expands past what its header says, is damage, found without allocating past it.
 */
export function decodeChunk(file: Uint8Array, id: Uint8Array, keys: MasterKeys | undefined, maxPlaintextBytes: number): Buffer {
  const header = parseChunkHeader(file);
  if (header.plaintextBytes > maxPlaintextBytes) throw new ChunkDecodeError(`chunk header claims ${header.plaintextBytes} bytes, more than a chunk (${maxPlaintextBytes})`);
  if (file.length !== chunkHeaderBytes + header.payloadBytes) {
    throw new ChunkDecodeError(`chunk file is ${file.length} bytes, its header says ${chunkHeaderBytes + header.payloadBytes}`);
  }
  if (header.encrypted !== (keys !== undefined)) throw new ChunkDecodeError('chunk encryption flag does not match the repository');
  let body: Uint8Array = file.subarray(chunkHeaderBytes);
  if (keys) {
    try {
      body = open(keys.dataKey, body, headerAad(Buffer.from(file.buffer, file.byteOffset, chunkHeaderBytes), id, header.payloadBytes));
    } catch {
      throw new ChunkDecodeError('chunk authentication tag does not match (damaged or swapped)');
    }
  }
  let plaintext: Buffer;
  if (header.encoding === encodingZstd) {
    try {
      plaintext = zlib.zstdDecompressSync(body, { maxOutputLength: Math.max(1, header.plaintextBytes) });
    } catch (error) {
      throw new ChunkDecodeError(`chunk zstd frame does not decode: ${(error as Error).message}`);
    }
  } else {
    plaintext = Buffer.from(body.buffer, body.byteOffset, body.length);
  }
  if (plaintext.length !== header.plaintextBytes) throw new ChunkDecodeError(`chunk decodes to ${plaintext.length} bytes, its header says ${header.plaintextBytes}`);
  if (!chunkId(plaintext, keys?.idKey).equals(id)) throw new ChunkDecodeError('chunk content does not hash to its id');
  return plaintext;
}
