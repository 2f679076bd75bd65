// A deliberately misbehaving NBD server for client error-path tests: it completes a real
// fixed-newstyle handshake (structured replies, no meta contexts, GO with a fixed export
// size) and then hands each READ request to the test, which decides what to send back - out
// of order, short, malformed, or nothing before hanging up. Written from the spec, sharing no
// code with the client under test.

import net from 'node:net';
import path from 'node:path';

export interface FakeRequest {
  command: number;
  cookie: Buffer;
  offsetBytes: number;
  lengthBytes: number;
}

export interface FakeServer {
  uri: string;
  close(): Promise<void>;
}

export type OnRequests = (request: FakeRequest, socket: net.Socket) => void;

export interface FakeServerOptions {
  /** Answer NBD_OPT_GO with ERR_UNSUP, like servers from before GO existed. */
  withoutGo?: boolean;
  /** Stall the handshake: say nothing at all, or send the greeting and ignore every option. */
  stall?: 'silent' | 'after-greeting';
}

export async function startFakeServer(dir: string, sizeBytes: number, onRequest: OnRequests, options: FakeServerOptions = {}): Promise<FakeServer> {
  const socketPath = path.join(dir, 'fake.sock');
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    if (options.stall === 'silent') return;
    let input = Buffer.alloc(0);
    let phase: 'flags' | 'options' | 'requests' = 'flags';
    const greeting = Buffer.alloc(18);
    greeting.write('NBDMAGIC', 0, 'latin1');
    greeting.write('IHAVEOPT', 8, 'latin1');
    greeting.writeUInt16BE(3, 16);
    socket.write(greeting);
    const optionReply = (option: number, type: number, payload = Buffer.alloc(0)) => {
      const header = Buffer.alloc(20);
      header.writeBigUInt64BE(0x3e889045565a9n, 0);
      header.writeUInt32BE(option, 8);
      header.writeUInt32BE(type, 12);
      header.writeUInt32BE(payload.length, 16);
      socket.write(Buffer.concat([header, payload]));
    };
    if (options.stall === 'after-greeting') return;
    socket.on('data', (chunk: Buffer) => {
      input = Buffer.concat([input, chunk]);
      for (;;) {
        if (phase === 'flags') {
          if (input.length < 4) return;
          input = input.subarray(4);
          phase = 'options';
        } else if (phase === 'options') {
          if (input.length < 16) return;
          const option = input.readUInt32BE(8);
          const length = input.readUInt32BE(12);
          if (input.length < 16 + length) return;
          input = input.subarray(16 + length);
          if (option === 8 || option === 10) optionReply(option, 1); // STRUCTURED_REPLY, SET_META_CONTEXT: ack
          else if (option === 1) {
            // EXPORT_NAME: size and flags, no zero padding (the client accepted NO_ZEROES).
            const answer = Buffer.alloc(10);
            answer.writeBigUInt64BE(BigInt(sizeBytes), 0);
            answer.writeUInt16BE(1 | 2, 8);
            socket.write(answer);
            phase = 'requests';
          } else if (option === 7 && options.withoutGo) optionReply(option, 0x80000001);
          else if (option === 7) {
            const info = Buffer.alloc(12);
            info.writeUInt16BE(0, 0);
            info.writeBigUInt64BE(BigInt(sizeBytes), 2);
            info.writeUInt16BE(1 | 2, 10); // HAS_FLAGS | READ_ONLY
            optionReply(option, 3, info);
            optionReply(option, 1);
            phase = 'requests';
          } else optionReply(option, 0x80000001);
        } else {
          if (input.length < 28) return;
          const request: FakeRequest = {
            command: input.readUInt16BE(6),
            cookie: Buffer.from(input.subarray(8, 16)),
            offsetBytes: Number(input.readBigUInt64BE(16)),
            lengthBytes: input.readUInt32BE(24),
          };
          input = input.subarray(28);
          onRequest(request, socket);
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    uri: `nbd+unix:///?socket=${socketPath}`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A structured reply chunk. */
export function chunk(cookie: Buffer, type: number, payload: Buffer, done = true): Buffer {
  const header = Buffer.alloc(20);
  header.writeUInt32BE(0x668e33ef, 0);
  header.writeUInt16BE(done ? 1 : 0, 4);
  header.writeUInt16BE(type, 6);
  cookie.copy(header, 8);
  header.writeUInt32BE(payload.length, 16);
  return Buffer.concat([header, payload]);
}

/** An OFFSET_DATA chunk carrying `data` at offsetBytes. */
export function dataChunk(cookie: Buffer, offsetBytes: number, data: Buffer, done = true): Buffer {
  const offset = Buffer.alloc(8);
  offset.writeBigUInt64BE(BigInt(offsetBytes));
  return chunk(cookie, 1, Buffer.concat([offset, data]), done);
}
