// The NBD wire protocol (NetworkBlockDevice/nbd doc/proto.md), as numbers and layouts.
//
// Vocabulary:
// - export: one disk a server offers, chosen by name during the handshake.
// - handshake: the "fixed newstyle" option haggling before data flows. The client sends
//   options (NBD_OPT_*), the server answers each with option replies (NBD_REP_*).
// - transmission: after NBD_OPT_GO (or EXPORT_NAME) the client sends requests (NBD_CMD_*),
//   each tagged with a cookie; the server answers each cookie with a simple reply or, once
//   structured replies are negotiated, with one or more chunks (NBD_REPLY_TYPE_*), the last
//   one flagged DONE. Replies to different cookies may come in any order.
// - transmission flags: what the export supports (read-only, flush, trim, multi-conn, ...).
// - meta context: a named kind of block status; vcbt uses "base:allocation", which says per
//   range whether it is a hole and/or reads as zeroes.
// - block sizes: minimum (alignment of every offset/length), preferred (efficient size) and
//   maximum payload (largest READ/WRITE a request may carry).
//
// All integers are big-endian. This file holds constants only; the client lives in
// client*.ts, the server in server*.ts.

export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const OLDSTYLE_MAGIC = 0x00420281861253n;
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Server handshake flags (16 bits) and the client's answer (32 bits). */
export const HandshakeFlag = { fixedNewstyle: 1, noZeroes: 2 } as const;

export const Option = {
  exportName: 1,
  abort: 2,
  list: 3,
  startTls: 5,
  info: 6,
  go: 7,
  structuredReply: 8,
  listMetaContext: 9,
  setMetaContext: 10,
} as const;

export const REPLY_ERROR_BIT = 0x80000000;
export const OptionReply = {
  ack: 1,
  server: 2,
  info: 3,
  metaContext: 4,
  errUnsupported: REPLY_ERROR_BIT + 1,
  errPolicy: REPLY_ERROR_BIT + 2,
  errInvalid: REPLY_ERROR_BIT + 3,
  errPlatform: REPLY_ERROR_BIT + 4,
  errTlsRequired: REPLY_ERROR_BIT + 5,
  errUnknownExport: REPLY_ERROR_BIT + 6,
  errShutdown: REPLY_ERROR_BIT + 7,
  errBlockSizeRequired: REPLY_ERROR_BIT + 8,
  errTooBig: REPLY_ERROR_BIT + 9,
} as const;

export const Info = { export: 0, name: 1, description: 2, blockSize: 3 } as const;

export const TransmissionFlag = {
  hasFlags: 1 << 0,
  readOnly: 1 << 1,
  sendFlush: 1 << 2,
  sendFua: 1 << 3,
  rotational: 1 << 4,
  sendTrim: 1 << 5,
  sendWriteZeroes: 1 << 6,
  sendDf: 1 << 7,
  canMultiConn: 1 << 8,
  sendResize: 1 << 9,
  sendCache: 1 << 10,
  sendFastZero: 1 << 11,
} as const;

export const Command = {
  read: 0,
  write: 1,
  disconnect: 2,
  flush: 3,
  trim: 4,
  cache: 5,
  writeZeroes: 6,
  blockStatus: 7,
} as const;
export type CommandType = (typeof Command)[keyof typeof Command];

export const CommandFlag = { fua: 1, noHole: 2, df: 4, reqOne: 8, fastZero: 16 } as const;

export const ReplyFlag = { done: 1 } as const;

export const ChunkType = {
  none: 0,
  offsetData: 1,
  offsetHole: 2,
  blockStatus: 5,
  error: 0x8001,
  errorOffset: 0x8002,
} as const;
export const CHUNK_ERROR_BIT = 0x8000;

/** base:allocation status bits. */
export const AllocationFlag = { hole: 1, zero: 2 } as const;
export const BASE_ALLOCATION = 'base:allocation';

/** Error numbers on the wire, and the names vcbt uses as error codes (`NBD_EIO`, ...). */
export const ErrorNumber = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;
export type ErrorName = keyof typeof ErrorNumber;

export function errorName(errno: number): ErrorName | `E${number}` {
  for (const [name, value] of Object.entries(ErrorNumber)) if (value === errno) return name as ErrorName;
  return `E${errno}`;
}

export const SIMPLE_REPLY_HEADER_BYTES = 16;
export const STRUCTURED_REPLY_HEADER_BYTES = 20;
export const REQUEST_HEADER_BYTES = 28;
export const OPTION_HEADER_BYTES = 16;
export const OPTION_REPLY_HEADER_BYTES = 20;

export const DEFAULT_PORT = 10809;
/** Payload limit when the server states none (proto.md: clients should stay within 32 MiB). */
export const DEFAULT_MAX_PAYLOAD_BYTES = 32 * 1024 * 1024;
/** Largest option or option reply payload we accept; real ones are a few hundred bytes. */
export const MAX_OPTION_PAYLOAD_BYTES = 64 * 1024;
