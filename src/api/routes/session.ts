// Session: `GET /api/session` answers what the token of the request may do, so that the web
// console shows action buttons only to a token that may use them. The token's value is never
// answered; its id and note are (the note is what its creator wrote about who uses it).
import { json, ref, unauthorized, type RouteGroup } from '../route.ts';

const session = {
  type: 'object',
  additionalProperties: false,
  required: ['tokenId', 'readOnly', 'note', 'createdAt'],
  properties: {
    tokenId: { type: 'integer' },
    readOnly: { type: 'boolean', description: 'true: actions answer 403 API_READ_ONLY' },
    note: { type: 'string', description: 'what the token was created for (vcbt token create --note)' },
    createdAt: { type: 'string' },
  },
};

export const sessionGroup: RouteGroup = {
  routes: () => [
    {
      method: 'GET',
      pattern: /^\/api\/session$/,
      action: false,
      handler: async ({ token }) => ({ status: 200, body: { tokenId: token.id, readOnly: token.readOnly, note: token.note, createdAt: token.createdAt } }),
    },
  ],
  paths: {
    '/api/session': { get: { summary: 'what the token of the request may do (the web console hides actions from a read-only token)', responses: { '200': { description: 'the session', ...json(ref('Session')) }, ...unauthorized } } },
  },
  schemas: { Session: session },
};
