// One NBD client connection in transmission phase: many requests in flight, each tagged with
// a cookie; one receive loop decodes replies (simple or structured, in any order) and
// settles the matching request. Read payloads are copied from the socket straight into the
// caller's buffer. If the connection breaks, or the peer breaks the protocol, every pending
// request rejects at once with that error, and so does every later one.
//
// Deadlines (`ioTimeoutMs`, the inactivity deadline): connecting plus the whole handshake
// must finish within it, and while requests are in flight some reply byte must arrive within
// it; otherwise the connection fails with NBD_TIMEOUT (naming the server, export and the
// oldest waiting request). A server that accepts and then says nothing never hangs a job.

import net from 'node:net';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { ByteReader } from './byte-reader.ts';
import { ReadCoverage, MAX_DISJOINT_RANGES, type CoverageProblem } from './read-coverage.ts';
import { negotiate, type HandshakeIo, type NegotiatedExport } from './client-handshake.ts';
import { NbdError, NbdServerError } from './errors.ts';
import { startClientTls, type NbdTlsOptions } from './tls.ts';
import type { NbdTarget } from './uri.ts';
import { formatNbdUri } from './uri.ts';
import {
  AllocationFlag,
  CHUNK_ERROR_BIT,
  ChunkType,
  Command,
  type CommandType,
  errorName,
  REQUEST_HEADER_BYTES,
  REQUEST_MAGIC,
  ReplyFlag,
  SIMPLE_REPLY_HEADER_BYTES,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_HEADER_BYTES,
  STRUCTURED_REPLY_MAGIC,
} from './protocol.ts';

/** One range of base:allocation block status. */
export interface BlockStatusExtent {
  offsetBytes: number;
  lengthBytes: number;
  /** Unallocated on the server. */
  hole: boolean;
  /** Reads as zeroes. */
  zero: boolean;
}

export interface ConnectOptions {
  tls?: NbdTlsOptions;
  signal?: AbortSignal;
  /** Negotiate structured replies (default true; false only to exercise simple replies). */
  structuredReplies?: boolean;
  /**
   * Inactivity deadline: connect + handshake must finish within it, and while requests
   * wait, some reply byte must arrive within it (default DEFAULT_NBD_IO_TIMEOUT_MS).
   */
  ioTimeoutMs?: number;
}

/** Default inactivity deadline; the CLI's `--io-timeout` default is the same 60 s. */
export const DEFAULT_NBD_IO_TIMEOUT_MS = 60_000;

/** How often (as a fraction of the deadline) a connection with requests in flight checks for progress. */
const PROGRESS_CHECKS_PER_DEADLINE = 4;

const COMMAND_NAMES: Record<number, string> = {
  [Command.read]: 'READ',
  [Command.write]: 'WRITE',
  [Command.flush]: 'FLUSH',
  [Command.trim]: 'TRIM',
  [Command.writeZeroes]: 'WRITE_ZEROES',
  [Command.blockStatus]: 'BLOCK_STATUS',
};

/** How long close() lets pending requests finish before dropping the connection. */
const CLOSE_GRACE_MS = 5_000;

/** Idle time before TCP keepalive probes start on a connection. */
const KEEPALIVE_IDLE_MS = 30_000;

/** Largest block status payload we accept in one chunk (a descriptor is 8 bytes). */
const MAX_BLOCK_STATUS_PAYLOAD_BYTES = 16 * 1024 * 1024;

interface Pending {
  command: CommandType;
  offsetBytes: number;
  lengthBytes: number;
  /** Where read data goes; null once the caller gave up (the data is then discarded). */
  target: Uint8Array | null;
  /** Which bytes of a READ the reply has covered (every byte exactly once, or it fails). */
  coverage: ReadCoverage | null;
  extents: BlockStatusExtent[];
  error: Error | null;
  abandoned: boolean;
  resolve(): void;
  reject(error: Error): void;
}

export class NbdConnection {
  readonly negotiated: NegotiatedExport;
  readonly server: string;
  readonly #stream: Duplex;
  readonly #reader: ByteReader;
  readonly #pending = new Map<number, Pending>();
  #nextCookie = 1;
  #idleWaiters: (() => void)[] = [];
  #failure: Error | null = null;
  #closing = false;
  readonly #receiveDone: Promise<void>;
  readonly #ioTimeoutMs: number;
  /** Checks for reply progress while requests are in flight; null when idle. */
  #watchdog: NodeJS.Timeout | null = null;
  #watchedReceivedBytes = 0;
  #lastProgressMs = 0;

  private constructor(io: HandshakeIo, negotiated: NegotiatedExport, server: string, ioTimeoutMs: number) {
    this.#stream = io.stream;
    this.#reader = io.reader;
    this.negotiated = negotiated;
    this.server = server;
    this.#ioTimeoutMs = ioTimeoutMs;
    this.#receiveDone = this.#receiveLoop();
  }

  static async open(target: NbdTarget, options: ConnectOptions = {}): Promise<NbdConnection> {
    const server = formatNbdUri(target);
    const ioTimeoutMs = options.ioTimeoutMs ?? DEFAULT_NBD_IO_TIMEOUT_MS;
    // Connecting and the handshake share one deadline: a peer that accepts and then says
    // nothing (or trickles) is dropped, and the error says so rather than "disconnected".
    const deadline = new AbortController();
    const timeoutError = new NbdError(
      'NBD_TIMEOUT',
      `${server}: no complete NBD handshake within ${formatSeconds(ioTimeoutMs)} (export "${target.exportName}"); the server accepted the connection but stalled (--io-timeout)`,
      { server, exportName: target.exportName, phase: 'handshake', timeoutMs: ioTimeoutMs },
    );
    const timer = setTimeout(() => deadline.abort(timeoutError), ioTimeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, deadline.signal]) : deadline.signal;
    const rethrow = (error: unknown): never => {
      if (options.signal?.aborted) throw options.signal.reason;
      if (deadline.signal.aborted) throw timeoutError;
      throw error;
    };
    let plainReader: ByteReader | null = null;
    // TLS needs the socket's ordinary stream; plain connections read into our own buffers.
    const socket = await connectSocket(target, server, signal, target.tls ? undefined : () => plainReader).catch((error: unknown) => {
      clearTimeout(timer);
      return rethrow(error);
    });
    const onAbort = () => socket.destroy();
    signal.addEventListener('abort', onAbort, { once: true });
    let phase = 'during the handshake';
    const endError = (cause?: Error) => disconnected(server, phase, cause);
    try {
      const tlsOptions = options.tls ?? {};
      const startTls = target.tls
        ? async (_io: HandshakeIo): Promise<HandshakeIo> => {
            const stream = await startClientTls(socket, target, tlsOptions, server);
            return { stream, reader: new ByteReader(stream, endError) };
          }
        : undefined;
      plainReader = new ByteReader(socket, endError);
      const handshake = { stream: socket, reader: plainReader };
      const { io, negotiated } = await negotiate(handshake, { exportName: target.exportName, server, startTls, structuredReplies: options.structuredReplies });
      phase = 'during transmission';
      socket.setNoDelay(true);
      // A peer that vanishes without a FIN (host down, cable pulled) is noticed by TCP
      // keepalive rather than never.
      socket.setKeepAlive(true, KEEPALIVE_IDLE_MS);
      return new NbdConnection(io, negotiated, server, ioTimeoutMs);
    } catch (error) {
      socket.destroy();
      return rethrow(error);
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    }
  }

  get inFlight(): number {
    return this.#pending.size;
  }

  /** Why this connection can no longer be used, or null while it is healthy. */
  get failure(): Error | null {
    return this.#failure;
  }

  read(offsetBytes: number, target: Uint8Array, signal?: AbortSignal): Promise<void> {
    return this.#request(Command.read, 0, offsetBytes, target.length, null, target, signal).then(() => {});
  }

  write(offsetBytes: number, data: Uint8Array, signal?: AbortSignal): Promise<void> {
    return this.#request(Command.write, 0, offsetBytes, data.length, data, null, signal).then(() => {});
  }

  writeZeroes(offsetBytes: number, lengthBytes: number, flags: number, signal?: AbortSignal): Promise<void> {
    return this.#request(Command.writeZeroes, flags, offsetBytes, lengthBytes, null, null, signal).then(() => {});
  }

  trim(offsetBytes: number, lengthBytes: number, signal?: AbortSignal): Promise<void> {
    return this.#request(Command.trim, 0, offsetBytes, lengthBytes, null, null, signal).then(() => {});
  }

  flush(signal?: AbortSignal): Promise<void> {
    return this.#request(Command.flush, 0, 0, 0, null, null, signal).then(() => {});
  }

  /** base:allocation status from offsetBytes on; the server may describe less than asked. */
  blockStatus(offsetBytes: number, lengthBytes: number, signal?: AbortSignal): Promise<BlockStatusExtent[]> {
    return this.#request(Command.blockStatus, 0, offsetBytes, lengthBytes, null, null, signal);
  }

  /** Let pending requests finish, send NBD_CMD_DISC and close. */
  async close(): Promise<void> {
    if (this.#closing) return this.#receiveDone;
    this.#closing = true;
    if (!this.#failure) {
      if (this.#pending.size > 0) {
        // Give pending requests a bounded time to be answered; a server that never answers
        // must not make close() hang.
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          new Promise<void>((resolve) => this.#idleWaiters.push(resolve)),
          new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS))),
        ]);
        clearTimeout(timer);
      }
      if (!this.#failure && this.#pending.size === 0) {
        const header = Buffer.alloc(REQUEST_HEADER_BYTES);
        header.writeUInt32BE(REQUEST_MAGIC, 0);
        header.writeUInt16BE(Command.disconnect, 6);
        this.#stream.end(header);
      }
    }
    this.#fail(new NbdError('NBD_DISCONNECTED', `${this.server}: connection closed by vcbt`, { server: this.server }));
    this.#stream.destroy();
    await this.#receiveDone;
  }

  #request(
    command: CommandType,
    flags: number,
    offsetBytes: number,
    lengthBytes: number,
    payload: Uint8Array | null,
    target: Uint8Array | null,
    signal: AbortSignal | undefined,
  ): Promise<BlockStatusExtent[]> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    // Cookies are 32-bit here and wrap around (skipping any still in flight).
    let cookie = this.#nextCookie;
    while (this.#pending.has(cookie)) cookie = (cookie + 1) >>> 0;
    this.#nextCookie = (cookie + 1) >>> 0;
    return new Promise<BlockStatusExtent[]>((resolve, reject) => {
      const pending: Pending = {
        command, offsetBytes, lengthBytes, target,
        coverage: command === Command.read ? new ReadCoverage(lengthBytes) : null,
        extents: [], error: null, abandoned: false,
        resolve: () => resolve(pending.extents),
        reject,
      };
      if (signal) {
        const onAbort = () => {
          // The reply still arrives and is discarded; the caller's buffer is no longer touched.
          pending.target = null;
          pending.abandoned = true;
          reject(signal.reason as Error);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        const settle = () => signal.removeEventListener('abort', onAbort);
        pending.resolve = () => (settle(), resolve(pending.extents));
        pending.reject = (error) => (settle(), reject(error));
      }
      this.#pending.set(cookie, pending);
      this.#startWatchdog();
      const header = Buffer.allocUnsafe(REQUEST_HEADER_BYTES);
      header.writeUInt32BE(REQUEST_MAGIC, 0);
      header.writeUInt16BE(flags, 4);
      header.writeUInt16BE(command, 6);
      header.writeUInt32BE(0, 8);
      header.writeUInt32BE(cookie, 12);
      header.writeBigUInt64BE(BigInt(offsetBytes), 16);
      header.writeUInt32BE(lengthBytes, 24);
      if (payload) {
        this.#stream.cork();
        this.#stream.write(header);
        this.#stream.write(payload);
        this.#stream.uncork();
      } else {
        this.#stream.write(header);
      }
    });
  }

  async #receiveLoop(): Promise<void> {
    try {
      for (;;) {
        const magicView = this.#reader.tryReadExact(4) ?? (await this.#reader.readExact(4));
        const magic = magicView.readUInt32BE(0);
        if (magic === SIMPLE_REPLY_MAGIC) await this.#receiveSimple();
        else if (magic === STRUCTURED_REPLY_MAGIC) await this.#receiveChunk();
        else throw this.#protocolError(`bad reply magic 0x${magic.toString(16)}`);
      }
    } catch (error) {
      this.#fail(error as Error);
      this.#stream.destroy();
    }
  }

  async #receiveSimple(): Promise<void> {
    const rest = this.#reader.tryReadExact(SIMPLE_REPLY_HEADER_BYTES - 4) ?? (await this.#reader.readExact(SIMPLE_REPLY_HEADER_BYTES - 4));
    const errno = rest.readUInt32BE(0);
    const cookie = this.#cookie(rest, 4);
    const pending = this.#pending.get(cookie)!;
    if (errno !== 0) {
      this.#finish(cookie, pending, this.#serverError(pending, errno, ''));
      return;
    }
    if (pending.command === Command.read) {
      if (this.negotiated.structuredReplies) throw this.#protocolError('simple reply with data to a READ after structured replies were negotiated');
      if (pending.target) await this.#reader.readInto(pending.target);
      else await this.#reader.skip(pending.lengthBytes);
      if (pending.lengthBytes > 0) pending.coverage!.add(0, pending.lengthBytes);
    } else if (pending.command === Command.blockStatus) {
      throw this.#protocolError('simple reply to BLOCK_STATUS');
    }
    this.#finish(cookie, pending, null);
  }

  async #receiveChunk(): Promise<void> {
    const header = this.#reader.tryReadExact(STRUCTURED_REPLY_HEADER_BYTES - 4) ?? (await this.#reader.readExact(STRUCTURED_REPLY_HEADER_BYTES - 4));
    const flags = header.readUInt16BE(0);
    const type = header.readUInt16BE(2);
    const lengthBytes = header.readUInt32BE(12);
    const cookie = this.#cookie(header, 4);
    const pending = this.#pending.get(cookie)!;
    const done = (flags & ReplyFlag.done) !== 0;

    if (type === ChunkType.none) {
      if (!done || lengthBytes !== 0) throw this.#protocolError('NBD_REPLY_TYPE_NONE must be empty and final');
    } else if (type === ChunkType.offsetData) {
      if (pending.command !== Command.read || lengthBytes <= 8) throw this.#protocolError('unexpected OFFSET_DATA chunk');
      const chunkOffsetBytes = await this.#readOffset();
      const dataBytes = lengthBytes - 8;
      // Checked before a byte lands in the caller's buffer: an overlapping chunk never
      // overwrites data already received.
      const at = this.#cover(pending, 'OFFSET_DATA', chunkOffsetBytes, dataBytes);
      if (pending.target) await this.#reader.readInto(pending.target.subarray(at, at + dataBytes));
      else await this.#reader.skip(dataBytes);
    } else if (type === ChunkType.offsetHole) {
      if (pending.command !== Command.read || lengthBytes !== 12) throw this.#protocolError('unexpected OFFSET_HOLE chunk');
      const body = Buffer.from(this.#reader.tryReadExact(12) ?? (await this.#reader.readExact(12)));
      const holeBytes = body.readUInt32BE(8);
      const at = this.#cover(pending, 'OFFSET_HOLE', Number(body.readBigUInt64BE(0)), holeBytes);
      pending.target?.fill(0, at, at + holeBytes);
    } else if (type === ChunkType.blockStatus) {
      if (pending.command !== Command.blockStatus || lengthBytes < 12 || (lengthBytes - 4) % 8 !== 0 || lengthBytes > MAX_BLOCK_STATUS_PAYLOAD_BYTES) {
        throw this.#protocolError('unexpected BLOCK_STATUS chunk');
      }
      const body = Buffer.from(await this.#reader.readExact(lengthBytes));
      if (body.readUInt32BE(0) === this.negotiated.allocationContextId) this.#addExtents(pending, body);
    } else if (type & CHUNK_ERROR_BIT) {
      if (lengthBytes < 6 || lengthBytes > 65536) throw this.#protocolError(`error chunk of ${lengthBytes} bytes`);
      const body = Buffer.from(await this.#reader.readExact(lengthBytes));
      const errno = body.readUInt32BE(0);
      const messageBytes = body.readUInt16BE(4);
      if (6 + messageBytes > lengthBytes) throw this.#protocolError('error chunk message overruns the chunk');
      const message = body.toString('utf8', 6, 6 + messageBytes);
      let errorOffsetBytes: number | undefined;
      if (type === ChunkType.errorOffset && lengthBytes >= 6 + messageBytes + 8) errorOffsetBytes = Number(body.readBigUInt64BE(6 + messageBytes));
      pending.error ??= this.#serverError(pending, errno === 0 ? 5 : errno, message, errorOffsetBytes);
    } else {
      throw this.#protocolError(`unknown reply chunk type ${type}`);
    }

    if (done) {
      let error = pending.error;
      if (!error && pending.coverage && !pending.coverage.complete) {
        // A gap: the server ended the reply without sending some bytes. The connection
        // fails like on any other violation; a server that does this is not to be trusted.
        const coverage = pending.coverage;
        throw this.#protocolError(
          `READ of ${pending.lengthBytes} bytes at offset ${pending.offsetBytes} ended with ${pending.lengthBytes - coverage.coveredBytes} bytes not covered (first gap at offset ${pending.offsetBytes + coverage.firstGapBytes()!})`,
          { offsetBytes: pending.offsetBytes, lengthBytes: pending.lengthBytes, coveredBytes: coverage.coveredBytes },
        );
      }
      if (!error && pending.command === Command.blockStatus && pending.extents.length === 0) {
        error = this.#protocolError(`BLOCK_STATUS at offset ${pending.offsetBytes} returned no base:allocation extents`);
      }
      this.#finish(cookie, pending, error);
    }
  }

  async #readOffset(): Promise<number> {
    const view = this.#reader.tryReadExact(8) ?? (await this.#reader.readExact(8));
    return Number(view.readBigUInt64BE(0));
  }

  /**
   * Record that a chunk covers [offsetBytes, +lengthBytes) of a READ and return its position
   * inside the request; a chunk that is empty, outside the request, or overlaps bytes an
   * earlier chunk covered is a protocol error.
   */
  #cover(pending: Pending, chunkName: string, offsetBytes: number, lengthBytes: number): number {
    const at = offsetBytes - pending.offsetBytes;
    const problem = pending.coverage!.add(at, lengthBytes);
    if (problem) {
      const why: Record<CoverageProblem, string> = {
        empty: 'is empty',
        outside: 'lies outside the request',
        overlap: 'overlaps bytes an earlier chunk already covered',
        fragmented: `leaves the reply in more than ${MAX_DISJOINT_RANGES} separate pieces`,
      };
      throw this.#protocolError(
        `${chunkName} chunk [${offsetBytes}, +${lengthBytes}) ${why[problem]} (READ [${pending.offsetBytes}, +${pending.lengthBytes}))`,
        { offsetBytes: pending.offsetBytes, lengthBytes: pending.lengthBytes, chunkOffsetBytes: offsetBytes, chunkLengthBytes: lengthBytes },
      );
    }
    return at;
  }

  #addExtents(pending: Pending, body: Buffer): void {
    let offsetBytes = pending.offsetBytes;
    for (let i = 4; i < body.length; i += 8) {
      const lengthBytes = body.readUInt32BE(i);
      const status = body.readUInt32BE(i + 4);
      if (lengthBytes === 0) throw this.#protocolError('BLOCK_STATUS descriptor of length 0');
      pending.extents.push({
        offsetBytes,
        lengthBytes,
        hole: (status & AllocationFlag.hole) !== 0,
        zero: (status & AllocationFlag.zero) !== 0,
      });
      offsetBytes += lengthBytes;
    }
  }

  /** The cookie at `at`, which must name a pending request. */
  #cookie(header: Buffer, at: number): number {
    const cookieHigh = header.readUInt32BE(at);
    const cookie = header.readUInt32BE(at + 4);
    if (cookieHigh !== 0 || !this.#pending.has(cookie)) throw this.#protocolError(`reply for unknown cookie ${cookieHigh}:${cookie}`);
    return cookie;
  }

  #finish(cookie: number, pending: Pending, error: Error | null): void {
    this.#pending.delete(cookie);
    this.#settle(pending, error);
    if (this.#pending.size === 0) {
      this.#stopWatchdog();
      for (const wake of this.#idleWaiters.splice(0)) wake();
    }
  }

  /** Start watching for reply progress (when the first request of a busy period is sent). */
  #startWatchdog(): void {
    if (this.#watchdog) return;
    this.#watchedReceivedBytes = this.#reader.receivedBytes;
    this.#lastProgressMs = performance.now();
    this.#watchdog = setInterval(this.#checkProgress, Math.max(1, Math.floor(this.#ioTimeoutMs / PROGRESS_CHECKS_PER_DEADLINE)));
    // The socket keeps the process alive while it matters; the watchdog alone must not.
    this.#watchdog.unref();
  }

  #stopWatchdog(): void {
    if (this.#watchdog) clearInterval(this.#watchdog);
    this.#watchdog = null;
  }

  /** Fail the connection when no reply byte arrived for ioTimeoutMs while requests waited. */
  readonly #checkProgress = (): void => {
    const received = this.#reader.receivedBytes;
    const now = performance.now();
    if (received !== this.#watchedReceivedBytes) {
      this.#watchedReceivedBytes = received;
      this.#lastProgressMs = now;
      return;
    }
    if (now - this.#lastProgressMs < this.#ioTimeoutMs || this.#pending.size === 0) return;
    // Map order is insertion order: the first entry is the request waiting longest.
    const oldest = this.#pending.values().next().value!;
    const command = COMMAND_NAMES[oldest.command] ?? String(oldest.command);
    this.#fail(new NbdError(
      'NBD_TIMEOUT',
      `${this.server}: no reply for ${formatSeconds(this.#ioTimeoutMs)} to ${command} of ${oldest.lengthBytes} bytes at offset ${oldest.offsetBytes} (${this.#pending.size} requests waiting); the server stalled (--io-timeout)`,
      { server: this.server, command, offsetBytes: oldest.offsetBytes, lengthBytes: oldest.lengthBytes, waitingRequests: this.#pending.size, timeoutMs: this.#ioTimeoutMs },
    ));
    this.#stream.destroy();
  };

  #settle(pending: Pending, error: Error | null): void {
    if (pending.abandoned) return;
    if (error) pending.reject(error);
    else pending.resolve();
  }

  #serverError(pending: Pending, errno: number, message: string, errorOffsetBytes?: number): NbdServerError {
    const name = errorName(errno);
    const command = COMMAND_NAMES[pending.command] ?? String(pending.command);
    const where = errorOffsetBytes === undefined ? '' : ` (failed at offset ${errorOffsetBytes})`;
    return new NbdServerError(
      errno,
      name,
      `${this.server}: ${command} of ${pending.lengthBytes} bytes at offset ${pending.offsetBytes} failed with NBD_${name}${where}${message ? `: ${message}` : ''}`,
      { server: this.server, command, offsetBytes: pending.offsetBytes, lengthBytes: pending.lengthBytes, errorOffsetBytes },
    );
  }

  #protocolError(what: string, context: Record<string, unknown> = {}): NbdError {
    return new NbdError('NBD_PROTOCOL', `${this.server}: protocol violation: ${what}`, { server: this.server, ...context });
  }

  #fail(error: Error): void {
    if (!this.#failure) {
      this.#failure = error;
    }
    this.#stopWatchdog();
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) this.#settle(p, this.#failure);
    for (const wake of this.#idleWaiters.splice(0)) wake();
  }
}

function formatSeconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

function disconnected(server: string, when: string, cause?: Error): NbdError {
  const why = cause ? `: ${cause.message}` : '';
  return new NbdError('NBD_DISCONNECTED', `${server}: server closed the connection ${when}${why}`, { server }, { cause });
}

/** Size of each of the two buffers a plain connection reads into, taking turns. */
const SOCKET_READ_BUFFER_BYTES = 1024 * 1024;

/**
 * Plain connections read straight into two buffers of ours, taking turns (`onread`), instead
 * of a fresh buffer per read: no allocation and no stream machinery per read. The reader
 * references received bytes in place; before a buffer is reused, whatever it still holds
 * unread is copied out.
 */
async function connectSocket(target: NbdTarget, server: string, signal?: AbortSignal, reader?: () => ByteReader | null): Promise<net.Socket> {
  const where = target.endpoint.kind === 'unix' ? { path: target.endpoint.socketPath } : { host: target.endpoint.host, port: target.endpoint.port };
  let socket: net.Socket;
  if (reader) {
    const buffers = [Buffer.allocUnsafeSlow(SOCKET_READ_BUFFER_BYTES), Buffer.allocUnsafeSlow(SOCKET_READ_BUFFER_BYTES)];
    let turn = 0;
    const nextBuffer = () => {
      turn ^= 1;
      reader()?.release(buffers[turn]); // null on the first call, before any input
      return buffers[turn];
    };
    const callback = (bytes: number, into: Uint8Array) => reader()!.pushBorrowed(Buffer.from(into.buffer, into.byteOffset, bytes));
    socket = net.connect({ ...where, onread: { buffer: nextBuffer, callback } });
  } else {
    socket = net.connect(where);
  }
  try {
    await once(socket, 'connect', { signal });
  } catch (error) {
    socket.destroy();
    if (signal?.aborted) throw signal.reason;
    const cause = error as Error;
    throw new NbdError('NBD_CONNECT', `cannot connect to ${server}: ${cause.message}`, { server }, { cause });
  }
  // After the handshake the receive loop owns errors; until then they reject the handshake.
  return socket;
}
