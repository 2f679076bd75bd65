// The run event stream's bounds, with a real HTTP client: a client that does not read never
// makes the daemon buffer more than BUFFER_MAX_BYTES (events are dropped, then one fresh
// `state` replaces them once it reads again); progress is throttled per disk but its last
// figure (100 %) always goes out; `end` closes the stream.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BUFFER_MAX_BYTES, streamRunEvents } from '../../src/api/sse.ts';
import { RunEventBus } from '../../src/service/run-events.ts';
import { openSqliteCatalog } from '../../src/service/catalog/sqlite.ts';

test('a slow client: bounded buffer, then a fresh state; end closes', async () => {
  const bus = new RunEventBus();
  const catalog = openSqliteCatalog(':memory:');
  bus.begin(7, 'nightly');
  let serverResponse: ServerResponse | undefined;
  const server = createServer((req, res) => {
    serverResponse = res;
    const gone = new AbortController();
    res.once('close', () => gone.abort());
    void streamRunEvents(res, { runId: 7, bus, catalog, signal: gone.signal });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  try {
    const chunks: Buffer[] = [];
    const response = await new Promise<import('node:http').IncomingMessage>((resolve) => request({ host: '127.0.0.1', port, path: '/' }, resolve).end());
    response.pause();
    while (!serverResponse) await new Promise((r) => setImmediate(r));
    // 20 MiB of log lines while the client reads nothing.
    const line = 'x'.repeat(1024);
    let maxBuffered = 0;
    for (let i = 0; i < 20 * 1024; i++) {
      bus.publish(7, { type: 'log', vm: 'vm-a', line: `${i} ${line}` });
      maxBuffered = Math.max(maxBuffered, serverResponse.writableLength);
      if (i % 256 === 0) await new Promise((r) => setImmediate(r));
    }
    assert.ok(maxBuffered <= BUFFER_MAX_BYTES + 2048, `at most ${BUFFER_MAX_BYTES} bytes wait for the client (saw ${maxBuffered})`);
    // Progress of one disk, many times in a row: throttled, but 100 % is sent.
    for (let done = 0; done <= 100; done++) bus.publish(7, { type: 'progress', vm: 'vm-a', moref: 'vm-1', deviceKey: 2000, doneBytes: done * 1024, totalBytes: 100 * 1024 });
    response.on('data', (c: Buffer) => chunks.push(c));
    response.resume();
    const ended = new Promise((resolve) => response.on('end', resolve));
    // Let the client drain (the fresh state goes out), then end.
    await new Promise((r) => setTimeout(r, 200));
    bus.end(7, { status: 'success', endedAt: '2026-01-01T00:00:00.000Z', error: null });
    await ended;
    const events = Buffer.concat(chunks).toString().split('\n\n').map((b) => /^event: (.+)$/m.exec(b)?.[1]).filter(Boolean);
    assert.equal(events[0], 'state');
    assert.ok(events.filter((e) => e === 'log').length < 20 * 1024, 'events were dropped for the slow client');
    assert.ok(events.indexOf('state', 1) > 0, 'a fresh state replaced what was dropped');
    assert.equal(events.at(-1), 'end');
  } finally {
    server.closeAllConnections();
    server.close();
    await catalog.close();
  }
});

test('progress is throttled per disk, its last figure (100 %) always sent; the state holds the newest', () => {
  const bus = new RunEventBus();
  bus.begin(1, 'j');
  const seen: number[] = [];
  const sub = bus.subscribe(1, (e) => {
    if (e.event === 'progress') seen.push(e.data.doneBytes);
  });
  for (let done = 0; done <= 100; done++) bus.publish(1, { type: 'progress', vm: 'a', moref: 'vm-1', deviceKey: 2000, doneBytes: done, totalBytes: 100 }, 1000);
  assert.deepEqual(seen, [0, 100]);
  assert.deepEqual(sub?.state().vms[0]?.disks, [{ deviceKey: 2000, doneBytes: 100, totalBytes: 100 }]);
});
