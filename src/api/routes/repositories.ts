// Repositories: the repositories of the configuration and their restore points.
import { openConfiguredRepository } from '../../service/run.ts';
import { ApiError, json, list, notFound, pathParam, segment, unauthorized, type RouteGroup } from '../route.ts';

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
  routes: ({ config, env }) => [
    {
      method: 'GET',
      pattern: /^\/api\/repositories\/([^/]+)\/points$/,
      action: false,
      handler: async (_request, [encoded]) => {
        const name = segment(encoded);
        if (!config.repositories.has(name)) throw new ApiError('API_NOT_FOUND', `no repository "${name}" in the configuration`, { repository: name });
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
  ],
  paths: {
    '/api/repositories/{name}/points': {
      get: {
        summary: 'the restore points in a repository of the configuration, oldest first',
        parameters: [pathParam('name')],
        responses: { '200': { description: 'restore points', ...json(list('points', 'Point')) }, ...unauthorized, ...notFound('no such repository') },
      },
    },
  },
  schemas: { Point: point },
};
