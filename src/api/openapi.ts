// The OpenAPI 3.1 document of the HTTP API, served at /api/openapi.json. It is the contract:
// test/api/api.test.ts validates what the server really answers against these schemas.
// Schemas use JSON Schema 2020-12 as OpenAPI 3.1 does (nullable as `type: [X, 'null']`).
// Each route group (routes/*.ts) brings the paths and schemas of its routes; this file
// assembles them.
import { json, unauthorized } from './route.ts';
import { routeGroups } from './routes/index.ts';

const error = { type: 'object', required: ['code', 'message'], additionalProperties: false, properties: { code: { type: 'string' }, message: { type: 'string' } } };

export const openApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'vcbt API',
    version: '1',
    description: 'The vcbt daemon (vcbt serve): jobs, runs and their VMs, protection status, restore points and actions. Every request needs `Authorization: Bearer TOKEN` (vcbt token create).',
  },
  security: [{ token: [] }],
  paths: {
    '/api/openapi.json': { get: { summary: 'this document', responses: { '200': { description: 'the OpenAPI document', ...json({ type: 'object' }) }, ...unauthorized } } },
    '/metrics': {
      get: {
        summary: 'Prometheus metrics (text exposition format 0.0.4; docs/operations.md lists them)',
        responses: { '200': { description: 'the metrics', content: { 'text/plain; version=0.0.4; charset=utf-8': { schema: { type: 'string' } } } }, ...unauthorized },
      },
    },
    ...Object.assign({}, ...routeGroups.map((g) => g.paths)),
  } as Record<string, unknown>,
  components: {
    securitySchemes: { token: { type: 'http', scheme: 'bearer', description: 'a token from `vcbt token create`' } },
    schemas: { Error: error, ...Object.assign({}, ...routeGroups.map((g) => g.schemas)) } as Record<string, unknown>,
  },
};
