// Misbehaving NBD clients for server tests, written from the protocol spec over raw sockets
// (sharing no code with the server under test): connections that never finish the
// handshake, floods of NBD_OPT_INFO whose answers are never read, option payloads above the
// limit, and clients that pipeline reads and never read the replies.

import net from 'node:net';
import { once } from 'node:events';

const IHAVEOPT = Buffer.from('IHAVEOPT', 'latin1');
const NBD_OPT_EXPORT_NAME = 1;
const NBD_OPT_INFO = 6;
const NBD_CMD_READ = 0;
const NBD_CMD_WRITE = 1;

export interface Where {
  socketPath: string;
}

export interface RawClient {
  socket: net.Socket;
  /**
   * Resolves when the server has closed (or reset) the connection. A paused socket notices
   * that only by reading, so this resumes it (whatever is still unread is discarded).
   */
  closed(): Promise<void>;
  /** Bytes received from the server (counted only while the socket is not paused). */
  receivedBytes(): number;
}

/** Connect; `read: false` pauses the socket at once, so nothing the server sends is read. */
export async function connectRaw(where: Where, options: { read?: boolean } = {}): Promise<RawClient> {
  const socket = net.connect(where.socketPath);
  socket.on('error', () => {});
  let received = 0;
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  if (options.read === false) socket.pause();
  else socket.on('data', (d: Buffer) => (received += d.length));
  await once(socket, 'connect');
  return {
    socket,
    closed: () => {
      socket.resume();
      return closed;
    },
    receivedBytes: () => received,
  };
}

/** One option request. */
export function option(code: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(16);
  IHAVEOPT.copy(header, 0);
  header.writeUInt32BE(code, 8);
  header.writeUInt32BE(payload.length, 12);
  return Buffer.concat([header, payload]);
}

/** The client flags (fixed newstyle, no zeroes). */
export function clientFlags(): Buffer {
  const flags = Buffer.alloc(4);
  flags.writeUInt32BE(3);
  return flags;
}

/** NBD_OPT_INFO for `exportName`, asking for NAME and BLOCK_SIZE. */
export function infoOption(exportName: string): Buffer {
  const name = Buffer.from(exportName, 'utf8');
  const payload = Buffer.alloc(4 + name.length + 2 + 4);
  payload.writeUInt32BE(name.length, 0);
  name.copy(payload, 4);
  payload.writeUInt16BE(2, 4 + name.length);
  payload.writeUInt16BE(1, 6 + name.length);
  payload.writeUInt16BE(3, 8 + name.length);
  return option(NBD_OPT_INFO, payload);
}

/** Client flags then NBD_OPT_EXPORT_NAME: the connection is in transmission right after. */
export function enterTransmission(exportName: string): Buffer {
  return Buffer.concat([clientFlags(), option(NBD_OPT_EXPORT_NAME, Buffer.from(exportName, 'utf8'))]);
}

/** A READ (or, with `payload`, WRITE) request. */
export function request(cookie: number, offsetBytes: number, lengthBytes: number, payload?: Buffer): Buffer {
  const header = Buffer.alloc(28);
  header.writeUInt32BE(0x25609513, 0);
  header.writeUInt16BE(payload ? NBD_CMD_WRITE : NBD_CMD_READ, 6);
  header.writeUInt32BE(cookie, 12);
  header.writeBigUInt64BE(BigInt(offsetBytes), 16);
  header.writeUInt32BE(lengthBytes, 24);
  return payload ? Buffer.concat([header, payload]) : header;
}

/** A client that enters transmission and asks for `reads` reads of `lengthBytes` it never reads. */
export async function unreadReads(where: Where, exportName: string, reads: number, lengthBytes: number): Promise<RawClient> {
  const client = await connectRaw(where, { read: false });
  client.socket.write(enterTransmission(exportName));
  for (let i = 0; i < reads; i++) client.socket.write(request(i + 1, 0, lengthBytes));
  return client;
}

/** A client that sends `totalBytes` of NBD_OPT_INFO and never reads an answer. */
export async function infoFlood(where: Where, exportName: string, totalBytes: number): Promise<RawClient> {
  const client = await connectRaw(where, { read: false });
  const one = infoOption(exportName);
  const batch = Buffer.concat(Array.from({ length: Math.ceil(1024 * 1024 / one.length) }, () => one));
  client.socket.write(clientFlags());
  for (let sent = 0; sent < totalBytes; sent += batch.length) client.socket.write(batch);
  return client;
}
