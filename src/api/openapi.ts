// The OpenAPI 3.1 document of the HTTP API, served at /api/openapi.json. It is the contract:
// test/api/api.test.ts validates what the server really answers against these schemas.
// Schemas use JSON Schema 2020-12 as OpenAPI 3.1 does (nullable as `type: [X, 'null']`).

const error = { type: 'object', required: ['code', 'message'], additionalProperties: false, properties: { code: { type: 'string' }, message: { type: 'string' } } };
const nullableError = { oneOf: [{ type: 'null' }, { $ref: '#/components/schemas/Error' }] };
const nullableString = { type: ['string', 'null'] };
const status = { type: 'string', enum: ['running', 'success', 'warning', 'failed', 'interrupted'] };

const run = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'job', 'jobType', 'trigger', 'status', 'startedAt', 'endedAt', 'host', 'pid', 'error'],
  properties: {
    id: { type: 'integer' },
    job: { type: 'string' },
    jobType: { type: 'string', enum: ['backup', 'replicate'] },
    trigger: { type: 'string', enum: ['manual', 'schedule', 'api'] },
    status,
    startedAt: { type: 'string', format: 'date-time' },
    endedAt: nullableString,
    host: { type: 'string', description: 'host name of the process that runs it' },
    pid: { type: 'integer' },
    error: nullableError,
  },
};

const task = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'runId', 'vm', 'moref', 'host', 'status', 'startedAt', 'endedAt', 'attempts', 'mode', 'reasonCodes', 'bytesRead', 'bytesStored', 'pointId', 'error', 'warnings'],
  properties: {
    id: { type: 'integer' },
    runId: { type: 'integer' },
    vm: { type: 'string' },
    moref: { type: 'string' },
    host: nullableString,
    status,
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

const job = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'type', 'server', 'target', 'schedule', 'timezone', 'nextRun', 'runningRunId', 'lastRun', 'lastGoodAt'],
  properties: {
    name: { type: 'string' },
    type: { type: 'string', enum: ['backup', 'replicate'] },
    server: { type: 'string' },
    target: { type: 'string', description: '`repository NAME` or `replica TEMPLATE`' },
    schedule: nullableString,
    timezone: nullableString,
    nextRun: nullableString,
    runningRunId: { type: ['integer', 'null'], description: 'the run of this job the daemon works on now' },
    lastRun: { oneOf: [{ type: 'null' }, { $ref: '#/components/schemas/Run' }] },
    lastGoodAt: { ...nullableString, description: 'end of the newest run that ended success or warning' },
  },
};

const vm = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'moref', 'lastTask', 'lastGood'],
  properties: {
    name: { type: 'string' },
    moref: { type: 'string' },
    lastTask: { $ref: '#/components/schemas/VmTask' },
    lastGood: {
      description: 'the newest task that protected the VM (success or warning), its restore point and age',
      oneOf: [
        { type: 'null' },
        {
          type: 'object',
          additionalProperties: false,
          required: ['job', 'runId', 'endedAt', 'ageSeconds', 'pointId'],
          properties: { job: { type: 'string' }, runId: { type: 'integer' }, endedAt: { type: 'string' }, ageSeconds: { type: 'integer' }, pointId: nullableString },
        },
      ],
    },
  },
};

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

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: object) => ({ content: { 'application/json': { schema } } });
const errors = {
  '401': { description: 'no token, or not a known one (API_UNAUTHORIZED)', ...json(ref('Error')) },
};
const notFound = { '404': { description: 'no such job, run or repository (API_NOT_FOUND, JOB_NOT_FOUND)', ...json(ref('Error')) } };
const list = (key: string, item: string) => ({ type: 'object', additionalProperties: false, required: [key], properties: { [key]: { type: 'array', items: ref(item) } } });

export const openApiDocument = {
  openapi: '3.1.0',
  info: { title: 'vcbt API', version: '1', description: 'The vcbt daemon (vcbt serve): jobs, runs and their VMs, protection status, restore points, and "run a job now". Every request needs `Authorization: Bearer TOKEN` (vcbt token create).' },
  security: [{ token: [] }],
  paths: {
    '/api/openapi.json': { get: { summary: 'this document', responses: { '200': { description: 'the OpenAPI document', ...json({ type: 'object' }) }, ...errors } } },
    '/metrics': {
      get: {
        summary: 'Prometheus metrics (text exposition format 0.0.4; docs/operations.md lists them)',
        responses: { '200': { description: 'the metrics', content: { 'text/plain; version=0.0.4; charset=utf-8': { schema: { type: 'string' } } } }, ...errors },
      },
    },
    '/api/jobs': { get: { summary: 'the jobs with their schedule, next run, the run at work and the last one', responses: { '200': { description: 'jobs', ...json(list('jobs', 'Job')) }, ...errors } } },
    '/api/jobs/{name}/run': {
      post: {
        summary: 'run a job now (not with a read-only token)',
        parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string' } }],
        responses: {
          '202': { description: 'the run started', ...json({ type: 'object', additionalProperties: false, required: ['runId'], properties: { runId: { type: 'integer' } } }) },
          ...errors,
          '403': { description: 'a read-only token (API_READ_ONLY)', ...json(ref('Error')) },
          ...notFound,
          '409': { description: 'the job runs already (JOB_RUNNING) or the daemon is stopping (DAEMON_STOPPING)', ...json(ref('Error')) },
        },
      },
    },
    '/api/runs': {
      get: {
        summary: 'runs, newest first',
        parameters: [
          { name: 'job', in: 'query', schema: { type: 'string' } },
          { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 50 } },
          { name: 'before', in: 'query', description: 'only runs with a smaller id (paging)', schema: { type: 'integer' } },
        ],
        responses: { '200': { description: 'runs', ...json(list('runs', 'Run')) }, '400': { description: 'a bad parameter (API_BAD_REQUEST)', ...json(ref('Error')) }, ...errors },
      },
    },
    '/api/runs/{id}': {
      get: {
        summary: 'one run with its tasks (one per VM)',
        parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'integer' } }],
        responses: { '200': { description: 'the run', ...json({ type: 'object', additionalProperties: false, required: ['run', 'tasks'], properties: { run: ref('Run'), tasks: { type: 'array', items: ref('Task') } } }) }, ...errors, ...notFound },
      },
    },
    '/api/runs/{id}/logs': {
      get: {
        summary: 'the log lines of a run',
        parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'integer' } }],
        responses: { '200': { description: 'log lines', ...json(list('lines', 'LogLine')) }, ...errors, ...notFound },
      },
    },
    '/api/vms': { get: { summary: 'every VM a run worked on, with its protection status', responses: { '200': { description: 'VMs', ...json(list('vms', 'Vm')) }, ...errors } } },
    '/api/repositories/{name}/points': {
      get: {
        summary: 'the restore points in a repository of the configuration, oldest first',
        parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string' } }],
        responses: { '200': { description: 'restore points', ...json(list('points', 'Point')) }, ...errors, ...notFound },
      },
    },
  },
  components: {
    securitySchemes: { token: { type: 'http', scheme: 'bearer', description: 'a token from `vcbt token create`' } },
    schemas: {
      Error: error,
      Run: run,
      Task: task,
      VmTask: { ...task, required: [...task.required, 'job'], properties: { ...task.properties, job: { type: 'string' } } },
      Job: job,
      Vm: vm,
      Point: point,
      LogLine: { type: 'object', additionalProperties: false, required: ['runId', 'vm', 'at', 'line'], properties: { runId: { type: 'integer' }, vm: nullableString, at: { type: 'string' }, line: { type: 'string' } } },
    },
  },
} as const;
