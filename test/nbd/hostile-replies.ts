// Read replies that break the NBD rule "the chunks of a structured reply cover every byte of
// the request exactly once", for the fake server (test/nbd/fake-server.ts). Several of them
// add up to exactly the requested length, so a client that only counts bytes accepts them
// and hands out wrong bytes. The data is `fillByte` everywhere, so wrong bytes are visible.

import type net from 'node:net';
import { chunk, dataChunk, type FakeRequest } from './fake-server.ts';

/** An OFFSET_HOLE chunk over [offsetBytes, +lengthBytes). */
export function holeChunk(cookie: Buffer, offsetBytes: number, lengthBytes: number, done = true): Buffer {
  const payload = Buffer.alloc(12);
  payload.writeBigUInt64BE(BigInt(offsetBytes), 0);
  payload.writeUInt32BE(lengthBytes, 8);
  return chunk(cookie, 2, payload, done);
}

export const fillByte = 0x42;

export type Reply = (r: FakeRequest, socket: net.Socket) => void;

const data = (lengthBytes: number) => Buffer.alloc(lengthBytes, fillByte);

/** Each misbehaviour by name; requests are at least 4 KiB and multiples of 4 KiB. */
export const hostileReplies: Record<string, Reply> = {
  // 2 x half = the full length, but the second half is never sent.
  'two OFFSET_DATA chunks over the same half': (r, socket) => {
    const half = r.lengthBytes / 2;
    socket.write(dataChunk(r.cookie, r.offsetBytes, data(half), false));
    socket.write(dataChunk(r.cookie, r.offsetBytes, data(half), true));
  },
  // Data over the first 3/4, a hole over the third quarter: 3/4 + 1/4 = the full length.
  'a hole overlapping data': (r, socket) => {
    const quarter = r.lengthBytes / 4;
    socket.write(dataChunk(r.cookie, r.offsetBytes, data(3 * quarter), false));
    socket.write(holeChunk(r.cookie, r.offsetBytes + 2 * quarter, quarter, true));
  },
  // The first and last quarters only.
  'a gap between two chunks': (r, socket) => {
    const quarter = r.lengthBytes / 4;
    socket.write(dataChunk(r.cookie, r.offsetBytes, data(quarter), false));
    socket.write(dataChunk(r.cookie, r.offsetBytes + 3 * quarter, data(quarter), true));
  },
  // All of the request, then 512 bytes more past its end.
  'a chunk past the end of the request': (r, socket) => {
    socket.write(dataChunk(r.cookie, r.offsetBytes, data(r.lengthBytes), false));
    socket.write(dataChunk(r.cookie, r.offsetBytes + r.lengthBytes, data(512), true));
  },
  // The whole request twice over.
  'the whole request twice (excess)': (r, socket) => {
    socket.write(dataChunk(r.cookie, r.offsetBytes, data(r.lengthBytes), false));
    socket.write(dataChunk(r.cookie, r.offsetBytes, data(r.lengthBytes), true));
  },
  // A hole of length 0 (the protocol requires a non-zero hole), then all the data.
  'an empty hole chunk': (r, socket) => {
    socket.write(holeChunk(r.cookie, r.offsetBytes, 0, false));
    socket.write(dataChunk(r.cookie, r.offsetBytes, data(r.lengthBytes), true));
  },
};
