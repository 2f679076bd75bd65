// NbdClient: an NBD export as a disk. Opens one connection, and more when the server
// advertises NBD_FLAG_CAN_MULTI_CONN (then a flush on any connection covers writes made on
// all of them, which is what makes spreading requests safe). Requests larger than the
// server's maximum payload are split; unaligned reads are widened to the minimum block
// size; each request goes to the connection with the fewest requests in flight.
//
// The method names and shapes match transport's DiskReader/DiskWriter, so an NbdClient is
// used as a disk directly.

import { NbdConnection, type BlockStatusExtent, type ConnectOptions } from './client-connection.ts';
import type { BlockSizes } from './client-handshake.ts';
import { NbdError } from './errors.ts';
import { TransmissionFlag } from './protocol.ts';
import { formatNbdUri, parseNbdUri, type NbdTarget } from './uri.ts';

export type { BlockStatusExtent } from './client-connection.ts';

export interface NbdClientOptions extends ConnectOptions {
  /** Connections to open when the server allows multi-conn (default 4). */
  connections?: number;}

/** Largest WRITE_ZEROES/TRIM/BLOCK_STATUS length we send in one request. */
const MAX_EFFECT_BYTES = 1024 * 1024 * 1024;
/** Largest buffer of zeroes written when the server cannot WRITE_ZEROES. */
const MAX_ZERO_BUFFER_BYTES = 4 * 1024 * 1024;

export class NbdClient {
  readonly uri: string;
  readonly sizeBytes: number;
  readonly blockSizes: BlockSizes;
  readonly readOnly: boolean;
  readonly canFlush: boolean;
  readonly canTrim: boolean;
  readonly canWriteZeroes: boolean;
  readonly canMultiConn: boolean;
  /** The server answers base:allocation block status. */
  readonly canBlockStatus: boolean;
  readonly #connections: NbdConnection[];
  readonly #maxChunkBytes: number;
  #zeroBuffer: Uint8Array | null = null;

  private constructor(uri: string, connections: NbdConnection[]) {
    const first = connections[0].negotiated;
    const flags = first.transmissionFlags;
    this.uri = uri;
    this.#connections = connections;
    this.sizeBytes = first.sizeBytes;
    this.blockSizes = first.blockSizes;
    this.readOnly = (flags & TransmissionFlag.readOnly) !== 0;
    this.canFlush = (flags & TransmissionFlag.sendFlush) !== 0;
    this.canTrim = (flags & TransmissionFlag.sendTrim) !== 0;
    this.canWriteZeroes = (flags & TransmissionFlag.sendWriteZeroes) !== 0;
    this.canMultiConn = (flags & TransmissionFlag.canMultiConn) !== 0;
    this.canBlockStatus = first.allocationContextId !== null;
    const { minimumBytes, maximumPayloadBytes } = first.blockSizes;
    this.#maxChunkBytes = Math.max(minimumBytes, Math.floor(Math.min(maximumPayloadBytes, 64 * 1024 * 1024) / minimumBytes) * minimumBytes);
  }

  static async connect(uriOrTarget: string | NbdTarget, options: NbdClientOptions = {}): Promise<NbdClient> {
    const target = typeof uriOrTarget === 'string' ? parseNbdUri(uriOrTarget) : uriOrTarget;
    const first = await NbdConnection.open(target, options);
    const connections = [first];
    const wanted = Math.max(1, options.connections ?? 4);
    if (wanted > 1 && first.negotiated.transmissionFlags & TransmissionFlag.canMultiConn) {
      const more = await Promise.allSettled(Array.from({ length: wanted - 1 }, () => NbdConnection.open(target, options)));
      for (const result of more) if (result.status === 'fulfilled') connections.push(result.value);
      const failed = more.find((result) => result.status === 'rejected');
      if (failed) {
        await Promise.allSettled(connections.map((c) => c.close()));
        throw failed.reason;
      }
    }
    return new NbdClient(formatNbdUri(target), connections);
  }

  get connectionCount(): number {
    return this.#connections.length;
  }

  async read(offsetBytes: number, target: Uint8Array, signal?: AbortSignal): Promise<void> {
    this.#checkRange('read', offsetBytes, target.length);
    const min = this.blockSizes.minimumBytes;
    const alignedStart = offsetBytes - (offsetBytes % min);
    const alignedEnd = roundUp(offsetBytes + target.length, min);
    if (alignedStart === offsetBytes && alignedEnd === offsetBytes + target.length) {
      await this.#split(offsetBytes, target.length, this.#maxChunkBytes, (at, n) => this.#pick().read(at, target.subarray(at - offsetBytes, at - offsetBytes + n), signal));
      return;
    }
    // Unaligned: read the covering aligned range and copy out the part asked for.
    const covering = new Uint8Array(alignedEnd - alignedStart);
    await this.#split(alignedStart, covering.length, this.#maxChunkBytes, (at, n) => this.#pick().read(at, covering.subarray(at - alignedStart, at - alignedStart + n), signal));
    signal?.throwIfAborted();
    target.set(covering.subarray(offsetBytes - alignedStart, offsetBytes - alignedStart + target.length));
  }

  async write(offsetBytes: number, data: Uint8Array, signal?: AbortSignal): Promise<void> {
    this.#checkWritable('write', offsetBytes, data.length);
    await this.#split(offsetBytes, data.length, this.#maxChunkBytes, (at, n) => this.#pick().write(at, data.subarray(at - offsetBytes, at - offsetBytes + n), signal));
  }

  /** Zero the range; the server may punch a hole (no NBD_CMD_FLAG_NO_HOLE). */
  async writeZeroes(offsetBytes: number, lengthBytes: number, signal?: AbortSignal): Promise<void> {
    this.#checkWritable('writeZeroes', offsetBytes, lengthBytes);
    if (this.canWriteZeroes) {
      await this.#split(offsetBytes, lengthBytes, this.#effectChunkBytes(), (at, n) => this.#pick().writeZeroes(at, n, 0, signal));
      return;
    }
    this.#zeroBuffer ??= new Uint8Array(Math.min(this.#maxChunkBytes, MAX_ZERO_BUFFER_BYTES));
    const zeroes = this.#zeroBuffer;
    await this.#split(offsetBytes, lengthBytes, zeroes.length, (at, n) => this.#pick().write(at, zeroes.subarray(0, n), signal));
  }

  /** Tell the server the range's contents are no longer needed (a no-op where unsupported). */
  async trim(offsetBytes: number, lengthBytes: number, signal?: AbortSignal): Promise<void> {
    this.#checkWritable('trim', offsetBytes, lengthBytes);
    if (!this.canTrim) return;
    await this.#split(offsetBytes, lengthBytes, this.#effectChunkBytes(), (at, n) => this.#pick().trim(at, n, signal));
  }

  async flush(signal?: AbortSignal): Promise<void> {
    if (!this.canFlush) return;
    if (this.canMultiConn) {
      await this.#pick().flush(signal);
      return;
    }
    await Promise.all(this.#connections.map((c) => c.flush(signal)));
  }

  /**
   * base:allocation of the range as consecutive extents covering exactly the range (adjacent
   * extents with equal status merged). Without block status support everything is data.
   */
  async allocation(range: { offsetBytes: number; lengthBytes: number }, signal?: AbortSignal): Promise<BlockStatusExtent[]> {
    const { offsetBytes, lengthBytes } = range;
    this.#checkRange('allocation', offsetBytes, lengthBytes);
    const endBytes = offsetBytes + lengthBytes;
    if (!this.canBlockStatus || lengthBytes === 0) {
      return lengthBytes === 0 ? [] : [{ offsetBytes, lengthBytes, hole: false, zero: false }];
    }
    const min = this.blockSizes.minimumBytes;
    const result: BlockStatusExtent[] = [];
    let cursorBytes = offsetBytes - (offsetBytes % min);
    while (cursorBytes < endBytes) {
      const askBytes = Math.min(roundUp(endBytes, min), this.sizeBytes) - cursorBytes;
      const extents = await this.#pick().blockStatus(cursorBytes, Math.min(askBytes, this.#effectChunkBytes()), signal);
      for (const e of extents) {
        const start = Math.max(e.offsetBytes, offsetBytes);
        const end = Math.min(e.offsetBytes + e.lengthBytes, endBytes);
        if (end <= start) continue;
        const last = result.at(-1);
        if (last && last.hole === e.hole && last.zero === e.zero && last.offsetBytes + last.lengthBytes === start) {
          last.lengthBytes += end - start;
        } else {
          result.push({ offsetBytes: start, lengthBytes: end - start, hole: e.hole, zero: e.zero });
        }
      }
      const last = extents.at(-1)!;
      cursorBytes = last.offsetBytes + last.lengthBytes;
    }
    return result;
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.#connections.map((c) => c.close()));
  }

  /** The healthy connection with the fewest requests in flight. */
  #pick(): NbdConnection {
    let best: NbdConnection | null = null;
    for (const c of this.#connections) {
      if (c.failure) continue;
      if (!best || c.inFlight < best.inFlight) best = c;
    }
    if (!best) throw this.#connections[0].failure!;
    return best;
  }

  /** Run `request` over [offsetBytes, +lengthBytes) in pieces of at most pieceBytes, concurrently. */
  async #split(offsetBytes: number, lengthBytes: number, pieceBytes: number, request: (atBytes: number, lengthBytes: number) => Promise<unknown>): Promise<void> {
    if (lengthBytes <= pieceBytes) {
      if (lengthBytes > 0) await request(offsetBytes, lengthBytes);
      return;
    }
    const pieces: Promise<unknown>[] = [];
    for (let at = offsetBytes; at < offsetBytes + lengthBytes; at += pieceBytes) {
      pieces.push(Promise.resolve().then(() => request(at, Math.min(pieceBytes, offsetBytes + lengthBytes - at))));
    }
    // Wait for every piece, so nothing writes into the caller's buffer after we return.
    const results = await Promise.allSettled(pieces);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  #effectChunkBytes(): number {
    const min = this.blockSizes.minimumBytes;
    return Math.floor(MAX_EFFECT_BYTES / min) * min;
  }

  #checkRange(operation: string, offsetBytes: number, lengthBytes: number): void {
    if (!Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes) || offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > this.sizeBytes) {
      throw new NbdError('DISK_RANGE', `${this.uri}: ${operation} of ${lengthBytes} bytes at offset ${offsetBytes} is outside the export (${this.sizeBytes} bytes)`, {
        server: this.uri, offsetBytes, lengthBytes, sizeBytes: this.sizeBytes,
      });
    }
  }

  #checkWritable(operation: string, offsetBytes: number, lengthBytes: number): void {
    this.#checkRange(operation, offsetBytes, lengthBytes);
    if (this.readOnly) throw new NbdError('NBD_UNSUPPORTED', `${this.uri}: export is read-only, cannot ${operation}`, { server: this.uri });
    const min = this.blockSizes.minimumBytes;
    if (offsetBytes % min !== 0 || lengthBytes % min !== 0) {
      throw new NbdError('DISK_RANGE', `${this.uri}: ${operation} at offset ${offsetBytes} length ${lengthBytes} is not aligned to the export's minimum block size ${min}`, {
        server: this.uri, offsetBytes, lengthBytes, minimumBlockBytes: min,
      });
    }
  }
}

function roundUp(value: number, multiple: number): number {
  return Math.ceil(value / multiple) * multiple;
}
