// File-level restore through the API: browse a restore point's guest file systems and download
// files or trees, with the same engine as `vcbt files` (jobs/files.ts) and one kept session per
// open point disk (jobs/files-sessions.ts: only the first request pays the appliance's boot;
// idle sessions close after 5 minutes; at most 2 run at once, FILES_BUSY beyond).
//
// Terms: `disk` is the device key (may be left out when the point has one disk); `path` is a
// guest path as `vcbt files` takes it (`/dir/file`, `N:/dir/file`, `VG/LV:/dir/file`).
// Downloads: a file comes back as application/octet-stream with its name; a directory as a tar
// archive (application/x-tar) of the tree. Reading files is not an action (read-only tokens may
// browse and download, as they may read every other answer of the API).
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import type { ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { FilesBrowser, prefixOf, resolveFilesDisk } from '../../jobs/files.ts';
import { SessionPool } from '../../jobs/files-sessions.ts';
import type { Repository } from '../../repository/repository.ts';
import { openConfiguredRepository } from '../../service/run.ts';
import { ApiError, badRequest, integerParam, json, notFound, pathParam, ref, segment, unauthorized, type ApiContext, type Route, type RouteGroup } from '../route.ts';

/** A kept session: the repository stays open as long as its browser. */
interface OpenPoint {
  repository: Repository;
  browser: FilesBrowser;
  close(): Promise<void>;
}

const filesystem = {
  type: 'object',
  additionalProperties: false,
  required: ['prefix', 'partition', 'volume', 'type', 'sizeBytes', 'browsable'],
  properties: {
    prefix: { type: ['string', 'null'], description: 'what a path names this file system with (N or VG/LV); null for a file system on the whole disk' },
    partition: { type: ['integer', 'null'] },
    volume: { type: ['string', 'null'] },
    type: { type: 'string' },
    sizeBytes: { type: 'integer' },
    browsable: { type: 'boolean' },
  },
};
const entry = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'path', 'kind', 'sizeBytes', 'mode', 'uid', 'gid', 'modifiedAt'],
  properties: {
    name: { type: 'string' },
    path: { type: 'string' },
    kind: { type: 'string', enum: ['file', 'directory', 'symlink', 'other'] },
    sizeBytes: { type: 'integer' },
    mode: { type: 'integer' },
    uid: { type: 'integer' },
    gid: { type: 'integer' },
    modifiedAt: { type: 'string' },
  },
};

const params = [
  pathParam('name'),
  pathParam('id'),
  { name: 'disk', in: 'query', description: 'device key of the disk (default: the point\'s only disk)', schema: { type: 'integer' } },
];
const filesErrors = {
  ...badRequest,
  ...unauthorized,
  ...notFound('no such repository, restore point, disk, partition or path (API_NOT_FOUND, REPO_POINT_NOT_FOUND, FILES_PATH_NOT_FOUND, FILES_PARTITION_NOT_FOUND)'),
  '422': { description: 'nothing browsable there (FILES_NO_FILESYSTEM, FILES_FILESYSTEM_ENCRYPTED, FILES_FILESYSTEM_UNKNOWN)', ...json(ref('Error')) },
  '503': { description: 'every file-browsing session is in use (FILES_BUSY), or the engine failed (FILES_ENGINE_FAILED, FILES_ENGINE_MISSING)', ...json(ref('Error')) },
};

/** The HTTP status of a files error (server.ts maps the API's own codes). */
export const filesStatusOf: Record<string, number> = {
  REPO_POINT_NOT_FOUND: 404,
  FILES_PATH_NOT_FOUND: 404,
  FILES_PARTITION_NOT_FOUND: 404,
  FILES_PATH_SYNTAX: 400,
  FILES_DISK_AMBIGUOUS: 400,
  FILES_NO_FILESYSTEM: 422,
  FILES_FILESYSTEM_ENCRYPTED: 422,
  FILES_FILESYSTEM_UNKNOWN: 422,
  FILES_BUSY: 503,
  FILES_ENGINE_FAILED: 503,
  FILES_ENGINE_MISSING: 503,
};

function filesRoutes(context: ApiContext): Route[] {
  const { config, env } = context;
  const pool = new SessionPool<OpenPoint>();
  context.onClose(() => pool.close());

  /** Runs `work` on the kept session of the point's disk, opening it (and its repository) when needed. */
  const withPoint = async <T>(encodedName: string | undefined, encodedId: string | undefined, query: URLSearchParams, work: (browser: FilesBrowser) => Promise<T>): Promise<T> => {
    const name = segment(encodedName);
    const pointId = segment(encodedId);
    if (!config.repositories.has(name)) throw new ApiError('API_NOT_FOUND', `no repository "${name}" in the configuration`, { repository: name });
    const askedDisk = integerParam(query.get('disk'), 'disk', undefined, 0, 2 ** 31 - 1);
    // The disk is resolved with the repository the session would use; a known session skips it.
    let deviceKey = askedDisk;
    if (deviceKey === undefined) {
      const repository = await openConfiguredRepository(config, name, env);
      try {
        deviceKey = await resolveFilesDisk(repository, pointId, undefined);
      } finally {
        await repository.close();
      }
    }
    const key = `${name}\n${pointId}\n${deviceKey}`;
    return pool.use(
      key,
      async () => {
        const repository = await openConfiguredRepository(config, name, env);
        try {
          const browser = await FilesBrowser.open({ repository, pointId, deviceKey, env, onNotice: (text) => context.log(`files ${name} ${pointId} disk ${deviceKey}: ${text}`) });
          return { repository, browser, close: async () => { try { await browser.close(); } finally { await repository.close(); } } };
        } catch (error) {
          await repository.close();
          throw error;
        }
      },
      (open) => work(open.browser),
    );
  };

  const pathOf = (query: URLSearchParams): string => {
    const path = query.get('path');
    if (path === null || path === '') throw new ApiError('API_BAD_REQUEST', 'path is required (a guest path such as /etc/hostname or 1:/etc/hostname)', { parameter: 'path' });
    return path;
  };

  return [
    {
      method: 'GET',
      pattern: /^\/api\/repositories\/([^/]+)\/points\/([^/]+)\/files$/,
      action: false,
      handler: async ({ query }, [name, id]) =>
        withPoint(name, id, query, async (browser) => {
          const filesystems = browser.filesystems.map((f) => ({ prefix: prefixOf(f), partition: f.partition, volume: f.volume, type: f.type, sizeBytes: f.sizeBytes, browsable: f.browsable }));
          const path = query.get('path');
          const entries = path === null || path === '' ? null : await browser.list(path);
          return { status: 200, body: { pointId: browser.pointId, deviceKey: browser.deviceKey, filesystems, entries } };
        }),
    },
    {
      method: 'GET',
      pattern: /^\/api\/repositories\/([^/]+)\/points\/([^/]+)\/files\/content$/,
      action: false,
      handler: async ({ query, signal }, [name, id]) => {
        const path = pathOf(query);
        // Extracted into a private staging directory, streamed out, then removed: the session is
        // held only while extracting, not while a slow client downloads.
        const staging = await mkdtemp(join(tmpdir(), 'vcbt-api-files-'));
        try {
          const [copied] = await withPoint(name, id, query, (browser) => browser.get([path], staging, signal));
          const base = posix.basename(copied.to);
          if (copied.kind === 'directory') {
            return {
              stream: async (response: ServerResponse) => {
                // No `signal` on the child: the request's signal aborts when the response closes,
                // also after a complete answer, and an abort event on a child that has not been
                // reaped yet is an unhandled 'error' that would end the daemon. A client that goes
                // away ends the pipeline, and the finally kills tar.
                const tar = spawn('tar', ['-c', '-f', '-', '--numeric-owner', '-C', staging, '--', base], { stdio: ['ignore', 'pipe', 'ignore'] });
                const exited = new Promise<void>((resolve) => tar.once('close', () => resolve()));
                tar.on('error', (error) => context.log(`files: tar of ${path} failed: ${error.message}`));
                try {
                  response.writeHead(200, { 'content-type': 'application/x-tar', 'content-disposition': `attachment; filename="${asciiName(base)}.tar"`, 'cache-control': 'no-store' });
                  await pipeline(tar.stdout, response);
                } finally {
                  if (tar.exitCode === null && tar.signalCode === null) tar.kill();
                  await exited;
                  await rm(staging, { recursive: true, force: true });
                }
              },
            };
          }
          return {
            stream: async (response: ServerResponse) => {
              try {
                response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-disposition': `attachment; filename="${asciiName(base)}"`, 'cache-control': 'no-store' });
                await pipeline(createReadStream(copied.to), response);
              } finally {
                await rm(staging, { recursive: true, force: true });
              }
            },
          };
        } catch (error) {
          await rm(staging, { recursive: true, force: true });
          throw error;
        }
      },
    },
  ];
}

/** A file name safe inside a quoted content-disposition (non-ASCII and quotes become "_"). */
function asciiName(name: string): string {
  return name.replace(/[^\x20-\x7e]|["\\]/g, '_');
}

export const filesGroup: RouteGroup = {
  routes: filesRoutes,
  paths: {
    '/api/repositories/{name}/points/{id}/files': {
      get: {
        summary: 'the file systems of a restore point\'s disk, and with `path` a directory\'s entries (or one file)',
        parameters: [...params, { name: 'path', in: 'query', description: 'a guest path: /dir, N:/dir or VG/LV:/dir', schema: { type: 'string' } }],
        responses: {
          '200': {
            description: 'file systems and entries',
            ...json({
              type: 'object',
              additionalProperties: false,
              required: ['pointId', 'deviceKey', 'filesystems', 'entries'],
              properties: { pointId: { type: 'string' }, deviceKey: { type: 'integer' }, filesystems: { type: 'array', items: ref('GuestFileSystem') }, entries: { oneOf: [{ type: 'null' }, { type: 'array', items: ref('GuestEntry') }] } },
            }),
          },
          ...filesErrors,
        },
      },
    },
    '/api/repositories/{name}/points/{id}/files/content': {
      get: {
        summary: 'download a file (as itself) or a directory (as a tar archive) from a restore point',
        parameters: [...params, { name: 'path', in: 'query', required: true, schema: { type: 'string' } }],
        responses: {
          '200': { description: 'the file, or a tar archive of the directory', content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } }, 'application/x-tar': { schema: { type: 'string', format: 'binary' } } } },
          ...filesErrors,
        },
      },
    },
  },
  schemas: { GuestFileSystem: filesystem, GuestEntry: entry },
};
