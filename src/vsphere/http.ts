// One HTTP POST of a SOAP document over the checked agent, with an AbortSignal, a cap on
// the response size and an inactivity deadline.
//
// - Response cap: a body (announced by Content-Length, or counted as it arrives) larger than
//   `maxResponseBytes` ends the request at once; nothing past the cap is kept, so a hostile
//   or broken server cannot make the client buffer without bound.
// - Inactivity deadline: no response byte (headers or body) for `inactivityTimeoutMs` ends
//   the request. The caller's overall timeout still applies on top.
// Both end with a plain error of the classes below, and network-level errors are left as
// Node raised them; the session maps all of them to VsphereError codes because it knows the
// server and the operation.
import https from 'node:https';

export interface HttpReply {
  status: number;
  body: string;
  setCookies: string[];
}

export interface PostOptions {
  agent: https.Agent;
  headers: Record<string, string>;
  signal: AbortSignal;
  maxResponseBytes: number;
  inactivityTimeoutMs: number;
}

/** The response is larger than `maxResponseBytes` (`receivedBytes` = what arrived or was announced). */
export class ResponseTooLargeError extends Error {
  readonly maxResponseBytes: number;
  readonly receivedBytes: number;
  constructor(maxResponseBytes: number, receivedBytes: number, announced: boolean) {
    super(announced ? `the server announced a ${receivedBytes}-byte response` : `the response passed ${maxResponseBytes} bytes`);
    this.maxResponseBytes = maxResponseBytes;
    this.receivedBytes = receivedBytes;
  }
}

/** Nothing arrived for `inactivityTimeoutMs`. */
export class ResponseStalledError extends Error {
  readonly inactivityTimeoutMs: number;
  readonly receivedBytes: number;
  constructor(inactivityTimeoutMs: number, receivedBytes: number, gotHeaders: boolean) {
    super(`no data for ${inactivityTimeoutMs} ms ${gotHeaders ? `after ${receivedBytes} body bytes` : 'before the response headers'}`);
    this.inactivityTimeoutMs = inactivityTimeoutMs;
    this.receivedBytes = receivedBytes;
  }
}

export function postXml(url: URL, body: string, options: PostOptions): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const payload = Buffer.from(body, 'utf8');
    let receivedBytes = 0;
    let gotHeaders = false;
    let settled = false;
    let idleTimer: NodeJS.Timeout | undefined;
    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(idleTimer);
      request.destroy(error);
      reject(error);
    };
    const touch = () => {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => fail(new ResponseStalledError(options.inactivityTimeoutMs, receivedBytes, gotHeaders)), options.inactivityTimeoutMs);
      idleTimer.unref();
    };
    const request = https.request(
      url,
      {
        method: 'POST',
        agent: options.agent,
        signal: options.signal,
        headers: { 'Content-Type': 'text/xml; charset=utf-8', 'Content-Length': String(payload.length), ...options.headers },
      },
      (response) => {
        gotHeaders = true;
        touch();
        const announced = Number(response.headers['content-length']);
        if (Number.isFinite(announced) && announced > options.maxResponseBytes) {
          fail(new ResponseTooLargeError(options.maxResponseBytes, announced, true));
          return;
        }
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => {
          if (settled) return;
          receivedBytes += chunk.length;
          if (receivedBytes > options.maxResponseBytes) {
            fail(new ResponseTooLargeError(options.maxResponseBytes, receivedBytes, false));
            return;
          }
          chunks.push(chunk);
          touch();
        });
        response.on('error', (error) => fail(error));
        response.on('end', () => {
          if (settled) return;
          settled = true;
          clearTimeout(idleTimer);
          resolve({
            status: response.statusCode ?? 0,
            body: Buffer.concat(chunks).toString('utf8'),
            setCookies: response.headers['set-cookie'] ?? [],
          });
        });
      },
    );
    request.on('error', (error) => fail(error));
    // Node reports an abort only once the request has a socket; a server that never finishes
    // the handshake would hold the caller until the handshake timeout. Fail at once instead.
    const onAbort = () => fail(Object.assign(new Error('the request was aborted', { cause: options.signal.reason }), { name: 'AbortError' }));
    if (options.signal.aborted) onAbort();
    else options.signal.addEventListener('abort', onAbort, { once: true });
    request.once('close', () => options.signal.removeEventListener('abort', onAbort));
    touch();
    request.end(payload);
  });
}
