// What a route group of the HTTP API is made of (server.ts dispatches, routes/*.ts define).
//
// Vocabulary
// - route: a method, a path pattern (its groups are the handler's params), whether it is an
//   *action* (it changes something: refused for read-only tokens with API_READ_ONLY) and the
//   handler.
// - answer: `{status, body}` sent as JSON, or `{stream}`: the handler writes the response
//   itself (Server-Sent Events) and resolves when it is done.
// - route group: the routes of one concept (jobs, runs, VMs, repositories, ...) with the
//   OpenAPI paths and schemas that describe them (openapi.ts assembles the document), so the
//   code and its contract change together.
import type { ServerResponse } from 'node:http';
import { VcbtError } from '../errors.ts';
import type { Catalog, TokenRecord } from '../service/catalog/catalog.ts';
import type { ServiceConfig } from '../service/config.ts';
import type { Daemon } from '../service/daemon.ts';
import type { InventoryCache } from '../service/inventory.ts';

/** Codes: API_UNAUTHORIZED, API_READ_ONLY, API_NOT_FOUND, API_BAD_REQUEST, API_LISTEN (context `host`, `port`). */
export class ApiError extends VcbtError {}

export interface ApiContext {
  config: ServiceConfig;
  catalog: Catalog;
  daemon: Daemon;
  log: (line: string) => void;
  env: NodeJS.ProcessEnv;
  /** The servers' VM inventories, cached (daemon.inventoryCache). */
  inventory: InventoryCache;
}

export interface ApiRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  token: TokenRecord;
  /** The parsed JSON body of a POST ({} when there is none). */
  body: Record<string, unknown>;
  /** Aborted when the client goes away. */
  signal: AbortSignal;
}

export type Answer = { status: number; body: unknown } | { stream: (response: ServerResponse) => Promise<void> };

export type Handler = (request: ApiRequest, params: string[]) => Promise<Answer>;

export interface Route {
  method: 'GET' | 'POST' | 'DELETE';
  pattern: RegExp;
  action: boolean;
  handler: Handler;
}

export interface RouteGroup {
  routes(context: ApiContext): Route[];
  /** OpenAPI `paths` entries of these routes. */
  paths: Record<string, unknown>;
  /** OpenAPI `components.schemas` entries they use. */
  schemas: Record<string, unknown>;
}

export const LIST_LIMIT_MAX = 1000;

/** A whole-number query parameter within [min, max]; API_BAD_REQUEST otherwise. */
export function integerParam(value: string | null, name: string, fallback: number | undefined, min: number, max: number): number | undefined {
  if (value === null) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max) throw new ApiError('API_BAD_REQUEST', `${name} must be a whole number from ${min} to ${max}`, { parameter: name });
  return n;
}

/** A path segment, percent-decoded (API_BAD_REQUEST when it is not valid percent-encoding). */
export function segment(encoded: string | undefined): string {
  try {
    return decodeURIComponent(encoded ?? '');
  } catch {
    throw new ApiError('API_BAD_REQUEST', `bad percent-encoding in the path: ${encoded ?? ''}`, {});
  }
}

// Pieces of OpenAPI shared by the groups.
export const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
export const json = (schema: object) => ({ content: { 'application/json': { schema } } });
export const nullableString = { type: ['string', 'null'] };
export const nullableError = { oneOf: [{ type: 'null' }, { $ref: '#/components/schemas/Error' }] };
export const unauthorized = { '401': { description: 'no token, or not a known one (API_UNAUTHORIZED)', ...json(ref('Error')) } };
export const readOnlyRefused = { '403': { description: 'a read-only token (API_READ_ONLY)', ...json(ref('Error')) } };
export const badRequest = { '400': { description: 'a bad parameter or body (API_BAD_REQUEST)', ...json(ref('Error')) } };
export const notFound = (what: string) => ({ '404': { description: `${what} (API_NOT_FOUND)`, ...json(ref('Error')) } });
export const list = (key: string, item: string) => ({ type: 'object', additionalProperties: false, required: [key], properties: { [key]: { type: 'array', items: ref(item) } } });
export const pathParam = (name: string, type: 'string' | 'integer' = 'string') => ({ name, in: 'path', required: true, schema: { type } });

/** Body field readers: API_BAD_REQUEST naming the field when it has the wrong type. */
export const field = {
  string(body: Record<string, unknown>, name: string, required: boolean): string | undefined {
    const v = body[name];
    if (v === undefined && !required) return undefined;
    if (typeof v !== 'string' || v === '') throw new ApiError('API_BAD_REQUEST', `"${name}" must be a non-empty string`, { field: name });
    return v;
  },
  integer(body: Record<string, unknown>, name: string, required: boolean, min = 0): number | undefined {
    const v = body[name];
    if (v === undefined && !required) return undefined;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw new ApiError('API_BAD_REQUEST', `"${name}" must be a whole number of at least ${min}`, { field: name });
    return v;
  },
  boolean(body: Record<string, unknown>, name: string): boolean {
    const v = body[name];
    if (v === undefined) return false;
    if (typeof v !== 'boolean') throw new ApiError('API_BAD_REQUEST', `"${name}" must be true or false`, { field: name });
    return v;
  },
  strings(body: Record<string, unknown>, name: string): string[] | undefined {
    const v = body[name];
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || x === '')) throw new ApiError('API_BAD_REQUEST', `"${name}" must be a list of non-empty strings`, { field: name });
    return v as string[];
  },
};

/** An OpenAPI JSON request body. */
export const requestBody = (schema: object, required = false) => ({ required, content: { 'application/json': { schema } } });
export const conflict = (what: string) => ({ '409': { description: what, ...json(ref('Error')) } });
