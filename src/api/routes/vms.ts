// VMs: every VM a run worked on, with its newest task and its protection status.
import { json, list, nullableString, ref, unauthorized, type RouteGroup } from '../route.ts';
import { task } from './runs.ts';

const vm = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'moref', 'lastTask', 'lastGood'],
  properties: {
    name: { type: 'string' },
    moref: { type: 'string' },
    lastTask: ref('VmTask'),
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

export const vmsGroup: RouteGroup = {
  routes: ({ catalog }) => [
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
  ],
  paths: {
    '/api/vms': { get: { summary: 'every VM a run worked on, with its protection status', responses: { '200': { description: 'VMs', ...json(list('vms', 'Vm')) }, ...unauthorized } } },
  },
  schemas: { Vm: vm, VmTask: { ...task, required: [...task.required, 'job'], properties: { ...task.properties, job: { type: 'string' } } } },
};
