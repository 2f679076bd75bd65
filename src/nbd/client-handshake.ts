// The client side of the fixed newstyle handshake: optional STARTTLS, structured replies,
// the base:allocation meta context, then NBD_OPT_GO asking for block sizes (falling back to
// NBD_OPT_EXPORT_NAME for servers without GO). The result says what transmission may use.

import type { Duplex } from 'node:stream';
import { ByteReader } from './byte-reader.ts';
import { NbdError } from './errors.ts';
import type { ErrorCode } from '../errors.ts';
import {
  BASE_ALLOCATION,
  DEFAULT_MAX_PAYLOAD_BYTES,
  HandshakeFlag,
  IHAVEOPT,
  Info,
  MAX_OPTION_PAYLOAD_BYTES,
  NBDMAGIC,
  OPTION_HEADER_BYTES,
  OLDSTYLE_MAGIC,
  Option,
  OPTION_REPLY_HEADER_BYTES,
  OPTION_REPLY_MAGIC,
  OptionReply,
  REPLY_ERROR_BIT,
} from './protocol.ts';

export interface BlockSizes {
  minimumBytes: number;
  preferredBytes: number;
  maximumPayloadBytes: number;
}

export interface NegotiatedExport {
  sizeBytes: number;
  transmissionFlags: number;
  blockSizes: BlockSizes;
  structuredReplies: boolean;
  /** Context id the server gave base:allocation, or null when block status is unavailable. */
  allocationContextId: number | null;
}

export interface HandshakeIo {
  stream: Duplex;
  reader: ByteReader;
}

export interface HandshakeOptions {
  exportName: string;
  server: string;
  /** Ask for structured replies (default true; false only to exercise simple replies). */
  structuredReplies?: boolean;
  /** Called after the server accepted STARTTLS; returns the stream and reader to continue on. */
  startTls?: (io: HandshakeIo) => Promise<HandshakeIo>;
}

interface OptionReplyFrame {
  type: number;
  payload: Buffer;
}

export async function negotiate(io: HandshakeIo, options: HandshakeOptions): Promise<{ io: HandshakeIo; negotiated: NegotiatedExport }> {
  const context = { server: options.server, exportName: options.exportName };
  const fail = (code: ErrorCode, message: string) => new NbdError(code, `${options.server}: ${message}`, context);

  const greeting = Buffer.from(await io.reader.readExact(18));
  if (greeting.readBigUInt64BE(0) !== NBDMAGIC) throw fail('NBD_PROTOCOL', 'not an NBD server (bad greeting magic)');
  const second = greeting.readBigUInt64BE(8);
  if (second === OLDSTYLE_MAGIC) throw fail('NBD_PROTOCOL', 'server speaks the oldstyle handshake, which vcbt does not support');
  if (second !== IHAVEOPT) throw fail('NBD_PROTOCOL', 'bad handshake magic');
  const serverFlags = greeting.readUInt16BE(16);
  if (!(serverFlags & HandshakeFlag.fixedNewstyle)) throw fail('NBD_PROTOCOL', 'server does not support fixed newstyle negotiation');
  const noZeroes = (serverFlags & HandshakeFlag.noZeroes) !== 0;
  const clientFlags = Buffer.alloc(4);
  clientFlags.writeUInt32BE(HandshakeFlag.fixedNewstyle | (noZeroes ? HandshakeFlag.noZeroes : 0));
  io.stream.write(clientFlags);

  const send = (option: number, payload: Buffer = Buffer.alloc(0)) => {
    const header = Buffer.allocUnsafe(OPTION_HEADER_BYTES);
    header.writeBigUInt64BE(IHAVEOPT, 0);
    header.writeUInt32BE(option, 8);
    header.writeUInt32BE(payload.length, 12);
    io.stream.write(Buffer.concat([header, payload]));
  };
  const receive = async (option: number): Promise<OptionReplyFrame> => {
    const header = Buffer.from(await io.reader.readExact(OPTION_REPLY_HEADER_BYTES));
    if (header.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) throw fail('NBD_PROTOCOL', 'bad option reply magic');
    if (header.readUInt32BE(8) !== option) throw fail('NBD_PROTOCOL', `option reply for option ${header.readUInt32BE(8)}, expected ${option}`);
    const type = header.readUInt32BE(12);
    const lengthBytes = header.readUInt32BE(16);
    if (lengthBytes > MAX_OPTION_PAYLOAD_BYTES) throw fail('NBD_PROTOCOL', `option reply of ${lengthBytes} bytes is too large`);
    const payload = Buffer.from(await io.reader.readExact(lengthBytes));
    return { type, payload };
  };
  const refusal = (what: string, reply: OptionReplyFrame) => {
    const message = reply.payload.length > 0 ? `: ${reply.payload.toString('utf8')}` : '';
    if (reply.type === OptionReply.errTlsRequired) {
      return fail('NBD_HANDSHAKE', `server requires TLS (use an nbds:// URI)${message}`);
    }
    if (reply.type === OptionReply.errUnknownExport) {
      return fail('NBD_HANDSHAKE', `export "${options.exportName}" does not exist${message}`);
    }
    return fail('NBD_HANDSHAKE', `server refused ${what} (reply ${replyName(reply.type)})${message}`);
  };

  if (options.startTls) {
    send(Option.startTls);
    const reply = await receive(Option.startTls);
    if (reply.type !== OptionReply.ack) {
      throw fail('NBD_TLS', `server refused STARTTLS (reply ${replyName(reply.type)}); it may not be configured for TLS`);
    }
    io.reader.detach();
    io = await options.startTls(io);
  }

  let reply: OptionReplyFrame;
  let structuredReplies = false;
  if (options.structuredReplies ?? true) {
    send(Option.structuredReply);
    reply = await receive(Option.structuredReply);
    if (reply.type !== OptionReply.ack && !(reply.type & REPLY_ERROR_BIT)) throw fail('NBD_PROTOCOL', 'unexpected reply to STRUCTURED_REPLY');
    structuredReplies = reply.type === OptionReply.ack;
  }

  let allocationContextId: number | null = null;
  if (structuredReplies) {
    send(Option.setMetaContext, metaContextQuery(options.exportName, [BASE_ALLOCATION]));
    for (;;) {
      reply = await receive(Option.setMetaContext);
      if (reply.type === OptionReply.ack) break;
      if (reply.type & REPLY_ERROR_BIT) {
        if (reply.type === OptionReply.errTlsRequired || reply.type === OptionReply.errUnknownExport) throw refusal('SET_META_CONTEXT', reply);
        break;
      }
      if (reply.type !== OptionReply.metaContext || reply.payload.length < 4) throw fail('NBD_PROTOCOL', 'bad reply to SET_META_CONTEXT');
      if (reply.payload.toString('utf8', 4) === BASE_ALLOCATION) allocationContextId = reply.payload.readUInt32BE(0);
    }
  }

  let sizeBytes: number | null = null;
  let transmissionFlags = 0;
  const blockSizes: BlockSizes = { minimumBytes: 1, preferredBytes: 4096, maximumPayloadBytes: DEFAULT_MAX_PAYLOAD_BYTES };
  send(Option.go, goPayload(options.exportName, [Info.blockSize]));
  for (;;) {
    reply = await receive(Option.go);
    if (reply.type === OptionReply.ack) break;
    if (reply.type === OptionReply.errUnsupported) {
      // A server from before NBD_OPT_GO: EXPORT_NAME ends the handshake without any reply frame.
      send(Option.exportName, Buffer.from(options.exportName, 'utf8'));
      const answer = Buffer.from(await io.reader.readExact(10 + (noZeroes ? 0 : 124)));
      sizeBytes = Number(answer.readBigUInt64BE(0));
      transmissionFlags = answer.readUInt16BE(8);
      break;
    }
    if (reply.type & REPLY_ERROR_BIT) throw refusal('GO', reply);
    if (reply.type !== OptionReply.info || reply.payload.length < 2) throw fail('NBD_PROTOCOL', 'bad reply to GO');
    const infoType = reply.payload.readUInt16BE(0);
    if (infoType === Info.export) {
      if (reply.payload.length !== 12) throw fail('NBD_PROTOCOL', 'bad NBD_INFO_EXPORT');
      sizeBytes = Number(reply.payload.readBigUInt64BE(2));
      transmissionFlags = reply.payload.readUInt16BE(10);
    } else if (infoType === Info.blockSize) {
      if (reply.payload.length !== 14) throw fail('NBD_PROTOCOL', 'bad NBD_INFO_BLOCK_SIZE');
      blockSizes.minimumBytes = reply.payload.readUInt32BE(2);
      blockSizes.preferredBytes = reply.payload.readUInt32BE(6);
      blockSizes.maximumPayloadBytes = reply.payload.readUInt32BE(10);
    }
  }
  if (sizeBytes === null) throw fail('NBD_PROTOCOL', 'server finished GO without NBD_INFO_EXPORT');
  if (!Number.isSafeInteger(sizeBytes)) throw fail('NBD_PROTOCOL', `export size ${sizeBytes} is too large`);
  const { minimumBytes, preferredBytes, maximumPayloadBytes } = blockSizes;
  const powerOfTwo = (n: number) => n > 0 && (n & (n - 1)) === 0;
  if (!powerOfTwo(minimumBytes) || minimumBytes > 65536 || !powerOfTwo(preferredBytes) || maximumPayloadBytes < minimumBytes) {
    throw fail('NBD_PROTOCOL', `invalid block sizes ${minimumBytes}/${preferredBytes}/${maximumPayloadBytes}`);
  }
  return { io, negotiated: { sizeBytes, transmissionFlags, blockSizes, structuredReplies, allocationContextId } };
}

function goPayload(exportName: string, infoRequests: number[]): Buffer {
  const name = Buffer.from(exportName, 'utf8');
  const payload = Buffer.alloc(4 + name.length + 2 + 2 * infoRequests.length);
  payload.writeUInt32BE(name.length, 0);
  name.copy(payload, 4);
  payload.writeUInt16BE(infoRequests.length, 4 + name.length);
  infoRequests.forEach((info, i) => payload.writeUInt16BE(info, 6 + name.length + 2 * i));
  return payload;
}

function metaContextQuery(exportName: string, queries: string[]): Buffer {
  const parts = [lengthPrefixed(exportName), Buffer.alloc(4)];
  parts[1].writeUInt32BE(queries.length);
  for (const query of queries) parts.push(lengthPrefixed(query));
  return Buffer.concat(parts);
}

function lengthPrefixed(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const out = Buffer.alloc(4 + bytes.length);
  out.writeUInt32BE(bytes.length);
  bytes.copy(out, 4);
  return out;
}

function replyName(type: number): string {
  for (const [name, value] of Object.entries(OptionReply)) if (value === type) return name;
  return `0x${type.toString(16)}`;
}
