// One client connection to NbdServer: the fixed newstyle handshake, then the transmission
// loop. Requests are read in order but processed concurrently (up to maxInFlight, and a
// bounded number of payload bytes), and each is answered when it completes, so replies
// leave out of order. A reply's slot is released only once the socket has taken its bytes,
// so a client that stops reading replies stops the server reading its requests.
//
// Bounds (see server.ts): the handshake must finish within ioTimeoutMs and its replies are
// sent with backpressure (a client that sends options without reading the answers is not
// answered faster than it reads); payload bytes come from the server-wide budget; while
// replies wait for the client, it must take one within ioTimeoutMs or it is dropped;
// READ/WRITE longer than the advertised maximum payload get EINVAL.

import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import type net from 'node:net';
import { once } from 'node:events';
import { ByteReader } from './byte-reader.ts';
import { NbdError } from './errors.ts';
import type { NbdExport, ServerSettings, ServedExtent } from './server.ts';
import {
  AllocationFlag,
  BASE_ALLOCATION,
  ChunkType,
  Command,
  CommandFlag,
  ErrorNumber,
  HandshakeFlag,
  IHAVEOPT,
  Info,
  MAX_OPTION_PAYLOAD_BYTES,
  NBDMAGIC,
  Option,
  OPTION_HEADER_BYTES,
  OPTION_REPLY_MAGIC,
  OptionReply,
  REQUEST_HEADER_BYTES,
  REQUEST_MAGIC,
  ReplyFlag,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
  TransmissionFlag,
} from './protocol.ts';

const ALLOCATION_CONTEXT_ID = 1;
/** Payload bytes (read replies + write requests) one connection holds at once. */
const MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024;
/** Block status descriptors in one reply. */
const MAX_DESCRIPTORS = 65536;
/** Unread client input held before the socket is paused (requests are 28 bytes each). */
const PAUSE_ABOVE_BYTES = 256 * 1024;
/** Handshake replies queued for a client before we wait for it to read them. */
const HANDSHAKE_QUEUE_BYTES = 64 * 1024;
/** Checks per ioTimeoutMs of whether a client takes its replies. */
const PROGRESS_CHECKS_PER_DEADLINE = 4;

interface Request {
  flags: number;
  command: number;
  cookie: Buffer;
  offsetBytes: number;
  lengthBytes: number;
  payload: Buffer | null;
  /** READ/WRITE longer than the advertised maximum payload: answered with EINVAL. */
  tooLarge: boolean;
}

/** Ends the session without a reply (hard disconnect). */
class HangUp extends Error {}

export class NbdSession {
  readonly done: Promise<void>;
  #stream: Duplex;
  #reader: ByteReader;
  readonly #rawSocket: net.Socket;
  readonly #settings: ServerSettings;
  readonly #abort = new AbortController();
  #structured = false;
  #tlsActive = false;
  /** Export name the base:allocation context was negotiated for, or null. */
  #allocationFor: string | null = null;
  #inFlight = 0;
  #inFlightBytes = 0;
  #slotWaiter: (() => void) | null = null;
  /** Replies handed to the socket and not yet taken by it. */
  #unsentReplies = 0;
  /** Replies the socket has taken (progress, for the reply deadline). */
  #sentReplies = 0;
  #watchedSentReplies = 0;
  #lastProgressMs = 0;
  #watchdog: NodeJS.Timeout | null = null;

  constructor(socket: net.Socket, settings: ServerSettings) {
    this.#rawSocket = socket;
    this.#stream = socket;
    this.#settings = settings;
    socket.setNoDelay(true);
    // Socket errors surface to the reader as the stream ending; this keeps them from being
    // unhandled once TLS owns the stream.
    socket.on('error', () => {});
    this.#reader = new ByteReader(socket, (cause) => new HangUp(cause?.message ?? 'client closed the connection'), PAUSE_ABOVE_BYTES);
    this.done = this.#run();
  }

  /** Drop the client now, whatever it has not read (server closing, or a deadline passed). */
  destroy(): void {
    this.#abort.abort(new HangUp('connection dropped by the server'));
    this.#stream.destroy();
    this.#rawSocket.destroy();
    this.#wakeSlotWaiter();
  }

  async #run(): Promise<void> {
    const handshakeDeadline = setTimeout(() => this.destroy(), this.#settings.ioTimeoutMs);
    try {
      const chosen = await this.#handshake().finally(() => clearTimeout(handshakeDeadline));
      if (chosen) {
        this.#startWatchdog();
        await this.#transmit(chosen);
      }
    } catch (error) {
      if (!(error instanceof HangUp)) throw error;
    } finally {
      if (this.#watchdog) clearInterval(this.#watchdog);
      this.#abort.abort(new HangUp('client connection ended'));
      this.#stream.destroy();
      this.#rawSocket.destroy();
      this.#wakeSlotWaiter();
    }
  }

  /** While replies wait for the client, it must take one within ioTimeoutMs or it is dropped. */
  #startWatchdog(): void {
    this.#lastProgressMs = performance.now();
    this.#watchdog = setInterval(() => {
      const now = performance.now();
      if (this.#unsentReplies === 0 || this.#sentReplies !== this.#watchedSentReplies) {
        this.#watchedSentReplies = this.#sentReplies;
        this.#lastProgressMs = now;
      } else if (now - this.#lastProgressMs >= this.#settings.ioTimeoutMs) {
        this.destroy();
      }
    }, Math.max(1, Math.floor(this.#settings.ioTimeoutMs / PROGRESS_CHECKS_PER_DEADLINE)));
    this.#watchdog.unref();
  }

  /** Handshake replies are small, but a client can ask for them faster than it reads them. */
  async #drainHandshakeReplies(): Promise<void> {
    if (this.#stream.writableLength <= HANDSHAKE_QUEUE_BYTES) return;
    await once(this.#stream, 'drain', { signal: this.#abort.signal }).catch(() => {
      throw new HangUp('connection dropped while the client was not reading');
    });
  }

  // ---- handshake ----

  async #handshake(): Promise<NbdExport | null> {
    const greeting = Buffer.alloc(18);
    greeting.writeBigUInt64BE(NBDMAGIC, 0);
    greeting.writeBigUInt64BE(IHAVEOPT, 8);
    greeting.writeUInt16BE(HandshakeFlag.fixedNewstyle | HandshakeFlag.noZeroes, 16);
    this.#stream.write(greeting);
    const clientFlags = (await this.#reader.readExact(4)).readUInt32BE(0);
    if (clientFlags & ~(HandshakeFlag.fixedNewstyle | HandshakeFlag.noZeroes)) throw new HangUp('unknown client flags');
    const noZeroes = (clientFlags & HandshakeFlag.noZeroes) !== 0;

    for (;;) {
      const header = Buffer.from(await this.#reader.readExact(OPTION_HEADER_BYTES));
      if (header.readBigUInt64BE(0) !== IHAVEOPT) throw new HangUp('bad option magic');
      const option = header.readUInt32BE(8);
      const lengthBytes = header.readUInt32BE(12);
      if (lengthBytes > MAX_OPTION_PAYLOAD_BYTES) throw new HangUp('option too large');
      const data = Buffer.from(await this.#reader.readExact(lengthBytes));
      const reply = (type: number, payload: Buffer = Buffer.alloc(0)) => this.#optionReply(option, type, payload);
      const tlsMissing = this.#settings.tls?.require === true && !this.#tlsActive;

      if (option === Option.startTls) {
        if (!this.#settings.tls) reply(OptionReply.errPolicy, Buffer.from('TLS is not configured'));
        else if (this.#tlsActive || lengthBytes !== 0) reply(OptionReply.errInvalid);
        else {
          reply(OptionReply.ack);
          await this.#startTls();
        }
      } else if (option === Option.abort) {
        reply(OptionReply.ack);
        await new Promise<void>((resolve) => this.#stream.end(resolve));
        return null;
      } else if (tlsMissing) {
        if (option === Option.exportName) throw new HangUp('TLS required');
        reply(OptionReply.errTlsRequired, Buffer.from('this server requires TLS'));
      } else if (option === Option.exportName) {
        const chosen = this.#settings.exports.get(data.toString('utf8'));
        if (!chosen) throw new HangUp('unknown export');
        const answer = Buffer.alloc(noZeroes ? 10 : 134);
        answer.writeBigUInt64BE(BigInt(chosen.disk.sizeBytes), 0);
        answer.writeUInt16BE(this.#transmissionFlags(chosen), 8);
        this.#stream.write(answer);
        return chosen;
      } else if (option === Option.list) {
        if (lengthBytes !== 0) reply(OptionReply.errInvalid);
        else {
          for (const name of this.#settings.exports.keys()) reply(OptionReply.server, lengthPrefixed(name));
          reply(OptionReply.ack);
        }
      } else if (option === Option.structuredReply) {
        if (lengthBytes !== 0) reply(OptionReply.errInvalid);
        else {
          this.#structured = true;
          reply(OptionReply.ack);
        }
      } else if (option === Option.setMetaContext || option === Option.listMetaContext) {
        this.#metaContext(option, data, reply);
      } else if (option === Option.info || option === Option.go) {
        const chosen = this.#infoOrGo(data, reply);
        if (chosen && option === Option.go) return chosen;
      } else {
        reply(OptionReply.errUnsupported);
      }
      await this.#drainHandshakeReplies();
    }
  }

  #infoOrGo(data: Buffer, reply: (type: number, payload?: Buffer) => void): NbdExport | null {
    const parsed = parseGo(data);
    if (!parsed) {
      reply(OptionReply.errInvalid, Buffer.from('malformed NBD_OPT_GO/INFO'));
      return null;
    }
    const chosen = this.#settings.exports.get(parsed.exportName);
    if (!chosen) {
      reply(OptionReply.errUnknownExport, Buffer.from(`no export named "${parsed.exportName}"`));
      return null;
    }
    const exportInfo = Buffer.alloc(12);
    exportInfo.writeUInt16BE(Info.export, 0);
    exportInfo.writeBigUInt64BE(BigInt(chosen.disk.sizeBytes), 2);
    exportInfo.writeUInt16BE(this.#transmissionFlags(chosen), 10);
    reply(OptionReply.info, exportInfo);
    if (parsed.infoRequests.includes(Info.name)) reply(OptionReply.info, Buffer.concat([u16(Info.name), Buffer.from(chosen.name, 'utf8')]));
    if (parsed.infoRequests.includes(Info.description) && chosen.description) {
      reply(OptionReply.info, Buffer.concat([u16(Info.description), Buffer.from(chosen.description, 'utf8')]));
    }
    const blockSize = Buffer.alloc(14);
    blockSize.writeUInt16BE(Info.blockSize, 0);
    blockSize.writeUInt32BE(1, 2);
    blockSize.writeUInt32BE(4096, 6);
    blockSize.writeUInt32BE(this.#settings.maxPayloadBytes, 10);
    reply(OptionReply.info, blockSize);
    reply(OptionReply.ack);
    return chosen;
  }

  #metaContext(option: number, data: Buffer, reply: (type: number, payload?: Buffer) => void): void {
    const parsed = parseMetaContextQuery(data);
    if (!parsed) {
      reply(OptionReply.errInvalid, Buffer.from('malformed meta context request'));
      return;
    }
    if (option === Option.setMetaContext && !this.#structured) {
      reply(OptionReply.errInvalid, Buffer.from('structured replies must be negotiated first'));
      return;
    }
    if (!this.#settings.exports.has(parsed.exportName)) {
      reply(OptionReply.errUnknownExport);
      return;
    }
    const listing = option === Option.listMetaContext;
    const wanted = parsed.queries.some((q) => q === BASE_ALLOCATION || (listing && q === 'base:')) || (listing && parsed.queries.length === 0);
    if (option === Option.setMetaContext) this.#allocationFor = wanted ? parsed.exportName : null;
    if (wanted) {
      const payload = Buffer.alloc(4 + BASE_ALLOCATION.length);
      payload.writeUInt32BE(listing ? 0 : ALLOCATION_CONTEXT_ID, 0);
      payload.write(BASE_ALLOCATION, 4, 'utf8');
      reply(OptionReply.metaContext, payload);
    }
    reply(OptionReply.ack);
  }

  async #startTls(): Promise<void> {
    this.#reader.detach();
    const secure = new tls.TLSSocket(this.#rawSocket, { isServer: true, secureContext: this.#settings.tls!.context });
    this.#stream = secure;
    this.#reader = new ByteReader(secure, (cause) => new HangUp(cause?.message ?? 'client closed the connection'), PAUSE_ABOVE_BYTES);
    await once(secure, 'secure');
    this.#tlsActive = true;
  }

  #optionReply(option: number, type: number, payload: Buffer): void {
    const header = Buffer.alloc(20);
    header.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
    header.writeUInt32BE(option, 8);
    header.writeUInt32BE(type, 12);
    header.writeUInt32BE(payload.length, 16);
    this.#stream.write(Buffer.concat([header, payload]));
  }

  #transmissionFlags(chosen: NbdExport): number {
    let flags = TransmissionFlag.hasFlags | TransmissionFlag.sendDf;
    if (chosen.writable) flags |= TransmissionFlag.sendFlush | TransmissionFlag.sendWriteZeroes;
    else flags |= TransmissionFlag.readOnly;
    if (this.#settings.multiConn) flags |= TransmissionFlag.canMultiConn;
    return flags;
  }

  // ---- transmission ----

  async #transmit(chosen: NbdExport): Promise<void> {
    const allocation = this.#allocationFor === chosen.name;
    for (;;) {
      const header = this.#reader.tryReadExact(REQUEST_HEADER_BYTES) ?? (await this.#reader.readExact(REQUEST_HEADER_BYTES));
      if (header.readUInt32BE(0) !== REQUEST_MAGIC) throw new HangUp('bad request magic');
      const request: Request = {
        flags: header.readUInt16BE(4),
        command: header.readUInt16BE(6),
        cookie: Buffer.from(header.subarray(8, 16)),
        offsetBytes: Number(header.readBigUInt64BE(16)),
        lengthBytes: header.readUInt32BE(24),
        payload: null,
        tooLarge: false,
      };
      if (request.command === Command.disconnect) break;
      let payloadBytes = request.command === Command.write || request.command === Command.read ? request.lengthBytes : 0;
      if (payloadBytes > this.#settings.maxPayloadBytes) {
        // Beyond the advertised maximum block size: EINVAL (NBD protocol), never a buffer of
        // that size. A write's payload is skipped in small pieces to stay in step.
        request.tooLarge = true;
        if (request.command === Command.write) await this.#reader.skip(request.lengthBytes);
        payloadBytes = 0;
      }
      await this.#acquire(payloadBytes);
      if (request.command === Command.write && !request.tooLarge) {
        request.payload = Buffer.allocUnsafe(request.lengthBytes);
        await this.#reader.readInto(request.payload);
      }
      this.#serve(chosen, request, allocation, payloadBytes).catch(() => this.destroy());
    }
    // NBD_CMD_DISC: finish what is in progress, then close.
    while (this.#inFlight > 0) await this.#waitForSlot();
    await new Promise<void>((resolve) => this.#stream.end(resolve));
  }

  /** A request slot on this connection, then its payload bytes from the server-wide budget. */
  async #acquire(payloadBytes: number): Promise<void> {
    while (this.#inFlight >= this.#settings.maxInFlight || (this.#inFlight > 0 && this.#inFlightBytes + payloadBytes > MAX_IN_FLIGHT_BYTES)) {
      await this.#waitForSlot();
    }
    if (payloadBytes > 0) await this.#settings.budget.acquire(payloadBytes, this.#abort.signal);
    this.#inFlight++;
    this.#inFlightBytes += payloadBytes;
  }

  /** Resolves when a request finishes; throws HangUp once the session is being dropped. */
  async #waitForSlot(): Promise<void> {
    if (this.#abort.signal.aborted) throw this.#abort.signal.reason;
    await new Promise<void>((resolve) => (this.#slotWaiter = resolve));
    if (this.#abort.signal.aborted) throw this.#abort.signal.reason;
  }

  #wakeSlotWaiter(): void {
    const wake = this.#slotWaiter;
    this.#slotWaiter = null;
    wake?.();
  }

  #release(payloadBytes: number): void {
    this.#inFlight--;
    this.#inFlightBytes -= payloadBytes;
    if (payloadBytes > 0) this.#settings.budget.release(payloadBytes);
    this.#wakeSlotWaiter();
  }

  async #serve(chosen: NbdExport, request: Request, allocation: boolean, payloadBytes: number): Promise<void> {
    const { disk } = chosen;
    const signal = this.#abort.signal;
    let errno = 0;
    let message = '';
    let data: Buffer | null = null;
    let descriptors: Buffer | null = null;
    try {
      const { command, offsetBytes, lengthBytes } = request;
      const inside = offsetBytes + lengthBytes <= disk.sizeBytes;
      const writeCommand = command === Command.write || command === Command.writeZeroes || command === Command.flush;
      if (request.tooLarge) {
        errno = ErrorNumber.EINVAL;
        message = `${lengthBytes} bytes is more than the maximum block size ${this.#settings.maxPayloadBytes}`;
      } else if (writeCommand && !chosen.writable) {
        errno = ErrorNumber.EPERM;
        message = 'export is read-only';
      } else if (!inside && command !== Command.flush) {
        errno = command === Command.write || command === Command.writeZeroes ? ErrorNumber.ENOSPC : ErrorNumber.EINVAL;
        message = `range [${offsetBytes}, +${lengthBytes}) is beyond the export size ${disk.sizeBytes}`;
      } else if (command === Command.read) {
        data = this.#settings.replyBuffers.take(lengthBytes);
        await disk.read(offsetBytes, data, signal);
      } else if (command === Command.write) {
        await disk.write!(offsetBytes, request.payload!, signal);
      } else if (command === Command.writeZeroes) {
        await disk.writeZeroes!(offsetBytes, lengthBytes, signal);
      } else if (command === Command.flush) {
        await disk.flush?.(signal);
      } else if (command === Command.blockStatus && allocation && lengthBytes > 0) {
        const extents = disk.allocation
          ? await disk.allocation({ offsetBytes, lengthBytes }, signal)
          : [{ offsetBytes, lengthBytes, hole: false, zero: false }];
        descriptors = encodeDescriptors(offsetBytes, lengthBytes, extents, (request.flags & CommandFlag.reqOne) !== 0);
      } else {
        errno = ErrorNumber.EINVAL;
        message = `command ${command} is not supported here`;
      }
    } catch (error) {
      errno = errnoFor(error);
      message = (error as Error).message ?? String(error);
    }
    // The budget and the slot are given back however this ends (also when the client is
    // dropped with the reply unsent), or other connections would wait for them forever.
    try {
      if (signal.aborted) return;
      // The reply deadline runs from when the first of the waiting replies was handed over.
      if (this.#unsentReplies++ === 0) this.#lastProgressMs = performance.now();
      try {
        await this.#reply(request, errno, message, errno === 0 ? data : null, descriptors);
      } finally {
        this.#unsentReplies--;
      }
      this.#sentReplies++;
      // The socket has taken the reply, so the buffer is ours again.
      if (data) this.#settings.replyBuffers.giveBack(data);
    } finally {
      this.#release(payloadBytes);
    }
  }

  /** Write the reply; resolves once the socket has taken it (so the slot can be reused). */
  async #reply(request: Request, errno: number, message: string, data: Buffer | null, descriptors: Buffer | null): Promise<void> {
    const stream = this.#stream;
    const parts: Buffer[] = [];
    if (!this.#structured) {
      const header = Buffer.alloc(16);
      header.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
      header.writeUInt32BE(errno, 4);
      request.cookie.copy(header, 8);
      parts.push(header);
      if (data && errno === 0) parts.push(data);
    } else if (errno !== 0) {
      const text = Buffer.from(message, 'utf8').subarray(0, 4096);
      const payload = Buffer.alloc(6 + text.length);
      payload.writeUInt32BE(errno, 0);
      payload.writeUInt16BE(text.length, 4);
      text.copy(payload, 6);
      parts.push(chunkHeader(request.cookie, ChunkType.error, payload.length), payload);
    } else if (data) {
      const offset = Buffer.alloc(8);
      offset.writeBigUInt64BE(BigInt(request.offsetBytes));
      parts.push(chunkHeader(request.cookie, ChunkType.offsetData, 8 + data.length), offset, data);
    } else if (descriptors) {
      parts.push(chunkHeader(request.cookie, ChunkType.blockStatus, descriptors.length), descriptors);
    } else {
      parts.push(chunkHeader(request.cookie, ChunkType.none, 0));
    }
    await new Promise<void>((resolve, reject) => {
      stream.cork();
      for (let i = 0; i < parts.length - 1; i++) stream.write(parts[i]);
      stream.write(parts[parts.length - 1], (error) => (error ? reject(error) : resolve()));
      stream.uncork();
    });
  }
}

function chunkHeader(cookie: Buffer, type: number, lengthBytes: number): Buffer {
  const header = Buffer.alloc(20);
  header.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
  header.writeUInt16BE(ReplyFlag.done, 4);
  header.writeUInt16BE(type, 6);
  cookie.copy(header, 8);
  header.writeUInt32BE(lengthBytes, 16);
  return header;
}

/** base:allocation descriptors for [offsetBytes, +lengthBytes): gaps in what the disk said count as data. */
function encodeDescriptors(offsetBytes: number, lengthBytes: number, extents: readonly ServedExtent[], onlyOne: boolean): Buffer {
  const endBytes = offsetBytes + lengthBytes;
  const out: { lengthBytes: number; flags: number }[] = [];
  const push = (length: number, flags: number) => {
    const last = out.at(-1);
    if (last && last.flags === flags) last.lengthBytes += length;
    else out.push({ lengthBytes: length, flags });
  };
  let cursorBytes = offsetBytes;
  for (const e of [...extents].sort((a, b) => a.offsetBytes - b.offsetBytes)) {
    const start = Math.max(e.offsetBytes, cursorBytes);
    const end = Math.min(e.offsetBytes + e.lengthBytes, endBytes);
    if (end <= start) continue;
    if (start > cursorBytes) push(start - cursorBytes, 0);
    push(end - start, (e.hole ? AllocationFlag.hole : 0) | (e.zero ? AllocationFlag.zero : 0));
    cursorBytes = end;
    if (out.length >= MAX_DESCRIPTORS) break;
  }
  if (out.length === 0) push(lengthBytes, 0);
  const kept = onlyOne ? out.slice(0, 1) : out.slice(0, MAX_DESCRIPTORS);
  const payload = Buffer.alloc(4 + 8 * kept.length);
  payload.writeUInt32BE(ALLOCATION_CONTEXT_ID, 0);
  kept.forEach((d, i) => {
    payload.writeUInt32BE(d.lengthBytes, 4 + 8 * i);
    payload.writeUInt32BE(d.flags, 8 + 8 * i);
  });
  return payload;
}

function errnoFor(error: unknown): number {
  const e = error as { errno?: unknown; code?: unknown };
  if (error instanceof NbdError && typeof e.errno === 'number') return e.errno;
  if (e.code === 'DISK_RANGE') return ErrorNumber.EINVAL;
  if (e.code === 'DISK_READ_ONLY' || e.code === 'EPERM' || e.code === 'EACCES' || e.code === 'EROFS') return ErrorNumber.EPERM;
  if (e.code === 'ENOSPC' || e.code === 'EDQUOT') return ErrorNumber.ENOSPC;
  if (e.code === 'ENOMEM') return ErrorNumber.ENOMEM;
  return ErrorNumber.EIO;
}

function parseGo(data: Buffer): { exportName: string; infoRequests: number[] } | null {
  if (data.length < 6) return null;
  const nameBytes = data.readUInt32BE(0);
  if (4 + nameBytes + 2 > data.length) return null;
  const count = data.readUInt16BE(4 + nameBytes);
  if (data.length !== 6 + nameBytes + 2 * count) return null;
  const infoRequests = Array.from({ length: count }, (_, i) => data.readUInt16BE(6 + nameBytes + 2 * i));
  return { exportName: data.toString('utf8', 4, 4 + nameBytes), infoRequests };
}

function parseMetaContextQuery(data: Buffer): { exportName: string; queries: string[] } | null {
  if (data.length < 8) return null;
  const nameBytes = data.readUInt32BE(0);
  let at = 4 + nameBytes;
  if (at + 4 > data.length) return null;
  const exportName = data.toString('utf8', 4, at);
  const count = data.readUInt32BE(at);
  at += 4;
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    if (at + 4 > data.length) return null;
    const queryBytes = data.readUInt32BE(at);
    if (at + 4 + queryBytes > data.length) return null;
    queries.push(data.toString('utf8', at + 4, at + 4 + queryBytes));
    at += 4 + queryBytes;
  }
  return at === data.length ? { exportName, queries } : null;
}

function lengthPrefixed(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  return Buffer.concat([u32(bytes.length), bytes]);
}

function u16(value: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(value);
  return b;
}

function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value);
  return b;
}
