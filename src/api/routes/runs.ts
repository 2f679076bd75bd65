// Runs: the history of job runs from the catalog, with their tasks (one per VM) and log lines.
import { streamRunEvents } from '../sse.ts';
import { ApiError, LIST_LIMIT_MAX, badRequest, integerParam, json, list, notFound, nullableError, nullableString, pathParam, ref, unauthorized, type ApiContext, type RouteGroup } from '../route.ts';

export const runStatus = { type: 'string', enum: ['running', 'success', 'warning', 'failed', 'interrupted'] };

const run = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'job', 'jobType', 'trigger', 'status', 'startedAt', 'endedAt', 'host', 'pid', 'error'],
  properties: {
    id: { type: 'integer' },
    job: { type: 'string' },
    jobType: { type: 'string', enum: ['backup', 'replicate', 'verify', 'prune', 'restore'], description: 'a job\u2019s type, or an operation the API started (then job is KIND/TARGET, e.g. verify/main)' },
    trigger: { type: 'string', enum: ['manual', 'schedule', 'api'] },
    status: runStatus,
    startedAt: { type: 'string', format: 'date-time' },
    endedAt: nullableString,
    host: { type: 'string', description: 'host name of the process that runs it' },
    pid: { type: 'integer' },
    error: nullableError,
  },
};

export const task = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'runId', 'vm', 'moref', 'host', 'status', 'startedAt', 'endedAt', 'attempts', 'mode', 'reasonCodes', 'bytesRead', 'bytesStored', 'pointId', 'error', 'warnings'],
  properties: {
    id: { type: 'integer' },
    runId: { type: 'integer' },
    vm: { type: 'string' },
    moref: { type: 'string' },
    host: nullableString,
    status: runStatus,
    startedAt: { type: 'string' },
    endedAt: nullableString,
    attempts: { type: 'integer' },
    mode: { type: ['string', 'null'], enum: ['full', 'incremental', 'mixed', null] },
    reasonCodes: { type: 'array', items: { type: 'string' } },
    bytesRead: { type: 'integer' },
    bytesStored: { type: 'integer' },
    pointId: nullableString,
    error: nullableError,
    warnings: { type: 'array', items: { type: 'string' } },
  },
};

const logLine = { type: 'object', additionalProperties: false, required: ['runId', 'vm', 'at', 'line'], properties: { runId: { type: 'integer' }, vm: nullableString, at: { type: 'string' }, line: { type: 'string' } } };

const errorOrNull = nullableError;
const vmState = {
  type: 'object',
  additionalProperties: false,
  required: ['vm', 'moref', 'host', 'phase', 'attempt', 'result', 'disks', 'error'],
  properties: {
    vm: { type: 'string' },
    moref: { type: 'string' },
    host: nullableString,
    phase: { type: 'string', enum: ['working', 'copying', 'retrying', 'done'] },
    attempt: { type: 'integer' },
    result: { type: ['string', 'null'], enum: ['success', 'warning', 'failed', 'interrupted', 'running', null] },
    disks: { type: 'array', items: ref('DiskProgress') },
    error: errorOrNull,
  },
};
const diskProgress = { type: 'object', additionalProperties: false, required: ['deviceKey', 'doneBytes', 'totalBytes'], properties: { deviceKey: { type: 'integer' }, doneBytes: { type: 'integer' }, totalBytes: { type: 'integer', description: 'bytes this attempt copies of the disk (its changed or allocated areas)' } } };
const at = { type: 'string', description: 'when the daemon saw it' };
const eventData: Record<string, object> = {
  state: { type: 'object', additionalProperties: false, required: ['runId', 'job', 'status', 'vms'], properties: { runId: { type: 'integer' }, job: { type: 'string' }, status: runStatus, vms: { type: 'array', items: vmState } } },
  'task-start': { type: 'object', additionalProperties: false, required: ['vm', 'moref', 'host', 'attempt', 'at'], properties: { vm: { type: 'string' }, moref: { type: 'string' }, host: nullableString, attempt: { type: 'integer' }, at } },
  progress: { type: 'object', additionalProperties: false, required: ['vm', 'moref', 'deviceKey', 'doneBytes', 'totalBytes', 'at'], properties: { vm: { type: 'string' }, moref: { type: 'string' }, ...diskProgress.properties, at } },
  'attempt-end': { type: 'object', additionalProperties: false, required: ['vm', 'moref', 'attempt', 'error', 'at'], properties: { vm: { type: 'string' }, moref: { type: 'string' }, attempt: { type: 'integer' }, error: errorOrNull, at } },
  'task-end': {
    type: 'object',
    additionalProperties: false,
    required: ['vm', 'moref', 'result', 'attempts', 'mode', 'reasonCodes', 'bytesRead', 'bytesStored', 'pointId', 'error', 'warnings', 'at'],
    properties: {
      vm: { type: 'string' },
      moref: { type: 'string' },
      result: { type: 'string', enum: ['success', 'warning', 'failed'] },
      attempts: { type: 'integer' },
      mode: { type: ['string', 'null'], enum: ['full', 'incremental', 'mixed', null] },
      reasonCodes: { type: 'array', items: { type: 'string' } },
      bytesRead: { type: 'integer' },
      bytesStored: { type: 'integer' },
      pointId: nullableString,
      error: errorOrNull,
      warnings: { type: 'array', items: { type: 'string' } },
      at,
    },
  },
  log: { type: 'object', additionalProperties: false, required: ['vm', 'line', 'at'], properties: { vm: nullableString, line: { type: 'string' }, at } },
  end: { type: 'object', additionalProperties: false, required: ['status', 'endedAt', 'error'], properties: { status: runStatus, endedAt: nullableString, error: errorOrNull } },
};
const eventSchemas = {
  DiskProgress: diskProgress,
  RunEvent: {
    description: 'one Server-Sent Event of GET /api/runs/{id}/events: its event name and its data',
    oneOf: Object.entries(eventData).map(([name, data]) => ({ type: 'object', additionalProperties: false, required: ['event', 'data'], properties: { event: { type: 'string', enum: [name] }, data } })),
  },
};

/** The run with this id (the path's digits), API_NOT_FOUND when the catalog has none. */
export async function runById({ catalog }: Pick<ApiContext, 'catalog'>, idText: string | undefined) {
  const run = await catalog.run(Number(idText));
  if (!run) throw new ApiError('API_NOT_FOUND', `no run ${idText ?? ''} in the catalog`, { runId: Number(idText) });
  return run;
}

const runNotFound = notFound('no such run');

export const runsGroup: RouteGroup = {
  routes: (context) => [
    {
      method: 'GET',
      pattern: /^\/api\/runs$/,
      action: false,
      handler: async ({ query }) => {
        const limit = integerParam(query.get('limit'), 'limit', 50, 1, LIST_LIMIT_MAX) as number;
        const beforeId = integerParam(query.get('before'), 'before', undefined, 1, Number.MAX_SAFE_INTEGER);
        return { status: 200, body: { runs: await context.catalog.runs({ job: query.get('job') ?? undefined, limit, beforeId }) } };
      },
    },
    {
      method: 'GET',
      pattern: /^\/api\/runs\/(\d{1,15})$/,
      action: false,
      handler: async (_request, [id]) => {
        const r = await runById(context, id);
        return { status: 200, body: { run: r, tasks: await context.catalog.tasks(r.id) } };
      },
    },
    {
      method: 'GET',
      pattern: /^\/api\/runs\/(\d{1,15})\/logs$/,
      action: false,
      handler: async (_request, [id]) => ({ status: 200, body: { lines: await context.catalog.logs((await runById(context, id)).id) } }),
    },
    {
      method: 'GET',
      pattern: /^\/api\/runs\/(\d{1,15})\/events$/,
      action: false,
      handler: async ({ signal }, [id]) => {
        const r = await runById(context, id);
        return { stream: (response) => streamRunEvents(response, { runId: r.id, bus: context.daemon.events, catalog: context.catalog, signal }) };
      },
    },
  ],
  paths: {
    '/api/runs': {
      get: {
        summary: 'runs, newest first',
        parameters: [
          { name: 'job', in: 'query', schema: { type: 'string' } },
          { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: LIST_LIMIT_MAX, default: 50 } },
          { name: 'before', in: 'query', description: 'only runs with a smaller id (paging)', schema: { type: 'integer' } },
        ],
        responses: { '200': { description: 'runs', ...json(list('runs', 'Run')) }, ...badRequest, ...unauthorized },
      },
    },
    '/api/runs/{id}': {
      get: {
        summary: 'one run with its tasks (one per VM)',
        parameters: [pathParam('id', 'integer')],
        responses: { '200': { description: 'the run', ...json({ type: 'object', additionalProperties: false, required: ['run', 'tasks'], properties: { run: ref('Run'), tasks: { type: 'array', items: ref('Task') } } }) }, ...unauthorized, ...runNotFound },
      },
    },
    '/api/runs/{id}/events': {
      get: {
        summary: 'live progress of a run as Server-Sent Events (text/event-stream)',
        description:
          'Each SSE frame is `event: NAME` and `data: JSON`; the frame as `{event, data}` is a RunEvent. First `state` (the whole state), then `task-start`, `progress` (per disk, at most every 250 ms), `attempt-end`, `task-end`, `log`, and a last `end`, after which the server closes the stream. A finished run answers its final `state` and `end` at once. A client that reads too slowly gets a fresh `state` in place of the events it missed.',
        parameters: [pathParam('id', 'integer')],
        responses: {
          '200': { description: 'the event stream', content: { 'text/event-stream': { schema: { type: 'string' }, itemSchema: ref('RunEvent') } } },
          ...unauthorized,
          ...runNotFound,
        },
      },
    },
    '/api/runs/{id}/logs': {
      get: {
        summary: 'the log lines of a run',
        parameters: [pathParam('id', 'integer')],
        responses: { '200': { description: 'log lines', ...json(list('lines', 'LogLine')) }, ...unauthorized, ...runNotFound },
      },
    },
  },
  schemas: { Run: run, Task: task, LogLine: logLine, ...eventSchemas },
};
