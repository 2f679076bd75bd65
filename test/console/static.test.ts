// The console's static handler (src/api/console.ts) over a real HTTP server and a real build
// directory: content types, cache headers, the Content-Security-Policy, no path outside the
// build directory, and a page that says the console is not built when it is not.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { consoleContentSecurityPolicy, isConsolePath, serveConsole } from '../../src/api/console.ts';

let dir: string;
let server: Server;
let base: string;
let serveFrom: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vcbt-console-'));
  await mkdir(join(dir, 'dist/assets'), { recursive: true });
  await writeFile(join(dir, 'dist/index.html'), '<!doctype html><title>t</title>');
  await writeFile(join(dir, 'dist/assets/index-abc.js'), 'console.log(1)');
  await writeFile(join(dir, 'dist/assets/index-abc.css'), 'body{}');
  await writeFile(join(dir, 'secret.txt'), 'no');
  serveFrom = join(dir, 'dist');
  server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (!isConsolePath(path)) {
      res.writeHead(418).end();
      return;
    }
    void serveConsole(req, res, path, serveFrom);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await rm(dir, { recursive: true, force: true });
});

test('index.html: HTML, revalidated on every load, with the strict CSP', async () => {
  for (const path of ['/', '/index.html']) {
    const response = await fetch(base + path);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(response.headers.get('cache-control'), 'no-cache');
    assert.equal(response.headers.get('content-security-policy'), consoleContentSecurityPolicy);
    assert.match(consoleContentSecurityPolicy, /script-src 'self';/);
    assert.doesNotMatch(consoleContentSecurityPolicy, /unsafe-inline|unsafe-eval|https?:/);
    assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(await response.text(), '<!doctype html><title>t</title>');
  }
});

test('hashed assets: their content type, cached for a year as immutable', async () => {
  const js = await fetch(`${base}/assets/index-abc.js`);
  assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8');
  assert.equal(js.headers.get('cache-control'), 'public, max-age=31536000, immutable');
  assert.equal(await js.text(), 'console.log(1)');
  const css = await fetch(`${base}/assets/index-abc.css`);
  assert.equal(css.headers.get('content-type'), 'text/css; charset=utf-8');
  assert.equal((await fetch(`${base}/assets/missing.js`)).status, 404);
});

test('no path leaves the build directory; other paths are the API\'s', async () => {
  for (const path of ['/assets/../../secret.txt', '/assets/%2e%2e%2fsecret.txt', '/secret.txt', '/api/jobs', '/metrics', '/assets/a/b.js']) {
    const response = await fetch(base + path);
    assert.notEqual(await response.text(), 'no', path);
  }
  assert.equal(isConsolePath('/api/session'), false);
  assert.equal(isConsolePath('/metrics'), false);
  assert.equal(isConsolePath('/assets/..'), false);
  assert.equal(isConsolePath('/assets/.'), false);
});

test('POST to a console path is refused; a missing build answers a page saying so', async () => {
  assert.equal((await fetch(`${base}/`, { method: 'POST' })).status, 405);
  serveFrom = join(dir, 'nothing');
  try {
    const response = await fetch(`${base}/`);
    assert.equal(response.status, 503);
    assert.match(await response.text(), /npm run console:build/);
  } finally {
    serveFrom = join(dir, 'dist');
  }
});
