// The daemon's HTTP API (docs/api.md; the contract is openapi.ts): JSON over HTTP on
// daemon.listen, 127.0.0.1:8420 by default.
//
// Vocabulary
// - token: every request carries `Authorization: Bearer TOKEN` (vcbt token create); the
//   catalog knows only its hash (src/service/tokens.ts). Missing or unknown: 401
//   API_UNAUTHORIZED. A read-only token may GET everything and act on nothing: 403
//   API_READ_ONLY.
// - action: a request that changes something (POST); route.ts.
// - routes: the groups of routes/*.ts, each with its part of the OpenAPI document.
// - error answer: `{code, message}` with a stable code (docs/errors.md). An error that is not
//   a VcbtError answers INTERNAL without its message (which might name anything).
// - request log: one line per request (method, path, status, token id), never a header value.
// - /metrics: the Prometheus text of src/service/metrics.ts, behind the same token check.
// - TLS: with daemon.tls the listener speaks HTTPS with that certificate and key.
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { VcbtError } from '../errors.ts';
import type { Catalog } from '../service/catalog/catalog.ts';
import type { ServiceConfig } from '../service/config.ts';
import type { Daemon } from '../service/daemon.ts';
import { InventoryCache } from '../service/inventory.ts';
import type { ServiceMetrics } from '../service/metrics.ts';
import { checkToken } from '../service/tokens.ts';
import { isConsolePath, serveConsole } from './console.ts';
import { openApiDocument } from './openapi.ts';
import { ApiError, type ApiContext, type Route } from './route.ts';
import { routeGroups } from './routes/index.ts';

export { ApiError };

export interface ApiServerOptions {
  config: ServiceConfig;
  catalog: Catalog;
  daemon: Daemon;
  log: (line: string) => void;
  env?: NodeJS.ProcessEnv;
  /** Served at GET /metrics. */
  metrics?: ServiceMetrics;
}

export interface ApiServer {
  /** `http://HOST:PORT` (`https://` with daemon.tls) it listens on. */
  url: string;
  close(): Promise<void>;
}

const statusOf: Record<string, number> = {
  API_UNAUTHORIZED: 401,
  API_READ_ONLY: 403,
  API_NOT_FOUND: 404,
  JOB_NOT_FOUND: 404,
  API_BAD_REQUEST: 400,
  JOB_RUNNING: 409,
  DAEMON_STOPPING: 409,
  JOB_AMBIGUOUS: 400,
  VM_NOT_FOUND: 404,
  REPO_POINT_NOT_FOUND: 404,
  REPO_DISK_NOT_FOUND: 404,
  REPO_LOCKED: 409,
  RESTORE_PATH_REFUSED: 400,
  RESTORE_TARGET_EXISTS: 409,
};

/** The largest request body read (actions take a few small fields). */
const BODY_MAX_BYTES = 64 * 1024;

function routes(options: ApiServerOptions): Route[] {
  const env = options.env ?? process.env;
  const context: ApiContext = { config: options.config, catalog: options.catalog, daemon: options.daemon, log: options.log, env, inventory: new InventoryCache(options.config, env) };
  return [
    { method: 'GET', pattern: /^\/api\/openapi\.json$/, action: false, handler: async () => ({ status: 200, body: openApiDocument }) },
    ...routeGroups.flatMap((g) => g.routes(context)),
  ];
}

/** A POST's JSON object body ({} when empty); API_BAD_REQUEST when it is not a JSON object or too large. */
async function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const part of req as AsyncIterable<Buffer>) {
    size += part.length;
    if (size > BODY_MAX_BYTES) throw new ApiError('API_BAD_REQUEST', `the request body is larger than ${BODY_MAX_BYTES} bytes`, { maxBytes: BODY_MAX_BYTES });
    parts.push(part);
  }
  const text = Buffer.concat(parts).toString('utf8').trim();
  if (text === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ApiError('API_BAD_REQUEST', 'the request body is not JSON', {});
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ApiError('API_BAD_REQUEST', 'the request body must be a JSON object', {});
  return value as Record<string, unknown>;
}

function send(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  response.end(text);
}

/** Starts the API on config.daemon.listen; API_LISTEN when the address cannot be used. */
export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  const table = routes(options);
  const { host, port } = options.config.daemon.listen;
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<{ status: number; tokenId: number | null }> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = req.method ?? 'GET';
    let tokenId: number | null = null;
    try {
      const header = req.headers.authorization ?? '';
      const match = /^Bearer\s+(\S+)$/i.exec(header);
      const token = match ? await checkToken(options.catalog, match[1] as string) : undefined;
      if (!token) throw new ApiError('API_UNAUTHORIZED', match ? 'the API token is not known (vcbt token create makes one)' : 'every request needs Authorization: Bearer TOKEN (vcbt token create makes one)', {});
      tokenId = token.id;
      if (url.pathname === '/metrics' && method === 'GET' && options.metrics) {
        const text = await options.metrics.text();
        res.writeHead(200, { 'content-type': options.metrics.contentType, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
        res.end(text);
        return { status: 200, tokenId };
      }
      const matching = table.filter((r) => r.pattern.test(url.pathname));
      const route = matching.find((r) => r.method === method);
      if (!route) {
        if (matching.length > 0) throw new ApiError('API_BAD_REQUEST', `${method} is not allowed on ${url.pathname} (allowed: ${matching.map((r) => r.method).join(', ')})`, { method });
        throw new ApiError('API_NOT_FOUND', `no endpoint ${url.pathname} (the API is described at /api/openapi.json)`, { path: url.pathname });
      }
      if (route.action && token.readOnly) throw new ApiError('API_READ_ONLY', 'a read-only token cannot start actions', { tokenId: token.id });
      const params = (route.pattern.exec(url.pathname) ?? []).slice(1);
      const body = method === 'POST' ? await readBody(req) : {};
      const gone = new AbortController();
      res.once('close', () => gone.abort());
      const answer = await route.handler({ method, path: url.pathname, query: url.searchParams, token, body, signal: gone.signal }, params);
      if ('stream' in answer) {
        await answer.stream(res);
        return { status: res.statusCode, tokenId };
      }
      send(res, answer.status, answer.body);
      return { status: answer.status, tokenId };
    } catch (error) {
      req.resume(); // an unread body is drained
      const known = error instanceof VcbtError;
      const status = known ? (statusOf[error.code] ?? 500) : 500;
      const body = known ? { code: error.code, message: error.message } : { code: 'INTERNAL', message: 'internal error (logged by the daemon)' };
      if (!known) options.log(`API ${method} ${url.pathname}: INTERNAL: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      if (res.headersSent) res.end();
      else send(res, status, body);
      return { status, tokenId };
    }
  };
  const tls = options.config.daemon.tls ? await readTlsFiles(options.config.daemon.tls) : undefined;
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'POST') req.resume();
    const pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
    // The web console's files (console.ts) are public; every other path is the API's.
    const answer = isConsolePath(pathname)
      ? serveConsole(req, res, pathname).then(
          (status) => ({ status, tokenId: null }),
          (error: unknown) => {
            options.log(`console ${pathname}: ${error instanceof Error ? error.message : String(error)}`);
            if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
            res.end();
            return { status: 500, tokenId: null };
          },
        )
      : handle(req, res);
    answer.then(
      ({ status, tokenId }) => options.log(`API ${req.method} ${new URL(req.url ?? '/', 'http://localhost').pathname} ${status}${tokenId === null ? '' : ` token ${tokenId}`}`),
      () => undefined,
    );
  };
  let server;
  try {
    server = tls ? createTlsServer({ ...tls, minVersion: 'TLSv1.2' }, listener) : createServer(listener);
  } catch (error) {
    throw new ApiError('API_TLS', `daemon.tls: the certificate and key cannot be used together: ${error instanceof Error ? error.message : String(error)}`, { file: options.config.daemon.tls?.certificateFile }, { cause: error });
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => reject(new ApiError('API_LISTEN', `the API cannot listen on ${host}:${port}: ${error.code ?? error.message}`, { host, port, errno: error.code }, { cause: error })));
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `${tls ? 'https' : 'http'}://${shownHost}:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function readTlsFiles(files: { certificateFile: string; keyFile: string }): Promise<{ cert: Buffer; key: Buffer }> {
  const read = (file: string) =>
    readFile(file).catch((error: unknown) => {
      throw new ApiError('API_TLS', `daemon.tls: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? String(error)})`, { file }, { cause: error });
    });
  return { cert: await read(files.certificateFile), key: await read(files.keyFile) };
}
