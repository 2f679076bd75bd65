// NbdServer bounded under hostile clients (in-process; the memory figures of a real
// `vcbt export` process are checked in test/jobs/export.test.ts): a connection cap that
// refuses extra clients at once, a handshake deadline, option payloads above the limit,
// reads and writes above the maximum block size answered with EINVAL, clients that never
// read their replies dropped after the deadline (freeing the server-wide budget for
// others), and close() that returns while clients hold unread replies.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { NbdServer, type NbdServerOptions } from '../../src/nbd/server.ts';
import { NbdConnection } from '../../src/nbd/client-connection.ts';
import { NbdClient } from '../../src/nbd/client.ts';
import { parseNbdUri } from '../../src/nbd/uri.ts';
import { MemoryDisk } from './memory-disk.ts';
import { tempDir } from './peers.ts';
import { clientFlags, connectRaw, infoOption, option, unreadReads } from './hostile-clients.ts';

const MiB = 1024 * 1024;

async function serve(t: { after(fn: () => Promise<void>): void }, options: Partial<NbdServerOptions> = {}) {
  const dir = await tempDir(t);
  const disk = new MemoryDisk(8 * MiB, [{ offsetBytes: 0, lengthBytes: 8 * MiB }]);
  const socketPath = path.join(dir, 'nbd.sock');
  const server = await NbdServer.listen({ exports: [{ name: 'disk', disk, writable: true }], listen: { socketPath }, ...options });
  t.after(() => server.close());
  return { server, disk, where: { socketPath }, uri: server.uri('disk') };
}

test('limits: connections beyond maxConnections are closed at once; a freed place is served again', async (t) => {
  const { server, where, uri } = await serve(t, { maxConnections: 3 });
  const held = await Promise.all([0, 1, 2].map(() => connectRaw(where)));
  // Wait until the server has greeted all three (18 bytes each).
  while (held.some((c) => c.receivedBytes() < 18)) await new Promise((resolve) => setTimeout(resolve, 10));
  const extra = await Promise.all(Array.from({ length: 20 }, () => connectRaw(where)));
  await Promise.all(extra.map((c) => c.closed()));
  assert.deepEqual(extra.map((c) => c.receivedBytes()), Array(20).fill(0), 'refused before the greeting');
  assert.equal(server.refusedConnections, 20);
  assert.equal(server.sessionCount, 3);
  held[0].socket.destroy();
  await held[0].closed();
  while (server.sessionCount > 2) await new Promise((resolve) => setTimeout(resolve, 10));
  const client = await NbdClient.connect(uri, { connections: 1 });
  t.after(() => client.close());
  assert.equal(client.sizeBytes, 8 * MiB);
  for (const c of held) c.socket.destroy();
});

test('limits: a client that never finishes the handshake is dropped after ioTimeoutMs, also while it keeps sending options', async (t) => {
  const { server, where } = await serve(t, { ioTimeoutMs: 300 });
  const silent = await connectRaw(where);
  const haggler = await connectRaw(where);
  haggler.socket.write(clientFlags());
  const timer = setInterval(() => haggler.socket.write(infoOption('disk')), 50);
  t.after(() => clearInterval(timer));
  await Promise.all([silent.closed(), haggler.closed()]);
  clearInterval(timer);
  assert.ok(haggler.receivedBytes() > 18, 'its options were answered until then');
  while (server.sessionCount > 0) await new Promise((resolve) => setTimeout(resolve, 10));
});

test('limits: an option payload above 64 KiB closes the connection without reading it', async (t) => {
  const { where } = await serve(t);
  const client = await connectRaw(where);
  client.socket.write(clientFlags());
  client.socket.write(option(6, Buffer.alloc(64 * 1024 + 1)));
  await client.closed();
});

test('limits: READ and WRITE above the maximum block size get EINVAL; the connection stays in step', async (t) => {
  const { uri, disk } = await serve(t, { maxPayloadBytes: MiB });
  const connection = await NbdConnection.open(parseNbdUri(uri), {});
  t.after(() => connection.close());
  assert.equal(connection.negotiated.blockSizes.maximumPayloadBytes, MiB);
  await assert.rejects(connection.read(0, Buffer.alloc(MiB + 512)), { code: 'NBD_EINVAL', message: /maximum block size/ });
  await assert.rejects(connection.write(0, Buffer.alloc(2 * MiB, 0xab)), { code: 'NBD_EINVAL' });
  assert.notEqual(disk.bytes[0], 0xab, 'the oversized write changed nothing');
  const target = Buffer.alloc(4096);
  await connection.read(4096, target);
  assert.ok(target.equals(disk.bytes.subarray(4096, 8192)));
});

test('limits: clients that never read their replies are dropped after ioTimeoutMs and free the budget for others', async (t) => {
  // A budget of one 8 MiB reply: the hostile clients hold all of it until they are dropped.
  // (A generous deadline: the good client shares this process's event loop with the server.)
  const { server, where, uri, disk } = await serve(t, { ioTimeoutMs: 1500, maxQueuedBytes: 8 * MiB });
  const hostile = await Promise.all([0, 1].map(() => unreadReads(where, 'disk', 16, 8 * MiB)));
  const client = await NbdClient.connect(uri, { connections: 1, ioTimeoutMs: 30_000 });
  t.after(() => client.close());
  const target = Buffer.alloc(8 * MiB);
  await client.read(0, target);
  assert.ok(target.equals(disk.bytes));
  while (server.sessionCount > 1) await new Promise((resolve) => setTimeout(resolve, 20));
  await Promise.all(hostile.map((c) => c.closed()));
});

test('limits: close() returns while clients hold unread replies (their sockets are destroyed)', async (t) => {
  const { server, where } = await serve(t);
  const hostile = await Promise.all([0, 1, 2, 3].map(() => unreadReads(where, 'disk', 16, 8 * MiB)));
  // Let the server produce replies until its budget or the sockets are full.
  while (server.sessionCount < 4) await new Promise((resolve) => setTimeout(resolve, 10));
  await new Promise((resolve) => setTimeout(resolve, 200));
  await server.close();
  await Promise.all(hostile.map((c) => c.closed()));
  assert.equal(server.sessionCount, 0);
});
