// The chunk worker thread: zero-detect, hash, compress, encrypt and write a chunk (ingest),
// or read, decrypt, decompress and re-hash one (decode). Runs synchronously inside its thread;
// the generic pool (src/pipeline/worker-pool.ts) keeps one request per worker. Messages:
// chunk-protocol.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { ChunkDecodeError, decodeChunk, encodeChunk } from './chunk-codec.ts';
import { chunkIdHex, chunkPath } from './chunk-store.ts';
import { chunkId, type MasterKeys } from './crypto.ts';
import { isZeroId } from './disk-index.ts';
import { isNotFound, writeTempFileSync } from './files.ts';
import type { ChunkRequest, DecodeReply, IngestReply, IngestRequest, DecodeRequest, IngestWorkerData } from './chunk-protocol.ts';
import type { WorkerReply } from '../pipeline/worker-pool.ts';

const data = workerData as IngestWorkerData;
const keys: MasterKeys | undefined = data.keyMaterial
  ? { dataKey: Buffer.from(data.keyMaterial.subarray(0, 32)), idKey: Buffer.from(data.keyMaterial.subarray(32, 64)) }
  : undefined;
const tmpDir = path.join(data.repoPath, 'tmp');
let zeros = Buffer.alloc(0);

function isAllZero(bytes: Buffer): boolean {
  if (zeros.length < bytes.length) zeros = Buffer.alloc(bytes.length);
  return bytes.equals(zeros.subarray(0, bytes.length));
}

function chunkError(code: string, why: string, idHex: string, cause?: unknown): Error {
  const error = new Error(`chunk ${idHex}: ${why}`, { cause }) as Error & { code: string; context: Record<string, unknown> };
  error.code = code;
  error.context = { chunkId: idHex, file: chunkPath(data.repoPath, idHex) };
  return error;
}

function readChunk(id: Uint8Array): Buffer {
  const idHex = chunkIdHex(id);
  let file: Buffer;
  try {
    file = fs.readFileSync(chunkPath(data.repoPath, idHex));
  } catch (error) {
    if (isNotFound(error)) throw chunkError('REPO_MISSING', 'chunk file is missing', idHex, error);
    throw error;
  }
  try {
    return decodeChunk(file, id, keys);
  } catch (error) {
    if (error instanceof ChunkDecodeError) throw chunkError('REPO_CORRUPT', error.message, idHex, error);
    throw error;
  }
}

function fillFromPrevious(target: Buffer, merge: NonNullable<IngestRequest['merge']>): void {
  const previous = isZeroId(merge.previousId) ? undefined : readChunk(merge.previousId);
  if (previous && previous.length !== target.length) {
    throw chunkError('REPO_CORRUPT', `previous chunk holds ${previous.length} bytes, the slot needs ${target.length}`, chunkIdHex(merge.previousId));
  }
  let at = 0;
  const gaps: Array<[number, number]> = [];
  for (const [offset, length] of merge.freshRanges) {
    if (offset > at) gaps.push([at, offset]);
    at = Math.max(at, offset + length);
  }
  if (at < target.length) gaps.push([at, target.length]);
  for (const [from, to] of gaps) {
    if (previous) previous.copy(target, from, from, to);
    else target.fill(0, from, to);
  }
}

function ingest(request: IngestRequest): IngestReply {
  const chunk = Buffer.from(request.buffer, 0, request.lengthBytes);
  if (request.merge) fillFromPrevious(chunk, request.merge);
  if (isAllZero(chunk)) return { buffer: request.buffer, zero: true, id: new Uint8Array(32), storedBytes: 0, tempPath: null };
  const id = chunkId(chunk, keys?.idKey);
  let storedBytes = 0;
  let tempPath: string | null = null;
  if (!fs.existsSync(chunkPath(data.repoPath, id.toString('hex')))) {
    const parts = encodeChunk(chunk, id, data.compressionLevel, keys);
    tempPath = writeTempFileSync(tmpDir, parts);
    storedBytes = parts.reduce((sum, p) => sum + p.length, 0);
  }
  return { buffer: request.buffer, zero: false, id: new Uint8Array(id), storedBytes, tempPath };
}

function decode(request: DecodeRequest): DecodeReply {
  const plaintext = readChunk(request.id);
  if (plaintext.length > request.buffer.byteLength) throw chunkError('REPO_CORRUPT', `chunk holds ${plaintext.length} bytes, more than a chunk`, chunkIdHex(request.id));
  new Uint8Array(request.buffer).set(plaintext);
  return { buffer: request.buffer, lengthBytes: plaintext.length };
}

parentPort?.on('message', (request: ChunkRequest) => {
  let reply: WorkerReply;
  let transfer: ArrayBuffer[] = [];
  try {
    const result = request.kind === 'ingest' ? ingest(request) : decode(request);
    reply = { ok: true, result };
    transfer = [result.buffer];
  } catch (error) {
    const e = error as Error & { code?: string; context?: Record<string, unknown> };
    reply = { ok: false, error: { name: e.name, message: e.message, code: e.code, context: e.context } };
  }
  parentPort?.postMessage(reply, transfer);
});
