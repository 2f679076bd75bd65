// The NBD client's inactivity deadline (`ioTimeoutMs`): a server that accepts the connection
// and then stalls - silent, after its greeting, or on a read - fails the handshake or the
// read with NBD_TIMEOUT naming the server, export and offset, instead of hanging. Through
// openReconnectingReader a stalled read is retried on a fresh connection (bounded), and
// succeeds there or fails clearly. Deadlines of 300 ms keep these fast.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NbdClient } from '../../src/nbd/client.ts';
import { openDisk } from '../../src/transport/open-disk.ts';
import { openReconnectingReader } from '../../src/transport/reconnecting-reader.ts';
import { dataChunk, startFakeServer } from './fake-server.ts';
import { tempDir } from './peers.ts';

const MiB = 1024 * 1024;
const ioTimeoutMs = 300;

type Failure = Error & { code?: string; context?: Record<string, unknown> };
const failure = (promise: Promise<unknown>) => promise.then(() => null, (e: unknown) => e as Failure);

for (const stall of ['silent', 'after-greeting'] as const) {
  test(`timeout: a server that stalls the handshake (${stall}) fails the connect with NBD_TIMEOUT`, async (t) => {
    const dir = await tempDir(t);
    const fake = await startFakeServer(dir, MiB, () => {}, { stall });
    t.after(() => fake.close());
    const error = await failure(NbdClient.connect(fake.uri.replace('///', '///disk7'), { ioTimeoutMs }));
    assert.ok(error, 'connect must fail');
    assert.equal(error.code, 'NBD_TIMEOUT', error.message);
    assert.match(error.message, /no complete NBD handshake within 0\.3 s \(export "disk7"\)/);
    assert.equal(error.context?.exportName, 'disk7');
    assert.equal(error.context?.phase, 'handshake');
    assert.match(String(error.context?.server), /^nbd\+unix:\/\/\/disk7\?socket=/);
  });
}

test('timeout: a read the server never answers fails with NBD_TIMEOUT naming the offset; later reads fail too', async (t) => {
  const dir = await tempDir(t);
  const fake = await startFakeServer(dir, MiB, () => {});
  t.after(() => fake.close());
  const client = await NbdClient.connect(fake.uri, { ioTimeoutMs });
  t.after(() => client.close());
  const error = await failure(client.read(65536, Buffer.alloc(4096)));
  assert.ok(error, 'the read must fail');
  assert.equal(error.code, 'NBD_TIMEOUT', error.message);
  assert.match(error.message, /no reply for 0\.3 s to READ of 4096 bytes at offset 65536/);
  assert.equal(error.context?.offsetBytes, 65536);
  await assert.rejects(client.read(0, Buffer.alloc(512)), { code: 'NBD_TIMEOUT' });
});

test('timeout: a server that answers in time is never timed out, idle or busy', async (t) => {
  const dir = await tempDir(t);
  const fake = await startFakeServer(dir, MiB, (r, socket) => {
    setTimeout(() => socket.write(dataChunk(r.cookie, r.offsetBytes, Buffer.alloc(r.lengthBytes, 7))), ioTimeoutMs / 3);
  });
  t.after(() => fake.close());
  const client = await NbdClient.connect(fake.uri, { ioTimeoutMs });
  t.after(() => client.close());
  // Idle for longer than the deadline: no request waits, so nothing times out.
  await new Promise((resolve) => setTimeout(resolve, 2 * ioTimeoutMs));
  for (let i = 0; i < 4; i++) {
    const target = Buffer.alloc(4096);
    await client.read(i * 4096, target);
    assert.ok(target.equals(Buffer.alloc(4096, 7)));
  }
});

test('timeout: the reconnecting reader retries a stalled read on a fresh connection and gets the bytes', async (t) => {
  const dir = await tempDir(t);
  let requests = 0;
  const fake = await startFakeServer(dir, MiB, (r, socket) => {
    if (++requests === 1) return; // the first read is never answered
    socket.write(dataChunk(r.cookie, r.offsetBytes, Buffer.alloc(r.lengthBytes, 9)));
  });
  t.after(() => fake.close());
  const causes: Failure[] = [];
  const reader = await openReconnectingReader((signal) => openDisk(fake.uri, { ioTimeoutMs, signal }), {
    retryDelayMs: 10, attempts: 2, onReconnect: (cause) => causes.push(cause as Failure),
  });
  t.after(() => reader.close());
  const target = Buffer.alloc(8192);
  await reader.read(8192, target);
  assert.ok(target.equals(Buffer.alloc(8192, 9)));
  assert.deepEqual(causes.map((c) => c.code), ['NBD_TIMEOUT']);
});

test('timeout: a server that stalls every read fails through the reconnecting reader after its attempts', async (t) => {
  const dir = await tempDir(t);
  const fake = await startFakeServer(dir, MiB, () => {});
  t.after(() => fake.close());
  const causes: Failure[] = [];
  const reader = await openReconnectingReader((signal) => openDisk(fake.uri, { ioTimeoutMs, signal }), {
    retryDelayMs: 10, attempts: 2, onReconnect: (cause) => causes.push(cause as Failure),
  });
  t.after(() => reader.close());
  const error = await failure(reader.read(12288, Buffer.alloc(4096)));
  assert.ok(error, 'the read must fail');
  assert.equal(error.code, 'NBD_TIMEOUT', error.message);
  assert.equal(error.context?.offsetBytes, 12288);
  assert.deepEqual(causes.map((c) => c.code), ['NBD_TIMEOUT', 'NBD_TIMEOUT']);
});
