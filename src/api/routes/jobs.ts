// Jobs: the jobs of the configuration with their schedule and last run; "run a job now".
import { jobStatus } from '../../service/catalog/status.ts';
import { summarizeJob } from '../../service/schedule.ts';
import { badRequest, field, json, list, nullableString, pathParam, readOnlyRefused, ref, requestBody, segment, unauthorized, type RouteGroup } from '../route.ts';

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

export const jobsGroup: RouteGroup = {
  routes: ({ config, catalog, daemon }) => [
    {
      method: 'GET',
      pattern: /^\/api\/jobs$/,
      action: false,
      handler: async () => {
        const statuses = await jobStatus(config, catalog, { runs: 1 });
        const running = daemon.activeRuns();
        const now = new Date();
        const jobs = statuses.map((s) => {
          const j = config.jobs.get(s.name)!;
          return { ...summarizeJob(j, now), runningRunId: running.get(j.name) ?? null, lastRun: s.runs[0] ?? null, lastGoodAt: s.lastGoodAt };
        });
        return { status: 200, body: { jobs } };
      },
    },
    {
      method: 'POST',
      pattern: /^\/api\/jobs\/([^/]+)\/run$/,
      action: true,
      handler: async ({ body }, [name]) => ({ status: 202, body: { runId: await daemon.runNow(segment(name), 'api', field.strings(body, 'vms')) } }),
    },
  ],
  paths: {
    '/api/jobs': { get: { summary: 'the jobs with their schedule, next run, the run at work and the last one', responses: { '200': { description: 'jobs', ...json(list('jobs', 'Job')) }, ...unauthorized } } },
    '/api/jobs/{name}/run': {
      post: {
        summary: 'run a job now (not with a read-only token)',
        parameters: [pathParam('name')],
        requestBody: requestBody({
          type: 'object',
          additionalProperties: false,
          properties: { vms: { type: 'array', items: { type: 'string' }, description: 'only these VMs of the job\u2019s selection (names or patterns), as `vcbt job run --vm`' } },
        }),
        responses: {
          ...badRequest,
          '202': { description: 'the run started', ...json({ type: 'object', additionalProperties: false, required: ['runId'], properties: { runId: { type: 'integer' } } }) },
          ...unauthorized,
          ...readOnlyRefused,
          '404': { description: 'no such job (JOB_NOT_FOUND)', ...json(ref('Error')) },
          '409': { description: 'the job runs already (JOB_RUNNING) or the daemon is stopping (DAEMON_STOPPING)', ...json(ref('Error')) },
        },
      },
    },
  },
  schemas: { Job: job },
};
