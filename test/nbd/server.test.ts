// NbdServer checked by real clients - nbdcopy, nbdinfo, qemu-img - and by our own client
// (concurrency, out-of-order replies, simple replies, errors, read-only).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { NbdServer } from '../../src/nbd/server.ts';
import { NbdClient } from '../../src/nbd/client.ts';
import { NbdConnection } from '../../src/nbd/client-connection.ts';
import { parseNbdUri } from '../../src/nbd/uri.ts';
import { MemoryDisk } from './memory-disk.ts';
import { sha256, sha256File, tempDir, tool } from './peers.ts';

const MiB = 1024 * 1024;
const SIZE_BYTES = 20 * MiB + 1536;
const ALLOCATED = [
  { offsetBytes: 0, lengthBytes: MiB },
  { offsetBytes: 5 * MiB, lengthBytes: 300_000 },
  { offsetBytes: 12 * MiB, lengthBytes: SIZE_BYTES - 12 * MiB },
];

async function serve(t: { after(fn: () => Promise<void>): void }, disk: MemoryDisk, options: { writable?: boolean; name?: string } = {}) {
  const dir = await tempDir(t);
  const name = options.name ?? 'disk';
  const server = await NbdServer.listen({
    exports: [{ name, disk, writable: options.writable, description: 'test disk' }, { name: 'other', disk: new MemoryDisk(4096, []) }],
    listen: { socketPath: path.join(dir, 'nbd.sock') },
  });
  t.after(() => server.close());
  return { server, dir, uri: server.uri(name) };
}

test('nbdinfo --map shows the disk allocation; nbdinfo --list shows the exports', async (t) => {
  const disk = new MemoryDisk(SIZE_BYTES, ALLOCATED);
  const { uri, server } = await serve(t, disk);
  const map = await tool('nbdinfo', ['--map', uri]);
  const rows = map.trim().split('\n').map((line) => line.trim().split(/\s+/).slice(0, 3).map(Number));
  assert.deepEqual(rows, [
    [0, MiB, 0],
    [MiB, 4 * MiB, 3],
    [5 * MiB, 300_000, 0],
    [5 * MiB + 300_000, 7 * MiB - 300_000, 3],
    [12 * MiB, SIZE_BYTES - 12 * MiB, 0],
  ]);
  const info = await tool('nbdinfo', ['--json', uri]);
  const parsed = JSON.parse(info) as { exports: { 'export-size': number; is_read_only: boolean; can_multi_conn: boolean; description?: string }[] };
  assert.equal(parsed.exports[0]['export-size'], SIZE_BYTES);
  assert.equal(parsed.exports[0].is_read_only, true);
  assert.equal(parsed.exports[0].can_multi_conn, true);
  assert.equal(parsed.exports[0].description, 'test disk');
  const list = await tool('nbdinfo', ['--list', '--json', server.uri('')]);
  assert.deepEqual((JSON.parse(list) as { exports: { 'export-name': string }[] }).exports.map((e) => e['export-name']).sort(), ['disk', 'other']);
});

test('nbdcopy and qemu-img convert copy the export byte for byte; qemu-img compare agrees', async (t) => {
  const disk = new MemoryDisk(SIZE_BYTES, ALLOCATED);
  const { uri, dir } = await serve(t, disk);
  const copied = path.join(dir, 'nbdcopy.raw');
  await tool('nbdcopy', ['--connections=4', '--requests=16', uri, copied]);
  assert.equal(await sha256File(copied), sha256(disk.bytes));
  const converted = path.join(dir, 'qemu.raw');
  await tool('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri, converted]);
  assert.equal(await sha256File(converted), sha256(disk.bytes));

  const image = path.join(dir, 'image.raw');
  await writeFile(image, disk.bytes);
  await tool('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', image, uri]);
  // And compare does notice a single changed byte inside allocated data.
  const changed = Buffer.from(disk.bytes);
  changed[5 * MiB + 1234] ^= 0xff;
  await writeFile(image, changed);
  const result = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
    const child = execFile('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', image, uri], (_e, stdout) => resolve({ code: child.exitCode, stdout }));
  });
  assert.equal(result.code, 1);
  // qemu-img names the 512-byte sector holding the difference.
  assert.match(result.stdout, new RegExp(`mismatch at offset ${5 * MiB + 1024}!`));
});

test('nbdcopy writes into a writable export (data and zeroes)', async (t) => {
  const disk = new MemoryDisk(8 * MiB, [{ offsetBytes: 0, lengthBytes: 8 * MiB }]);
  const { uri, dir } = await serve(t, disk, { writable: true });
  const source = Buffer.alloc(8 * MiB);
  randomBytes(3 * MiB).copy(source, 0);
  randomBytes(MiB).copy(source, 6 * MiB);
  const sourceFile = path.join(dir, 'source.raw');
  await writeFile(sourceFile, source);
  await tool('nbdcopy', [sourceFile, uri]);
  assert.equal(sha256(disk.bytes), sha256(source));
  // nbdcopy zeroed the zero stretch rather than writing it: it is a hole again.
  assert.ok(disk.allocated.every((e) => e.offsetBytes + e.lengthBytes <= 3 * MiB || e.offsetBytes >= 6 * MiB));
  // qemu-img writes too.
  const second = randomBytes(8 * MiB);
  await writeFile(sourceFile, second);
  await tool('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', sourceFile, uri]);
  assert.equal(sha256(disk.bytes), sha256(second));
});

test('our client against our server: block status, concurrency, out-of-order replies, simple replies', async (t) => {
  const disk = new MemoryDisk(SIZE_BYTES, ALLOCATED);
  let releaseFirst: () => void = () => {};
  const firstGate = new Promise<void>((resolve) => (releaseFirst = resolve));
  const baseRead = disk.read.bind(disk);
  disk.read = async (offsetBytes, target) => {
    if (offsetBytes === 3 * MiB) await firstGate; // held until a later request has completed
    await baseRead(offsetBytes, target);
  };
  const { uri } = await serve(t, disk, { writable: true });
  for (const structuredReplies of [true, false]) {
    const client = await NbdClient.connect(uri, { structuredReplies, connections: 2 });
    assert.equal(client.connectionCount, 2);
    assert.equal(client.canBlockStatus, structuredReplies);
    if (structuredReplies) {
      assert.deepEqual(await client.allocation({ offsetBytes: 0, lengthBytes: 6 * MiB }), [
        { offsetBytes: 0, lengthBytes: MiB, hole: false, zero: false },
        { offsetBytes: MiB, lengthBytes: 4 * MiB, hole: true, zero: true },
        { offsetBytes: 5 * MiB, lengthBytes: 300_000, hole: false, zero: false },
        { offsetBytes: 5 * MiB + 300_000, lengthBytes: MiB - 300_000, hole: true, zero: true },
      ]);
    }
    const held = Buffer.alloc(4096);
    const heldRead = client.read(3 * MiB, held);
    const later = Buffer.alloc(4096);
    await client.read(12 * MiB, later); // completes while the first is still held
    assert.ok(later.equals(disk.bytes.subarray(12 * MiB, 12 * MiB + 4096)));
    releaseFirst();
    await heldRead;
    assert.ok(held.equals(disk.bytes.subarray(3 * MiB, 3 * MiB + 4096)));
    const targets = Array.from({ length: 100 }, (_, i) => ({ offsetBytes: i * 200_003, target: Buffer.alloc(150_000) }));
    await Promise.all(targets.map((r) => client.read(r.offsetBytes, r.target)));
    for (const r of targets) assert.ok(r.target.equals(disk.bytes.subarray(r.offsetBytes, r.offsetBytes + 150_000)));
    const data = randomBytes(70_000);
    await client.write(100, data);
    await client.writeZeroes(MiB, 4096);
    await client.flush();
    assert.ok(disk.bytes.subarray(100, 70_100).equals(data));
    assert.ok(disk.bytes.subarray(MiB, MiB + 4096).equals(Buffer.alloc(4096)));
    await client.close();
  }
});

test('disk errors reach the client as NBD errors; a read-only export refuses writes with EPERM', async (t) => {
  const disk = new MemoryDisk(MiB, [{ offsetBytes: 0, lengthBytes: MiB }]);
  disk.failReadAt = { offsetBytes: 8192, error: new Error('sector 16 unreadable') };
  const { uri } = await serve(t, disk);
  for (const structuredReplies of [true, false]) {
    const client = await NbdClient.connect(uri, { structuredReplies });
    await assert.rejects(client.read(4096, Buffer.alloc(8192)), {
      code: 'NBD_EIO',
      message: structuredReplies ? /offset 4096 failed with NBD_EIO: sector 16 unreadable/ : /offset 4096 failed with NBD_EIO/,
    });
    const ok = Buffer.alloc(4096);
    await client.read(0, ok);
    assert.ok(ok.equals(disk.bytes.subarray(0, 4096)));
    assert.equal(client.readOnly, true);
    await client.close();
  }
  // A connection that ignores the read-only flag (NbdConnection does not check it) gets EPERM.
  const raw = await NbdConnection.open(parseNbdUri(uri));
  await assert.rejects(raw.write(0, Buffer.alloc(4096)), { code: 'NBD_EPERM', message: /export is read-only/ });
  await assert.rejects(raw.read(MiB - 100, Buffer.alloc(4096)), { code: 'NBD_EINVAL', message: /beyond the export size/ });
  await raw.close();
  assert.ok(disk.bytes.subarray(0, 4096).some((b) => b !== 0), 'nothing was written');
});

test('the server keeps serving other connections when one client vanishes, and close() drops everyone', async (t) => {
  const disk = new MemoryDisk(MiB, [{ offsetBytes: 0, lengthBytes: MiB }]);
  const { uri, server } = await serve(t, disk);
  const a = await NbdClient.connect(uri, { connections: 1 });
  const b = await NbdClient.connect(uri, { connections: 1 });
  assert.equal(server.sessionCount, 2);
  await a.close();
  const target = Buffer.alloc(4096);
  await b.read(0, target);
  assert.ok(target.equals(disk.bytes.subarray(0, 4096)));
  await server.close();
  await assert.rejects(b.read(0, target), { code: 'NBD_DISCONNECTED' });
  await b.close();
});

test('NBD_OPT_EXPORT_NAME and simple replies, spoken by hand over a raw socket', async (t) => {
  const disk = new MemoryDisk(MiB, [{ offsetBytes: 0, lengthBytes: MiB }]);
  const { server } = await serve(t, disk);
  const endpoint = server.endpoint;
  assert.equal(endpoint.kind, 'unix');
  const socket = net.connect(endpoint.kind === 'unix' ? endpoint.socketPath : '');
  t.after(() => socket.destroy());
  let input = Buffer.alloc(0);
  let wake: () => void = () => {};
  socket.on('data', (d: Buffer) => {
    input = Buffer.concat([input, d]);
    wake();
  });
  const take = async (n: number) => {
    while (input.length < n) await new Promise<void>((resolve) => (wake = resolve));
    const out = input.subarray(0, n);
    input = input.subarray(n);
    return out;
  };
  const greeting = await take(18);
  assert.equal(greeting.toString('latin1', 0, 16), 'NBDMAGICIHAVEOPT');
  assert.equal(greeting.readUInt16BE(16) & 3, 3, 'fixed newstyle and no zeroes offered');
  const option = Buffer.alloc(16 + 4);
  option.writeUInt32BE(1, 0); // client flags: fixed newstyle, zero padding wanted
  option.write('IHAVEOPT', 4, 'latin1');
  option.writeUInt32BE(1, 12); // NBD_OPT_EXPORT_NAME
  option.writeUInt32BE(4, 16);
  socket.write(Buffer.concat([option.subarray(0, 20), Buffer.from('disk')]));
  const answer = await take(134);
  assert.equal(Number(answer.readBigUInt64BE(0)), MiB);
  assert.ok(answer.readUInt16BE(8) & 2, 'read-only flag');
  assert.ok(answer.subarray(10).equals(Buffer.alloc(124)), '124 zero bytes of padding');
  const request = Buffer.alloc(28);
  request.writeUInt32BE(0x25609513, 0);
  request.writeUInt16BE(0, 6); // READ
  request.write('cookie!!', 8, 'latin1');
  request.writeBigUInt64BE(4096n, 16);
  request.writeUInt32BE(512, 24);
  socket.write(request);
  const reply = await take(16 + 512);
  assert.equal(reply.readUInt32BE(0), 0x67446698, 'simple reply');
  assert.equal(reply.readUInt32BE(4), 0);
  assert.equal(reply.toString('latin1', 8, 16), 'cookie!!');
  assert.ok(reply.subarray(16).equals(disk.bytes.subarray(4096, 4608)));
});
