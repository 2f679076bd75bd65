// Serves the web console (console/, docs/console.md) from the API's own origin: the files Vite
// built into console/dist at `npm ci` (the `prepare` script), nothing fetched from elsewhere.
//
// Vocabulary
// - console path: `/`, `/index.html` or `/assets/NAME` (NAME: letters, digits, `.`, `_`, `-`;
//   never a `/` and not dots only, so no path can leave the build directory). Every other path is the API's.
//   The console routes with the URL's fragment (`/#/vms`), so it needs no fallback page.
// - asset: a file of /assets/, its name carrying a hash of its content: cached for a year,
//   immutable. index.html is revalidated on every load (`no-cache`) and names the new assets.
// - console headers: a strict Content-Security-Policy (scripts, styles, images and requests
//   only from this origin; no inline script, no frames), nosniff, no referrer.
// The console's files are public (they hold no data); the data comes from the API, which
// needs a token for every request.
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join } from 'node:path';

/** Where `npm run console:build` writes the console (gitignored). */
export const consoleBuildDir = join(import.meta.dirname, '../../console/dist');

const contentTypes: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
};

export const consoleContentSecurityPolicy =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const notBuilt = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>vcbt console</title></head><body><h1>The console is not built</h1><p>Build it with <code>npm run console:build</code> (npm ci does it) and reload. The API answers under /api/.</p></body></html>`;

/** True when `pathname` belongs to the console rather than to the API. */
export function isConsolePath(pathname: string): boolean {
  return pathname === '/' || pathname === '/index.html' || /^\/assets\/(?!\.+$)[A-Za-z0-9._-]+$/.test(pathname);
}

/** Answers a console path (GET or HEAD) from `dir`; 404 for an asset that is not there. */
export async function serveConsole(request: IncomingMessage, response: ServerResponse, pathname: string, dir = consoleBuildDir): Promise<number> {
  const head = { 'content-security-policy': consoleContentSecurityPolicy, 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'x-frame-options': 'DENY' };
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    response.writeHead(405, { ...head, allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
    response.end('method not allowed\n');
    return 405;
  }
  const isIndex = pathname === '/' || pathname === '/index.html';
  const file = isIndex ? 'index.html' : pathname.slice('/assets/'.length);
  let body: Buffer;
  try {
    body = await readFile(isIndex ? join(dir, file) : join(dir, 'assets', file));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    const status = isIndex ? 503 : 404;
    const text = isIndex ? notBuilt : 'not found\n';
    response.writeHead(status, { ...head, 'content-type': isIndex ? contentTypes['.html'] : 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
    response.end(request.method === 'HEAD' ? undefined : text);
    return status;
  }
  response.writeHead(200, {
    ...head,
    'content-type': contentTypes[extname(file)] ?? 'application/octet-stream',
    'content-length': body.length,
    'cache-control': isIndex ? 'no-cache' : 'public, max-age=31536000, immutable',
  });
  response.end(request.method === 'HEAD' ? undefined : body);
  return 200;
}
