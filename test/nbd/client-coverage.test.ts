// NbdClient checks that a structured read reply covers every byte of the request exactly
// once (NBD protocol: chunks must not overlap). Hostile replies from a raw-socket server
// (overlapping data, a hole over data, a gap, a chunk past the end, excess, an empty hole)
// each fail the read with NBD_PROTOCOL, and the caller's buffer is not filled with a
// mixture passed off as the disk's bytes. Legitimate splits in any order still succeed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NbdClient } from '../../src/nbd/client.ts';
import { dataChunk, startFakeServer } from './fake-server.ts';
import { fillByte, holeChunk, hostileReplies } from './hostile-replies.ts';
import { tempDir } from './peers.ts';

const MiB = 1024 * 1024;

for (const [name, reply] of Object.entries(hostileReplies)) {
  test(`coverage: ${name} fails the read with NBD_PROTOCOL`, async (t) => {
    const dir = await tempDir(t);
    const fake = await startFakeServer(dir, MiB, reply);
    t.after(() => fake.close());
    const client = await NbdClient.connect(fake.uri);
    t.after(() => client.close());
    const target = Buffer.alloc(64 * 1024, 0x55);
    const error = await client.read(128 * 1024, target).then(() => null, (e: unknown) => e as Error & { code?: string; context?: Record<string, unknown> });
    assert.ok(error, 'the read must fail');
    assert.equal(error.code, 'NBD_PROTOCOL', error.message);
    assert.match(error.message, /protocol violation: .*(READ|OFFSET_)/);
    assert.equal(error.context?.offsetBytes, 128 * 1024);
    assert.equal(error.context?.lengthBytes, 64 * 1024);
    // The connection is not trusted any more: later reads fail too.
    await assert.rejects(client.read(0, Buffer.alloc(4096)), { code: 'NBD_PROTOCOL' });
  });
}

test('coverage: a reply split into 512-byte chunks sent in reverse order, data and holes mixed, is exact', async (t) => {
  const dir = await tempDir(t);
  const fake = await startFakeServer(dir, MiB, (r, socket) => {
    const pieces = r.lengthBytes / 512;
    for (let i = pieces - 1; i >= 0; i--) {
      const at = r.offsetBytes + i * 512;
      socket.write(i % 3 === 0 ? holeChunk(r.cookie, at, 512, i === 0) : dataChunk(r.cookie, at, Buffer.alloc(512, fillByte), i === 0));
    }
  });
  t.after(() => fake.close());
  const client = await NbdClient.connect(fake.uri);
  t.after(() => client.close());
  const target = Buffer.alloc(64 * 1024, 0x55);
  await client.read(4096, target);
  const expected = Buffer.alloc(64 * 1024, fillByte);
  for (let i = 0; i < 128; i += 3) expected.fill(0, i * 512, i * 512 + 512);
  assert.ok(target.equals(expected));
});

test('coverage: a reply fragmented into more than 4096 separate pieces is refused (bounded memory)', async (t) => {
  const dir = await tempDir(t);
  const fake = await startFakeServer(dir, MiB, (r, socket) => {
    // Every other byte, so no two chunks ever join: 4097 pieces before the last one.
    for (let i = 0; i <= 4097; i++) socket.write(dataChunk(r.cookie, r.offsetBytes + 2 * i, Buffer.alloc(1, fillByte), false));
  });
  t.after(() => fake.close());
  const client = await NbdClient.connect(fake.uri);
  t.after(() => client.close());
  await assert.rejects(client.read(0, Buffer.alloc(16 * 1024)), { code: 'NBD_PROTOCOL', message: /more than 4096 separate pieces/ });
});
