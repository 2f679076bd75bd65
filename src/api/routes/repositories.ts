// Repositories: the repositories of the configuration and their restore points.
import type { RetentionPolicy } from '../../repository/retention.ts';
import type { Catalog } from '../../service/catalog/catalog.ts';
import type { ServiceConfig } from '../../service/config.ts';
import { pruneDryRun, pruneOperation, repositoryFigures, restoreOperation, restoreTarget, verifyOperation } from '../../service/repository-ops.ts';
import { openConfiguredRepository } from '../../service/run.ts';
import { ApiError, badRequest, conflict, field, json, list, notFound, nullableString, pathParam, readOnlyRefused, ref, requestBody, segment, unauthorized, type RouteGroup } from '../route.ts';

const HISTORY_SAMPLES = 500;
const OPERATION_RUNS = 10;

const lockHeld = {
  type: 'object',
  additionalProperties: false,
  required: ['kind', 'purpose', 'host', 'pid', 'since', 'stale'],
  properties: { kind: { type: ['string', 'null'], enum: ['shared', 'exclusive', null] }, purpose: nullableString, host: nullableString, pid: { type: ['integer', 'null'] }, since: nullableString, stale: { type: 'boolean' } },
};
const repository = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'jobs', 'storedBytes', 'logicalBytes', 'chunks', 'indexes', 'points', 'reductionRatio', 'locks', 'lastVerify', 'lastPrune'],
  properties: {
    name: { type: 'string' },
    jobs: { type: 'array', items: { type: 'string' }, description: 'the backup jobs that write to it' },
    storedBytes: { type: 'integer', description: 'bytes of chunk and index files' },
    logicalBytes: { type: 'integer', description: 'sum of the restore points\u2019 disk capacities' },
    chunks: { type: 'integer' },
    indexes: { type: 'integer' },
    points: { type: 'integer' },
    reductionRatio: { type: 'number', description: 'logicalBytes / storedBytes: deduplication, zero chunks not stored and compression together' },
    locks: { type: 'array', items: lockHeld },
    lastVerify: { oneOf: [{ type: 'null' }, ref('Run')], description: 'the newest verify the API started' },
    lastPrune: { oneOf: [{ type: 'null' }, ref('Run')], description: 'the newest prune the API started' },
  },
};
const sizeSample = { type: 'object', additionalProperties: false, required: ['at', 'storedBytes', 'logicalBytes', 'chunks', 'points'], properties: { at: { type: 'string' }, storedBytes: { type: 'integer' }, logicalBytes: { type: 'integer' }, chunks: { type: 'integer' }, points: { type: 'integer' } } };
const policy = {
  type: 'object',
  additionalProperties: false,
  properties: { keepLast: { type: 'integer' }, keepDaily: { type: 'integer' }, keepWeekly: { type: 'integer' }, keepMonthly: { type: 'integer' } },
  description: 'the retention policy (as vcbt prune), applied to every VM of the repository; at least one above 0',
};
const started = { '202': { description: 'started; follow it as a run', ...json({ type: 'object', additionalProperties: false, required: ['runId'], properties: { runId: { type: 'integer' } } }) } };

async function summary(config: ServiceConfig, catalog: Catalog, env: NodeJS.ProcessEnv, name: string) {
  const figures = await repositoryFigures(config, env, name);
  const [lastVerify] = await catalog.runs({ job: `verify/${name}`, limit: 1 });
  const [lastPrune] = await catalog.runs({ job: `prune/${name}`, limit: 1 });
  const jobs = [...config.jobs.values()].filter((j) => j.type === 'backup' && j.repository === name).map((j) => j.name);
  return { name, jobs, ...figures, lastVerify: lastVerify ?? null, lastPrune: lastPrune ?? null };
}

function policyOf(body: Record<string, unknown>): RetentionPolicy {
  const p = body.policy;
  if (typeof p !== 'object' || p === null || Array.isArray(p)) throw new ApiError('API_BAD_REQUEST', '"policy" is required: {keepLast, keepDaily, keepWeekly, keepMonthly}', { field: 'policy' });
  const o = p as Record<string, unknown>;
  const count = (k: string) => field.integer(o, k, false, 0) ?? 0;
  const out = { keepLast: count('keepLast'), keepDaily: count('keepDaily'), keepWeekly: count('keepWeekly'), keepMonthly: count('keepMonthly') };
  if (out.keepLast + out.keepDaily + out.keepWeekly + out.keepMonthly === 0) throw new ApiError('API_BAD_REQUEST', '"policy" keeps nothing: give at least one of keepLast, keepDaily, keepWeekly, keepMonthly above 0', { field: 'policy' });
  return out;
}

const point = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'createdAt', 'vm', 'disks'],
  properties: {
    id: { type: 'string' },
    createdAt: { type: 'string' },
    vm: { type: 'object', required: ['id', 'name'], properties: { id: { type: 'string' }, name: { type: 'string' } } },
    disks: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['deviceKey', 'label', 'capacityBytes', 'mode'],
        properties: { deviceKey: { type: 'integer' }, label: { type: 'string' }, capacityBytes: { type: 'integer' }, mode: { type: 'string', enum: ['full', 'incremental'] } },
      },
    },
  },
};

export const repositoriesGroup: RouteGroup = {
  routes: ({ config, env, catalog, daemon }) => {
    const nameOf = (encoded: string | undefined) => {
      const name = segment(encoded);
      if (!config.repositories.has(name)) throw new ApiError('API_NOT_FOUND', `no repository "${name}" in the configuration`, { repository: name });
      return name;
    };
    return [
    {
      method: 'GET',
      pattern: /^\/api\/repositories$/,
      action: false,
      handler: async () => ({ status: 200, body: { repositories: await Promise.all([...config.repositories.keys()].map((name) => summary(config, catalog, env, name))) } }),
    },
    {
      method: 'GET',
      pattern: /^\/api\/repositories\/([^/]+)$/,
      action: false,
      handler: async (_request, [encoded]) => {
        const name = nameOf(encoded);
        const history = (await catalog.repositorySizes(name, HISTORY_SAMPLES)).map(({ repository: _, ...sample }) => sample);
        return {
          status: 200,
          body: { ...(await summary(config, catalog, env, name)), history, verifyRuns: await catalog.runs({ job: `verify/${name}`, limit: OPERATION_RUNS }), pruneRuns: await catalog.runs({ job: `prune/${name}`, limit: OPERATION_RUNS }) },
        };
      },
    },
    {
      method: 'POST',
      pattern: /^\/api\/repositories\/([^/]+)\/verify$/,
      action: true,
      handler: async ({ body }, [encoded]) => {
        const name = nameOf(encoded);
        const request = { pointIds: field.strings(body, 'points'), sample: field.integer(body, 'sample', false, 1), readData: field.boolean(body, 'readData') };
        return { status: 202, body: { runId: await daemon.startOperation(verifyOperation(config, env, name, request)) } };
      },
    },
    {
      method: 'POST',
      pattern: /^\/api\/repositories\/([^/]+)\/prune$/,
      action: true,
      handler: async ({ body }, [encoded]) => {
        const name = nameOf(encoded);
        const retention = policyOf(body);
        if (field.boolean(body, 'dryRun')) return { status: 200, body: { dryRun: true, ...(await pruneDryRun(config, env, name, retention)) } };
        return { status: 202, body: { runId: await daemon.startOperation(pruneOperation(config, env, name, retention)) } };
      },
    },
    {
      method: 'POST',
      pattern: /^\/api\/repositories\/([^/]+)\/points\/([^/]+)\/disks\/(\d{1,9})\/restore$/,
      action: true,
      handler: async ({ body }, [encoded, point, key]) => {
        const name = nameOf(encoded);
        const path = field.string(body, 'path', true) as string;
        const target = await restoreTarget(config, path, field.boolean(body, 'overwrite'));
        const pointId = segment(point);
        const deviceKey = Number(key);
        const runId = await daemon.startOperation(restoreOperation(config, env, { repository: name, pointId, deviceKey, target, shownPath: path }), `restore/${name}/${target}`);
        return { status: 202, body: { runId, path } };
      },
    },
    {
      method: 'POST',
      pattern: /^\/api\/repositories\/([^/]+)\/points\/([^/]+)\/disks\/(\d{1,9})\/export$/,
      action: true,
      handler: async (_request, [encoded, point, key]) => ({ status: 201, body: await daemon.exports.start(config, env, { repository: nameOf(encoded), pointId: segment(point), deviceKey: Number(key) }) }),
    },
    {
      method: 'GET',
      pattern: /^\/api\/exports$/,
      action: false,
      handler: async () => ({ status: 200, body: { exports: daemon.exports.list() } }),
    },
    {
      method: 'DELETE',
      pattern: /^\/api\/exports\/([0-9a-f]{16})$/,
      action: true,
      handler: async (_request, [id]) => {
        if (!(await daemon.exports.stop(id as string))) throw new ApiError('API_NOT_FOUND', `no export ${id ?? ''}`, { exportId: id });
        return { status: 200, body: { stopped: id } };
      },
    },
    {
      method: 'GET',
      pattern: /^\/api\/repositories\/([^/]+)\/points$/,
      action: false,
      handler: async (_request, [encoded]) => {
        const name = nameOf(encoded);
        const repository = await openConfiguredRepository(config, name, env);
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
  },
  paths: {
    '/api/repositories': {
      get: { summary: 'the repositories of the configuration with their figures, locks held and last verify and prune', responses: { '200': { description: 'repositories', ...json(list('repositories', 'Repository')) }, ...unauthorized } },
    },
    '/api/repositories/{name}': {
      get: {
        summary: 'one repository: its figures, its size history (recorded after each run and prune; oldest first) and its verify and prune runs (newest first)',
        parameters: [pathParam('name')],
        responses: {
          '200': {
            description: 'the repository',
            ...json({
              ...repository,
              required: [...repository.required, 'history', 'verifyRuns', 'pruneRuns'],
              properties: { ...repository.properties, history: { type: 'array', items: ref('RepositorySize') }, verifyRuns: { type: 'array', items: ref('Run') }, pruneRuns: { type: 'array', items: ref('Run') } },
            }),
          },
          ...unauthorized,
          ...notFound('no such repository'),
        },
      },
    },
    '/api/repositories/{name}/verify': {
      post: {
        summary: 'verify the repository (every point, the points named, or a random sample; --read-data with readData), as a run (verify/NAME); not with a read-only token',
        parameters: [pathParam('name')],
        requestBody: requestBody({ type: 'object', additionalProperties: false, properties: { points: { type: 'array', items: { type: 'string' } }, sample: { type: 'integer', minimum: 1 }, readData: { type: 'boolean' } } }),
        responses: { ...started, ...badRequest, ...unauthorized, ...readOnlyRefused, ...notFound('no such repository'), ...conflict('a verify of it runs already (JOB_RUNNING), or the daemon is stopping') },
      },
    },
    '/api/repositories/{name}/prune': {
      post: {
        summary: 'prune the repository by a retention policy: dryRun answers what would go and what stays; otherwise a run (prune/NAME); not with a read-only token',
        parameters: [pathParam('name')],
        requestBody: requestBody({ type: 'object', additionalProperties: false, required: ['policy'], properties: { policy, dryRun: { type: 'boolean' } } }, true),
        responses: {
          '200': {
            description: 'the dry run: what would be removed and kept',
            ...json({
              type: 'object',
              additionalProperties: false,
              required: ['dryRun', 'keep', 'remove', 'damaged'],
              properties: {
                dryRun: { type: 'boolean' },
                keep: { type: 'array', items: { type: 'object', additionalProperties: false, required: ['id', 'createdAt', 'vmId', 'reasons'], properties: { id: { type: 'string' }, createdAt: { type: 'string' }, vmId: { type: 'string' }, reasons: { type: 'array', items: { type: 'string' } } } } },
                remove: { type: 'array', items: { type: 'object', additionalProperties: false, required: ['id', 'createdAt', 'vmId'], properties: { id: { type: 'string' }, createdAt: { type: 'string' }, vmId: { type: 'string' } } } },
                damaged: { type: 'array', items: { type: 'string' } },
              },
            }),
          },
          ...started,
          ...badRequest,
          ...unauthorized,
          ...readOnlyRefused,
          ...notFound('no such repository'),
          ...conflict('a prune of it runs already (JOB_RUNNING), a lock is held (REPO_LOCKED), or the daemon is stopping'),
        },
      },
    },
    '/api/repositories/{name}/points/{id}/disks/{key}/restore': {
      post: {
        summary: 'restore a disk of a restore point to a file under daemon.restoreDirectory (created 0600), as a run (restore/NAME) with progress; not with a read-only token',
        parameters: [pathParam('name'), pathParam('id'), pathParam('key', 'integer')],
        requestBody: requestBody({ type: 'object', additionalProperties: false, required: ['path'], properties: { path: { type: 'string', description: 'relative to daemon.restoreDirectory' }, overwrite: { type: 'boolean', description: 'write over an existing file' } } }, true),
        responses: {
          '202': { description: 'the restore started', ...json({ type: 'object', additionalProperties: false, required: ['runId', 'path'], properties: { runId: { type: 'integer' }, path: { type: 'string' } } }) },
          '400': { description: 'a path outside the restore directory, or none configured (RESTORE_PATH_REFUSED), or a bad body (API_BAD_REQUEST)', ...json(ref('Error')) },
          ...unauthorized,
          ...readOnlyRefused,
          ...notFound('no such repository'),
          ...conflict('the file exists and overwrite was not given (RESTORE_TARGET_EXISTS), or a restore to it runs (JOB_RUNNING)'),
        },
      },
    },
    '/api/repositories/{name}/points/{id}/disks/{key}/export': {
      post: {
        summary: 'serve a disk of a restore point read-only over NBD until stopped; answers the URI and the commands to use it; not with a read-only token',
        parameters: [pathParam('name'), pathParam('id'), pathParam('key', 'integer')],
        responses: { '201': { description: 'the export runs', ...json(ref('Export')) }, ...unauthorized, ...readOnlyRefused, ...notFound('no such repository, restore point (REPO_POINT_NOT_FOUND) or disk (REPO_DISK_NOT_FOUND)') },
      },
    },
    '/api/exports': { get: { summary: 'the NBD exports running', responses: { '200': { description: 'exports', ...json(list('exports', 'Export')) }, ...unauthorized } } },
    '/api/exports/{id}': {
      delete: {
        summary: 'stop an NBD export (clients are disconnected); not with a read-only token',
        parameters: [pathParam('id')],
        responses: { '200': { description: 'stopped', ...json({ type: 'object', additionalProperties: false, required: ['stopped'], properties: { stopped: { type: 'string' } } }) }, ...unauthorized, ...readOnlyRefused, ...notFound('no such export') },
      },
    },
    '/api/repositories/{name}/points': {
      get: {
        summary: 'the restore points in a repository of the configuration, oldest first',
        parameters: [pathParam('name')],
        responses: { '200': { description: 'restore points', ...json(list('points', 'Point')) }, ...unauthorized, ...notFound('no such repository') },
      },
    },
  },
  schemas: {
    Point: point,
    Repository: repository,
    RepositorySize: sizeSample,
    Export: {
      type: 'object',
      additionalProperties: false,
      required: ['id', 'repository', 'pointId', 'deviceKey', 'label', 'capacityBytes', 'uri', 'startedAt', 'commands'],
      properties: {
        id: { type: 'string' },
        repository: { type: 'string' },
        pointId: { type: 'string' },
        deviceKey: { type: 'integer' },
        label: { type: 'string' },
        capacityBytes: { type: 'integer' },
        uri: { type: 'string', description: 'nbd://HOST:PORT/NAME' },
        startedAt: { type: 'string' },
        commands: { type: 'object', additionalProperties: false, required: ['nbdcopy', 'qemuImg', 'qemuNbd'], properties: { nbdcopy: { type: 'string' }, qemuImg: { type: 'string' }, qemuNbd: { type: 'string' } } },
      },
    },
  },
};
