// NbdClient when things go wrong: server errors (nbdkit's error filter), a server that
// disconnects mid-request (a raw-socket server and a killed nbdkit), replies out of order,
// replies that end short, protocol violations, aborted requests, unknown exports, refused connections.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { NbdClient } from '../../src/nbd/client.ts';
import { NbdServer } from '../../src/nbd/server.ts';
import { chunk, dataChunk, startFakeServer, type FakeRequest } from './fake-server.ts';
import { startNbdkit, tempDir } from './peers.ts';
import { MemoryDisk } from './memory-disk.ts';

const MiB = 1024 * 1024;

test('a server EIO becomes code NBD_EIO naming the command, offset and length', async (t) => {
  const peer = await startNbdkit(['memory', String(MiB), 'error-pread=EIO', 'error-pread-rate=100%'], { before: ['--filter=error'] });
  const client = await NbdClient.connect(peer.uri);
  t.after(async () => {
    await client.close();
    await peer.stop();
  });
  const error = await client.read(65536, Buffer.alloc(4096)).then(() => null, (e: unknown) => e);
  assert.ok(error instanceof Error);
  assert.equal((error as { code?: string }).code, 'NBD_EIO');
  assert.match(error.message, /READ of 4096 bytes at offset 65536 failed with NBD_EIO/);
  assert.deepEqual((error as unknown as { context: object }).context, {
    server: peer.uri, command: 'READ', offsetBytes: 65536, lengthBytes: 4096, errorOffsetBytes: undefined,
  });
  // The connection stays usable after a per-request error.
  await client.write(0, Buffer.alloc(512, 1));
});

test('a server that hangs up mid-request rejects every pending request at once, and later ones', async (t) => {
  const dir = await tempDir(t);
  const seen: FakeRequest[] = [];
  const fake = await startFakeServer(dir, MiB, (request, socket) => {
    seen.push(request);
    if (seen.length === 3) socket.destroy();
  });
  t.after(() => fake.close());
  const client = await NbdClient.connect(fake.uri);
  const results = await Promise.allSettled([0, 1, 2].map((i) => client.read(i * 4096, Buffer.alloc(4096))));
  for (const r of results) {
    assert.equal(r.status, 'rejected');
    assert.equal((r.reason as { code: string }).code, 'NBD_DISCONNECTED');
    assert.match((r.reason as Error).message, /server closed the connection during transmission/);
  }
  await assert.rejects(client.read(0, Buffer.alloc(512)), { code: 'NBD_DISCONNECTED' });
  await client.close();
});

for (const [signal, code] of [['SIGKILL', 'NBD_DISCONNECTED'], ['SIGTERM', 'NBD_ESHUTDOWN']] as const) {
  test(`stopping nbdkit with ${signal} while reads wait on it rejects them with ${code} (no hang)`, async (t) => {
    const peer = await startNbdkit(['memory', String(MiB), 'delay-read=30'], { before: ['--filter=delay'] });
    const client = await NbdClient.connect(peer.uri, { connections: 1 });
    t.after(async () => {
      await client.close();
      await peer.stop('SIGKILL');
    });
    const reads = [client.read(0, Buffer.alloc(512)), client.read(4096, Buffer.alloc(512))];
    const pending = Promise.allSettled(reads);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await peer.stop(signal);
    for (const r of await pending) {
      assert.equal(r.status, 'rejected');
      assert.equal((r.reason as { code: string }).code, code);
    }
  });
}

test('replies out of order land in the right buffers; chunks may split a read', async (t) => {
  const dir = await tempDir(t);
  const held: FakeRequest[] = [];
  const fill = (r: FakeRequest) => Buffer.alloc(r.lengthBytes, r.offsetBytes / 4096 + 1);
  const fake = await startFakeServer(dir, MiB, (request, socket) => {
    held.push(request);
    if (held.length < 4) return;
    for (const r of held.reverse()) {
      // Second half first, then the first half as the final chunk.
      const data = fill(r);
      const half = r.lengthBytes / 2;
      socket.write(dataChunk(r.cookie, r.offsetBytes + half, data.subarray(half), false));
      socket.write(dataChunk(r.cookie, r.offsetBytes, data.subarray(0, half), true));
    }
  });
  t.after(() => fake.close());
  const client = await NbdClient.connect(fake.uri);
  t.after(() => client.close());
  const targets = [0, 1, 2, 3].map(() => Buffer.alloc(4096));
  await Promise.all(targets.map((target, i) => client.read(i * 4096, target)));
  targets.forEach((target, i) => assert.ok(target.equals(Buffer.alloc(4096, i + 1)), `buffer ${i}`));
});

test('a read reply that ends without covering the request is NBD_PROTOCOL naming the gap', async (t) => {
  const dir = await tempDir(t);
  const fake = await startFakeServer(dir, MiB, (r, socket) => {
    socket.write(dataChunk(r.cookie, r.offsetBytes, Buffer.alloc(100, 9), false));
    socket.write(chunk(r.cookie, 0, Buffer.alloc(0), true));
  });
  t.after(() => fake.close());
  const client = await NbdClient.connect(fake.uri);
  t.after(() => client.close());
  await assert.rejects(client.read(8192, Buffer.alloc(4096)), {
    code: 'NBD_PROTOCOL',
    message: /READ of 4096 bytes at offset 8192 ended with 3996 bytes not covered \(first gap at offset 8292\)/,
  });
});

test('a chunk outside the request is a protocol violation that fails the connection', async (t) => {
  const dir = await tempDir(t);
  let count = 0;
  const fake = await startFakeServer(dir, MiB, (r, socket) => {
    if (++count === 2) socket.write(dataChunk(r.cookie, r.offsetBytes + 1, Buffer.alloc(r.lengthBytes), true));
  });
  t.after(() => fake.close());
  const client = await NbdClient.connect(fake.uri);
  t.after(() => client.close());
  const results = await Promise.allSettled([client.read(0, Buffer.alloc(512)), client.read(4096, Buffer.alloc(512))]);
  for (const r of results) {
    assert.equal(r.status, 'rejected');
    assert.equal((r.reason as { code: string }).code, 'NBD_PROTOCOL');
  }
});

test('an aborted read rejects with the abort reason and its late reply never touches the buffer', async (t) => {
  const dir = await tempDir(t);
  const held: { r: FakeRequest; socket: import('node:net').Socket }[] = [];
  const fake = await startFakeServer(dir, MiB, (r, socket) => {
    held.push({ r, socket });
  });
  t.after(() => fake.close());
  const client = await NbdClient.connect(fake.uri);
  t.after(() => client.close());
  const controller = new AbortController();
  const target = Buffer.alloc(4096, 0x55);
  const read = client.read(0, target, controller.signal);
  while (held.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
  controller.abort(new Error('user pressed Ctrl-C'));
  await assert.rejects(read, /user pressed Ctrl-C/);
  // The server answers anyway; the next request on the same connection still works.
  held[0].socket.write(dataChunk(held[0].r.cookie, 0, Buffer.alloc(4096, 0xee)));
  const next = Buffer.alloc(512);
  const nextRead = client.read(512, next);
  while (held.length < 2) await new Promise((resolve) => setTimeout(resolve, 5));
  held[1].socket.write(dataChunk(held[1].r.cookie, 512, Buffer.alloc(512, 7)));
  await nextRead;
  assert.ok(next.equals(Buffer.alloc(512, 7)));
  assert.ok(target.equals(Buffer.alloc(4096, 0x55)), 'aborted target untouched');
});

test('an unknown export, a refused connection and a non-NBD peer are clear errors', async (t) => {
  const dir = await tempDir(t);
  const server = await NbdServer.listen({ exports: [{ name: 'disk0', disk: new MemoryDisk(65536, []) }], listen: { socketPath: path.join(dir, 's') } });
  t.after(() => server.close());
  await assert.rejects(NbdClient.connect(server.uri('nope')), { code: 'NBD_HANDSHAKE', message: /export "nope" does not exist/ });
  await assert.rejects(NbdClient.connect(`nbd+unix:///x?socket=${path.join(dir, 'missing.sock')}`), { code: 'NBD_CONNECT', message: /cannot connect to/ });
  await assert.rejects(NbdClient.connect('nbd://'), { code: 'NBD_BAD_URI' });
  const net = await import('node:net');
  const notNbd = net.createServer((s) => s.end('SSH-2.0-OpenSSH_9.2\r\n\r\n'));
  await new Promise<void>((resolve) => notNbd.listen(path.join(dir, 'ssh'), resolve));
  t.after(() => new Promise<void>((resolve) => notNbd.close(() => resolve())));
  await assert.rejects(NbdClient.connect(`nbd+unix:///?socket=${path.join(dir, 'ssh')}`), { code: 'NBD_PROTOCOL', message: /not an NBD server/ });
});

test('a server without NBD_OPT_GO is reached through NBD_OPT_EXPORT_NAME', async (t) => {
  const dir = await tempDir(t);
  const fake = await startFakeServer(dir, 3 * MiB, (r, socket) => {
    socket.write(dataChunk(r.cookie, r.offsetBytes, Buffer.alloc(r.lengthBytes, 0x42)));
  }, { withoutGo: true });
  t.after(() => fake.close());
  const client = await NbdClient.connect(fake.uri);
  t.after(() => client.close());
  assert.equal(client.sizeBytes, 3 * MiB);
  assert.equal(client.readOnly, true);
  const target = Buffer.alloc(1000);
  await client.read(77, target);
  assert.ok(target.equals(Buffer.alloc(1000, 0x42)));
});

test('close() does not wait forever on a server that never answers; the pending read rejects', async (t) => {
  const dir = await tempDir(t);
  const fake = await startFakeServer(dir, MiB, () => {});
  t.after(() => fake.close());
  const client = await NbdClient.connect(fake.uri);
  const read = client.read(0, Buffer.alloc(512));
  const outcome = read.then(() => 'resolved', (e: { code?: string; message?: string }) => `${e.code}: ${e.message}`);
  await client.close();
  assert.match(await outcome, /^NBD_DISCONNECTED: .*connection closed by vcbt/);
});
