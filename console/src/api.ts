// The console's only back end: the daemon's HTTP API on the same origin (docs/api.md). Types
// come from the OpenAPI document (api-types.ts, generated).
//
// Vocabulary
// - token: the API token the user logged in with, kept in sessionStorage (gone when the tab
//   closes; never in localStorage, a cookie or a URL).
// - endpoint key: "METHOD /api/path/{param}" as in the OpenAPI document; `call` fills the
//   `{param}`s and types the answer from `Endpoints`.
// - ApiFailure: an answer that is not 2xx, with the API's `{code, message}`.
// - event stream: Server-Sent Events read with fetch (EventSource cannot send the
//   Authorization header), parsed line by line.
import type { Bodies, Endpoints } from './api-types.ts';

const TOKEN_KEY = 'vcbt.token';

export function storedToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}
export function storeToken(token: string | null): void {
  if (token === null) sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
}

export class ApiFailure extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Called on 401 so the app can return to the login page. */
let onUnauthorized: () => void = () => undefined;
export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

type Params = Record<string, string | number>;

export function pathOf(key: string, params: Params = {}, query: Params = {}): { method: string; url: string } {
  const [method, template] = key.split(' ') as [string, string];
  const path = template.replace(/\{(\w+)\}/g, (_, name: string) => {
    if (!(name in params)) throw new Error(`missing parameter ${name} of ${key}`);
    return encodeURIComponent(String(params[name]));
  });
  const search = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)])).toString();
  return { method, url: search ? `${path}?${search}` : path };
}

async function failureOf(response: Response): Promise<ApiFailure> {
  let code = `HTTP_${response.status}`;
  let message = response.statusText;
  try {
    const body = (await response.json()) as { code?: string; message?: string };
    code = body.code ?? code;
    message = body.message ?? message;
  } catch {
    // not JSON: keep the status
  }
  if (response.status === 401) onUnauthorized();
  return new ApiFailure(response.status, code, message);
}

export async function call<K extends keyof Endpoints>(key: K, options: { params?: Params; query?: Params; body?: K extends keyof Bodies ? Bodies[K] : never; token?: string } = {}): Promise<Endpoints[K]> {
  const { method, url } = pathOf(key, options.params, options.query);
  const token = options.token ?? storedToken() ?? '';
  const response = await fetch(url, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(options.body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  if (!response.ok) throw await failureOf(response);
  return (response.status === 204 ? null : await response.json()) as Endpoints[K];
}

export interface StreamEvent {
  event: string;
  data: string;
}

/**
 * Reads a Server-Sent Events stream until it ends or `signal` aborts; calls `onEvent` per
 * event. Throws ApiFailure when the endpoint answers an error (404: none such).
 */
export async function stream(url: string, onEvent: (event: StreamEvent) => void, signal: AbortSignal): Promise<void> {
  const response = await fetch(url, { headers: { authorization: `Bearer ${storedToken() ?? ''}`, accept: 'text/event-stream' }, signal });
  if (!response.ok || !response.body) throw await failureOf(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let event = 'message';
  let data: string[] = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let newline: number;
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, newline).replace(/\r$/, '');
      buffer = buffer.slice(newline + 1);
      if (line === '') {
        if (data.length > 0) onEvent({ event, data: data.join('\n') });
        event = 'message';
        data = [];
      } else if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
  }
}
