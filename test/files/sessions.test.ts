// The kept-session pool of file browsing (src/jobs/files-sessions.ts): one session per key,
// opened once, uses of a session one after another, idle sessions closed after their idle
// time, at most maxSessions at once (least recently used idle one closed first, FILES_BUSY
// when all are in use), a session that failed to open or whose engine died is opened again.
// The sessions here are plain objects that count their closes: the pool never looks inside.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { FilesError } from '../../src/jobs/files.ts';
import { SessionPool } from '../../src/jobs/files-sessions.ts';

class Session {
  static opened = 0;
  closed = 0;
  readonly id: number;
  constructor() {
    this.id = ++Session.opened;
  }
  async close(): Promise<void> {
    this.closed++;
  }
}

test('one session per key, opened once, its uses one after another in order', async () => {
  const pool = new SessionPool<Session>({ idleMs: 60_000 });
  const opens: string[] = [];
  const open = (key: string) => async () => {
    opens.push(key);
    await sleep(20);
    return new Session();
  };
  const order: string[] = [];
  const use = (key: string, label: string, ms: number) =>
    pool.use(key, open(key), async (s) => {
      order.push(`${label} start`);
      await sleep(ms);
      order.push(`${label} end`);
      return s;
    });
  const [a1, a2, b1] = await Promise.all([use('a', 'a1', 30), use('a', 'a2', 1), use('b', 'b1', 1)]);
  assert.equal(a1, a2, 'the same session serves both uses of a key');
  assert.notEqual(a1, b1);
  assert.deepEqual(opens, ['a', 'b']);
  assert.ok(order.indexOf('a1 end') < order.indexOf('a2 start'), `uses of one session never interleave: ${order.join(', ')}`);
  await pool.close();
  assert.equal(a1.closed, 1);
  assert.equal(b1.closed, 1);
  assert.equal(pool.size, 0);
});

test('an idle session closes after its idle time; the next use opens a new one', async () => {
  const pool = new SessionPool<Session>({ idleMs: 50 });
  const first = await pool.use('a', async () => new Session(), async (s) => s);
  assert.equal(first.closed, 0);
  await sleep(150);
  assert.equal(first.closed, 1, 'closed after the idle time');
  assert.equal(pool.size, 0);
  const second = await pool.use('a', async () => new Session(), async (s) => s);
  assert.notEqual(second, first);
  await pool.close();
});

test('at most maxSessions: the least recently used idle one closes, FILES_BUSY when all are in use', async () => {
  const pool = new SessionPool<Session>({ idleMs: 60_000, maxSessions: 2 });
  const a = await pool.use('a', async () => new Session(), async (s) => s);
  await sleep(5);
  const b = await pool.use('b', async () => new Session(), async (s) => s);
  const c = await pool.use('c', async () => new Session(), async (s) => s);
  assert.equal(a.closed, 1, 'a was the least recently used');
  assert.equal(b.closed, 0);
  assert.equal(pool.size, 2);
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const busyB = pool.use('b', async () => new Session(), () => held);
  const busyC = pool.use('c', async () => new Session(), () => held);
  await sleep(5);
  await assert.rejects(pool.use('d', async () => new Session(), async (s) => s), (error: unknown) => error instanceof FilesError && error.code === 'FILES_BUSY');
  release();
  await Promise.all([busyB, busyC]);
  assert.equal(c.closed, 0);
  await pool.close();
  assert.equal(c.closed, 1);
});

test('a session that fails to open, or whose engine died, is opened again by the next use', async () => {
  const pool = new SessionPool<Session>({ idleMs: 60_000 });
  await assert.rejects(pool.use('a', async () => { throw new Error('boot failed'); }, async (s) => s), /boot failed/);
  assert.equal(pool.size, 0);
  const first = await pool.use('a', async () => new Session(), async (s) => s);
  await assert.rejects(pool.use('a', async () => new Session(), async () => { throw new FilesError('FILES_ENGINE_FAILED', 'appliance died', {}); }), /appliance died/);
  assert.equal(first.closed, 1, 'a dead engine is closed');
  await assert.rejects(pool.use('a', async () => new Session(), async () => { throw new FilesError('FILES_PATH_NOT_FOUND', 'no such file', {}); }), /no such file/);
  const kept = await pool.use('a', async () => new Session(), async (s) => s);
  assert.notEqual(kept, first);
  assert.equal(kept.closed, 0, 'a missing path does not end the session');
  await pool.close();
});
