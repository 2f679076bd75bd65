// The daemon's HTTP API (docs/api.md; the contract is openapi.ts): JSON over HTTP on
// daemon.listen, 127.0.0.1:8420 by default.
//
// Vocabulary
// - token: every request carries `Authorization: Bearer TOKEN` (vcbt token create); the
//   catalog knows only its hash (src/service/tokens.ts). Missing or unknown: 401
//   API_UNAUTHORIZED. A read-only token may GET everything and act on nothing: 403
//   API_READ_ONLY.
// - action: a request that changes something (POST); today "run a job now".
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
import type { Catalog, TokenRecord } from '../service/catalog/catalog.ts';
import { jobStatus } from '../service/catalog/status.ts';
import type { ServiceConfig } from '../service/config.ts';
import type { Daemon } from '../service/daemon.ts';
import type { ServiceMetrics } from '../service/metrics.ts';
import { openConfiguredRepository } from '../service/run.ts';
import { summarizeJob } from '../service/schedule.ts';
import { checkToken } from '../service/tokens.ts';
import { openApiDocument } from './openapi.ts';

/** Codes: API_UNAUTHORIZED, API_READ_ONLY, API_NOT_FOUND, API_BAD_REQUEST, API_LISTEN (context `host`, `port`), API_TLS (context `file`). */
export class ApiError extends VcbtError {}

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
};

interface Request {
  method: string;
  path: string;
  query: URLSearchParams;
  token: TokenRecord;
}

type Handler = (request: Request, params: string[]) => Promise<{ status: number; body: unknown }>;

const LIST_LIMIT_MAX = 1000;

function integerParam(value: string | null, name: string, fallback: number | undefined, min: number, max: number): number | undefined {
  if (value === null) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max) throw new ApiError('API_BAD_REQUEST', `${name} must be a whole number from ${min} to ${max}`, { parameter: name });
  return n;
}

function routes(options: ApiServerOptions): Array<{ method: string; pattern: RegExp; action: boolean; handler: Handler }> {
  const { config, catalog, daemon } = options;
  const runById = async (idText: string) => {
    const run = await catalog.run(Number(idText));
    if (!run) throw new ApiError('API_NOT_FOUND', `no run ${idText} in the catalog`, { runId: Number(idText) });
    return run;
  };
  return [
    { method: 'GET', pattern: /^\/api\/openapi\.json$/, action: false, handler: async () => ({ status: 200, body: openApiDocument }) },
    {
      method: 'GET',
      pattern: /^\/api\/jobs$/,
      action: false,
      handler: async () => {
        const statuses = await jobStatus(config, catalog, { runs: 1 });
        const running = daemon.activeRuns();
        const now = new Date();
        const jobs = statuses.map((s) => {
          const job = config.jobs.get(s.name)!;
          return {
            ...summarizeJob(job, now),
            runningRunId: running.get(job.name) ?? null,
            lastRun: s.runs[0] ?? null,
            lastGoodAt: s.lastGoodAt,
          };
        });
        return { status: 200, body: { jobs } };
      },
    },
    {
      method: 'POST',
      pattern: /^\/api\/jobs\/([^/]+)\/run$/,
      action: true,
      handler: async (_request, [name]) => ({ status: 202, body: { runId: await daemon.runNow(decodeURIComponent(name as string), 'api') } }),
    },
    {
      method: 'GET',
      pattern: /^\/api\/runs$/,
      action: false,
      handler: async ({ query }) => {
        const limit = integerParam(query.get('limit'), 'limit', 50, 1, LIST_LIMIT_MAX) as number;
        const beforeId = integerParam(query.get('before'), 'before', undefined, 1, Number.MAX_SAFE_INTEGER);
        return { status: 200, body: { runs: await catalog.runs({ job: query.get('job') ?? undefined, limit, beforeId }) } };
      },
    },
    {
      method: 'GET',
      pattern: /^\/api\/runs\/(\d{1,15})$/,
      action: false,
      handler: async (_request, [id]) => {
        const run = await runById(id as string);
        return { status: 200, body: { run, tasks: await catalog.tasks(run.id) } };
      },
    },
    {
      method: 'GET',
      pattern: /^\/api\/runs\/(\d{1,15})\/logs$/,
      action: false,
      handler: async (_request, [id]) => ({ status: 200, body: { lines: await catalog.logs((await runById(id as string)).id) } }),
    },
    {
      method: 'GET',
      pattern: /^\/api\/vms$/,
      action: false,
      handler: async () => {
        const good = new Map((await catalog.lastGoodTasks()).map((t) => [t.moref, t]));
        const nowMs = Date.now();
        const vms = (await catalog.latestTasks()).map((t) => {
          const g = good.get(t.moref);
          const endedAt = g?.endedAt ?? null;
          return {
            name: t.vm,
            moref: t.moref,
            lastTask: t,
            lastGood: g && endedAt ? { job: g.job, runId: g.runId, endedAt, ageSeconds: Math.max(0, Math.floor((nowMs - Date.parse(endedAt)) / 1000)), pointId: g.pointId } : null,
          };
        });
        return { status: 200, body: { vms } };
      },
    },
    {
      method: 'GET',
      pattern: /^\/api\/repositories\/([^/]+)\/points$/,
      action: false,
      handler: async (_request, [encoded]) => {
        const name = decodeURIComponent(encoded as string);
        if (!config.repositories.has(name)) throw new ApiError('API_NOT_FOUND', `no repository "${name}" in the configuration`, { repository: name });
        const repository = await openConfiguredRepository(config, name, options.env ?? process.env);
        try {
          const points = (await repository.listRestorePoints()).map((p) => ({
            id: p.id,
            createdAt: p.createdAt,
            vm: p.vm,
            disks: p.disks.map((d) => ({ deviceKey: d.deviceKey, label: d.label, capacityBytes: d.capacityBytes, mode: d.kind })),
          }));
          return { status: 200, body: { points } };
        } finally {
          await repository.close();
        }
      },
    },
  ];
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
      const { status, body } = await route.handler({ method, path: url.pathname, query: url.searchParams, token }, params);
      send(res, status, body);
      return { status, tokenId };
    } catch (error) {
      const known = error instanceof VcbtError;
      const status = known ? (statusOf[error.code] ?? 500) : 500;
      const body = known ? { code: error.code, message: error.message } : { code: 'INTERNAL', message: 'internal error (logged by the daemon)' };
      if (!known) options.log(`API ${method} ${url.pathname}: INTERNAL: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      send(res, status, body);
      return { status, tokenId };
    }
  };
  const tls = options.config.daemon.tls ? await readTlsFiles(options.config.daemon.tls) : undefined;
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    // The request body is not used by any endpoint: drain it.
    req.resume();
    handle(req, res).then(
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
