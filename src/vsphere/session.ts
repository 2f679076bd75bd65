// A logged-in vim25 session: the only object that talks to the server.
//
// - `connect` checks TLS (tls.ts) before anything is sent, reads the ServiceContent and logs in.
// - `call` posts one method with a timeout (AbortSignal.timeout), an inactivity deadline,
//   a response size cap (http.ts) and the caller's signal; only idempotent reads are retried
//   on transient network errors (a stalled answer counts as one; an oversized one does not).
// - A keep-alive timer (CurrentTime) keeps an idle session from expiring during long jobs.
// - The password stays in a private field: never in a message, error context or log.
//
// Re-login. A session ends on the server when it idles out (vCenter: 30 minutes), when
// vCenter restarts, or when someone terminates it. The server then says NotAuthenticated in
// one of two shapes: a SOAP fault (most methods), or HTTP 200 with a NotAuthenticated fault
// in the `missingSet` of every object of a property read (RetrievePropertiesEx and friends).
// `call` treats both alike: it logs in again (concurrent callers share one Login; a caller
// whose failed request predates a re-login someone else already did just retries) and
// repeats the call once.
//
// Repeating is safe for every method, tasks included (CreateSnapshot_Task, RemoveSnapshot_Task,
// ReconfigVM_Task): the rule is that only a NotAuthenticated answer leads to a repeat, and
// NotAuthenticated means the server refused the request before executing it. Any other
// doubt - a timeout, a cut connection, an HTTP error - never repeats a non-idempotent call,
// because the server may have executed it.
//
// Session objects. Some things live only as long as the login that made them: ContainerViews,
// property filters and collectors, paging tokens of ContinueRetrievePropertiesEx. After a
// re-login they are gone (the server answers ManagedObjectNotFound or worse), so they must be
// recreated, never reused. Code that makes them runs inside `withSessionObjects(work)`: calls
// made with its `scope` are never repeated on their own; when the login changes while `work`
// runs, `work` fails and runs again from the start in the new login, making fresh objects.
// A datastore HTTP reader re-reads `cookieHeader()` for every request, so it follows a
// re-login too. Tasks (task-N) and VMware objects (VMs, snapshots) survive re-logins.
import { UsageError, VcbtError } from '../errors.ts';
import { CheckedAgent, parseFingerprint, peerFingerprints, type SeenFingerprints, type TlsPolicy } from './tls.ts';
import { postXml, ResponseStalledError, ResponseTooLargeError, type HttpReply } from './http.ts';
import { buildEnvelope, notAuthenticatedInMissingSet, parseResponse, type SoapValue } from './soap.ts';
import { child, moRef, moRefOf, optionalMoRef, optionalText, requireChild, SoapDecodeError, type MoRef } from './decode.ts';
import { VsphereError, VsphereFault, type Target } from './errors.ts';
import type { XmlElement } from './xml.ts';
import { sleep } from './sleep.ts';

export interface ConnectOptions {
  /** `https://host[:port][/sdk]` or a bare `host[:port]`. */
  server: string;
  username: string;
  password: string;
  /** Pinned SHA-1 thumbprint or SHA-256 fingerprint; omitted = verify against system CAs. */
  thumbprint?: string;
  /** Longest a whole call may take (default 120 s). */
  requestTimeoutMs?: number;
  /** Longest wait for the next response byte before a call counts as stalled (default 60 s). */
  ioTimeoutMs?: number;
  /**
   * Largest SOAP response accepted (default 64 MiB, far above any real answer: a page of 100
   * VMs with all their devices is well under 10 MiB). A larger one fails with
   * VSPHERE_RESPONSE_TOO_LARGE, having kept no more than this many bytes.
   */
  maxResponseBytes?: number;
  /** 0 disables; default 5 minutes, well inside vCenter's 30-minute idle expiry. */
  keepAliveIntervalMs?: number;
  /** Extra attempts for idempotent reads after a transient network error. */
  readRetries?: number;
  signal?: AbortSignal;
  /** Told after each transparent re-login, with what showed that the session had ended (to log it). */
  onRelogin?: (cause: string) => void;
}

export interface ServiceContent {
  rootFolder: MoRef;
  propertyCollector: MoRef;
  viewManager: MoRef;
  sessionManager: MoRef;
  searchIndex: MoRef;
  /** Absent on servers without OVF support. */
  ovfManager: MoRef | undefined;
  about: { apiVersion: string; fullName: string; apiType: string };
}

export interface CallOptions {
  /** Safe to send twice: retried on transient network errors. */
  idempotent?: boolean;
  /** VM/disk the call concerns, for error messages. */
  target?: Omit<Target, 'server'>;
  signal?: AbortSignal;
  timeoutMs?: number;
  /**
   * The call uses objects of one login (a ContainerView, a paging token): it is made only
   * while that login lasts, and is not repeated after a re-login (its withSessionObjects
   * work starts over instead).
   */
  scope?: SessionScope;
}

/** One login's lifetime, as seen by code holding objects that die with it (see the file header). */
export interface SessionScope {
  /** The session's `loginGeneration` when the scope began. */
  readonly generation: number;
}

export const SESSION_COOKIE = 'vmware_soap_session';
const serviceInstance = moRef('ServiceInstance', 'ServiceInstance');
const defaultTimeoutMs = 120_000;
const defaultIoTimeoutMs = 60_000;
export const DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024;
const defaultKeepAliveMs = 5 * 60_000;
const retryBaseDelayMs = 250;
/** Fresh starts of a withSessionObjects work after re-logins; a session that keeps ending is an error. */
const maxScopeRestarts = 3;
const transientCodes = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'VSPHERE_TIMEOUT']);

/** Normalizes the --server value to the SDK endpoint URL. */
export function sdkUrlOf(server: string): URL {
  const text = /^[a-z]+:\/\//i.test(server) ? server : `https://${server}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`server "${server}" is not a host name or https URL`);
  }
  if (url.protocol !== 'https:') throw new UsageError(`server "${url.host}": only https is supported`);
  if (url.username || url.password) throw new UsageError(`server URL must not contain credentials; give --user and VCBT_PASSWORD or --password-file`);
  if (url.pathname === '' || url.pathname === '/') url.pathname = '/sdk';
  return url;
}

export class VsphereSession {
  readonly sdkUrl: URL;
  /** `host:port`, as messages name the server. */
  readonly server: string;
  /** The keep-alive agent whose sockets passed the TLS check; reuse it for datastore HTTP. */
  readonly agent: CheckedAgent;
  readonly tlsPolicy: TlsPolicy;
  #serviceContent: ServiceContent | undefined;
  readonly #username: string;
  readonly #password: string;
  readonly #timeoutMs: number;
  readonly #ioTimeoutMs: number;
  readonly #maxResponseBytes: number;
  readonly #readRetries: number;
  #cookie: string | undefined;
  /** Bumped whenever the server sets the session cookie (to see that Login set one). */
  #cookiesReceived = 0;
  #loggedIn = false;
  #relogin: Promise<void> | undefined;
  /** Bumped by every successful Login: objects of an older generation are dead. */
  #generation = 0;
  readonly #onRelogin: ((cause: string) => void) | undefined;
  #keepAlive: NodeJS.Timeout | undefined;
  /** Last keep-alive failure, if any (the next real call reports its own error). */
  keepAliveError: Error | undefined;
  /** How many transparent re-logins happened (for tests and diagnostics). */
  reloginCount = 0;

  constructor(options: ConnectOptions) {
    this.sdkUrl = sdkUrlOf(options.server);
    this.server = this.sdkUrl.host;
    this.tlsPolicy = options.thumbprint ? { pinnedFingerprint: parseFingerprint(options.thumbprint) } : {};
    this.agent = new CheckedAgent(this.tlsPolicy);
    this.#username = options.username;
    this.#password = options.password;
    this.#timeoutMs = options.requestTimeoutMs ?? defaultTimeoutMs;
    this.#ioTimeoutMs = options.ioTimeoutMs ?? defaultIoTimeoutMs;
    this.#maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    this.#readRetries = options.readRetries ?? 2;
    this.#onRelogin = options.onRelogin;
  }

  /** Counts logins: changes when a re-login replaced the session (and everything tied to it). */
  get loginGeneration(): number {
    return this.#generation;
  }

  get serviceContent(): ServiceContent {
    if (!this.#serviceContent) throw new Error('VsphereSession used before connect()');
    return this.#serviceContent;
  }

  /** `Cookie` header value for other requests to the same server (datastore HTTP). Changes after a re-login. */
  cookieHeader(): string {
    if (!this.#cookie) throw new VsphereError('VSPHERE_NOT_AUTHENTICATED', 'no session cookie (not logged in)', { server: this.server });
    return this.#cookie;
  }

  /** SHA-1/SHA-256 fingerprints of the server certificate (checked by this session's policy). */
  serverFingerprints(): Promise<SeenFingerprints> {
    return peerFingerprints(this.sdkUrl.hostname.replace(/^\[|\]$/g, ''), Number(this.sdkUrl.port || 443), this.tlsPolicy);
  }

  target(extra: Omit<Target, 'server'> = {}): Target {
    return { server: this.server, ...extra };
  }

  /** Invokes `method` on `thisRef`; resolves to the `<methodResponse>` element. */
  async call(method: string, thisRef: MoRef, params: Readonly<Record<string, SoapValue>> = {}, options: CallOptions = {}): Promise<XmlElement> {
    const generation = this.#generation;
    if (options.scope && options.scope.generation !== generation) {
      // Objects of the scope's login died with it; never send their morefs to the new login.
      throw new VsphereError('VSPHERE_NOT_AUTHENTICATED', `${method}: the session was renewed while objects of the previous login were in use`, this.target(options.target), {
        method,
        sessionRenewed: true,
      });
    }
    try {
      return await this.#callWithRetries(method, thisRef, params, options);
    } catch (error) {
      const expired = error instanceof VsphereFault && error.faultType === 'NotAuthenticated' && this.#loggedIn && method !== 'Logout' && method !== 'Login';
      if (!expired) throw error;
      await this.#renew(generation, `${error.method} answered NotAuthenticated`);
      if (options.scope) throw error; // withSessionObjects starts its work over in the new login
      return await this.#callWithRetries(method, thisRef, params, options);
    }
  }

  /**
   * Runs `work`, which makes and uses objects that live only as long as one login (see the
   * file header), passing the scope its calls must carry. If the session is renewed while
   * `work` runs, `work` failed or used dead objects: it runs again from the start (bounded).
   * `work` must therefore only read and make session objects. Inside an `outer` scope the
   * outer work is the one that starts over.
   */
  async withSessionObjects<T>(work: (scope: SessionScope) => Promise<T>, outer?: SessionScope): Promise<T> {
    if (outer) return work(outer);
    for (let restarts = 0; ; restarts++) {
      const scope: SessionScope = { generation: this.#generation };
      try {
        return await work(scope);
      } catch (error) {
        if (this.#generation === scope.generation || restarts >= maxScopeRestarts) throw error;
      }
    }
  }

  async #callWithRetries(method: string, thisRef: MoRef, params: Readonly<Record<string, SoapValue>>, options: CallOptions): Promise<XmlElement> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#callOnce(method, thisRef, params, options);
      } catch (error) {
        const transient = error instanceof VcbtError && error.context.transient === true;
        if (!options.idempotent || !transient || attempt >= this.#readRetries) throw error;
        await sleep(retryBaseDelayMs * 2 ** attempt, options.signal);
      }
    }
  }

  async #callOnce(method: string, thisRef: MoRef, params: Readonly<Record<string, SoapValue>>, options: CallOptions): Promise<XmlElement> {
    const target = this.target(options.target);
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    const headers: Record<string, string> = { SOAPAction: `"urn:vim25/${this.#serviceContent?.about.apiVersion ?? '6.7'}"` };
    // Login goes without the old cookie, so it opens a new session; the old cookie stays
    // valid for cookieHeader() callers until the new one arrives.
    if (this.#cookie && method !== 'Login') headers.Cookie = this.#cookie;
    let reply: HttpReply;
    try {
      reply = await postXml(this.sdkUrl, buildEnvelope(method, thisRef, params), {
        agent: this.agent,
        headers,
        signal,
        maxResponseBytes: this.#maxResponseBytes,
        inactivityTimeoutMs: Math.min(this.#ioTimeoutMs, timeoutMs),
      });
    } catch (error) {
      throw this.#networkError(error, method, target, options.signal, timeout, timeoutMs);
    }
    this.#rememberCookie(reply.setCookies);
    if (reply.status !== 200 && reply.status !== 500) {
      throw new VsphereError('VSPHERE_HTTP', `${method}: HTTP ${reply.status} ${reply.body.slice(0, 200).trim()}`, target, {
        status: reply.status,
        transient: reply.status === 502 || reply.status === 503 || reply.status === 504,
      });
    }
    let parsed;
    try {
      parsed = parseResponse(reply.body);
    } catch (error) {
      if (!(error instanceof VcbtError)) throw error;
      throw new VsphereError('VSPHERE_BAD_RESPONSE', `${method}: HTTP ${reply.status} with an unreadable body: ${error.message}`, target, { status: reply.status }, { cause: error });
    }
    if (parsed.kind === 'fault') throw new VsphereFault(parsed.fault, method, target);
    // A property read of an ended session answers HTTP 200 with NotAuthenticated per object.
    const ended = notAuthenticatedInMissingSet(parsed.response);
    if (ended) throw new VsphereFault(ended, method, target);
    return parsed.response;
  }

  #networkError(error: unknown, method: string, target: Target, callerSignal: AbortSignal | undefined, timeout: AbortSignal, timeoutMs: number): Error {
    if (error instanceof VcbtError) return error; // TLS check failures
    if (error instanceof ResponseTooLargeError) {
      return new VsphereError('VSPHERE_RESPONSE_TOO_LARGE', `${method}: ${error.message}, more than the ${error.maxResponseBytes}-byte cap on a SOAP response; the answer was dropped`, target, {
        method,
        maxResponseBytes: error.maxResponseBytes,
        receivedBytes: error.receivedBytes,
      });
    }
    if (error instanceof ResponseStalledError) {
      return new VsphereError('VSPHERE_TIMEOUT', `${method}: ${error.message}`, target, { method, ioTimeoutMs: error.inactivityTimeoutMs, transient: true });
    }
    if (callerSignal?.aborted) return new VsphereError('VSPHERE_CANCELLED', `${method} cancelled`, target, {}, { cause: callerSignal.reason });
    if (timeout.aborted) return new VsphereError('VSPHERE_TIMEOUT', `${method}: no answer within ${timeoutMs} ms`, target, { timeoutMs, transient: true });
    const code = (error as NodeJS.ErrnoException).code ?? 'UNKNOWN';
    const message = error instanceof Error ? error.message : String(error);
    return new VsphereError('VSPHERE_UNREACHABLE', `${method}: cannot talk to the server: ${message}`, target, { errno: code, transient: transientCodes.has(code) }, { cause: error });
  }

  #rememberCookie(setCookies: string[]): void {
    for (const header of setCookies) {
      const pair = header.split(';')[0].trim();
      if (pair.startsWith(`${SESSION_COOKIE}=`)) {
        this.#cookie = pair;
        this.#cookiesReceived++;
      }
    }
  }

  /** Reads the ServiceContent and logs in. Called once by connect(). */
  async open(signal?: AbortSignal, keepAliveIntervalMs = defaultKeepAliveMs): Promise<void> {
    const response = await this.call('RetrieveServiceContent', serviceInstance, {}, { idempotent: true, signal });
    this.#serviceContent = decodeServiceContent(requireChild(response, 'returnval'));
    await this.#login(signal);
    if (keepAliveIntervalMs > 0) {
      this.#keepAlive = setInterval(() => {
        this.call('CurrentTime', serviceInstance, {}, { idempotent: true }).then(
          () => (this.keepAliveError = undefined),
          (error: unknown) => (this.keepAliveError = error instanceof Error ? error : new Error(String(error))),
        );
      }, keepAliveIntervalMs);
      this.#keepAlive.unref(); // never keeps the process alive on its own
    }
  }

  async #login(signal?: AbortSignal): Promise<void> {
    const cookiesBefore = this.#cookiesReceived;
    await this.call('Login', this.serviceContent.sessionManager, { userName: this.#username, password: this.#password }, { signal });
    if (this.#cookiesReceived === cookiesBefore) throw new VsphereError('VSPHERE_BAD_RESPONSE', `Login succeeded but the server set no ${SESSION_COOKIE} cookie`, this.target());
    this.#loggedIn = true;
    this.#generation++;
  }

  /**
   * Logs in again now: when a datastore HTTP request with `cookieHeader()` got 401 because
   * the session expired, or to renew a cookie before it can expire. Concurrent callers share
   * one Login.
   */
  relogin(cause = 'datastore HTTP asked for a new session cookie'): Promise<void> {
    return this.#renew(this.#generation, cause);
  }

  /** Logs in again unless a re-login already replaced the login `failedGeneration` (then there is nothing to do). */
  #renew(failedGeneration: number, cause: string): Promise<void> {
    if (this.#generation !== failedGeneration) return this.#relogin ?? Promise.resolve();
    // Concurrent calls that all hit the expiry share one Login.
    this.#relogin ??= this.#login().then(
      () => {
        this.reloginCount++;
        this.#relogin = undefined;
        this.#onRelogin?.(cause);
      },
      (error: unknown) => {
        this.#relogin = undefined;
        throw error;
      },
    );
    return this.#relogin;
  }

  /** Ends the session on the server (if still alive) and closes the connections. */
  async logout(): Promise<void> {
    clearInterval(this.#keepAlive);
    this.#keepAlive = undefined;
    const wasLoggedIn = this.#loggedIn;
    this.#loggedIn = false;
    try {
      if (wasLoggedIn) await this.call('Logout', this.serviceContent.sessionManager, {}, { timeoutMs: 10_000 });
    } catch (error) {
      // An already expired session is logged out; anything else is worth reporting.
      if (!(error instanceof VsphereFault && error.faultType === 'NotAuthenticated')) throw error;
    } finally {
      this.#cookie = undefined;
      this.agent.destroy();
    }
  }
}

function decodeServiceContent(content: XmlElement): ServiceContent {
  const about = requireChild(content, 'about');
  const searchIndex = optionalMoRef(content, 'searchIndex');
  const viewManager = optionalMoRef(content, 'viewManager');
  if (!searchIndex || !viewManager) throw new SoapDecodeError('ServiceContent lacks searchIndex or viewManager');
  return {
    rootFolder: moRefOf(content, 'rootFolder'),
    propertyCollector: moRefOf(content, 'propertyCollector'),
    viewManager,
    sessionManager: moRefOf(content, 'sessionManager'),
    searchIndex,
    ovfManager: optionalMoRef(content, 'ovfManager'),
    about: {
      apiVersion: (optionalText(about, 'apiVersion') ?? '6.7').trim(),
      fullName: (optionalText(about, 'fullName') ?? '').trim(),
      apiType: (child(about, 'apiType')?.text ?? '').trim(),
    },
  };
}


/** Connects, checks TLS, logs in. The caller must `logout()` (also on errors). */
export async function connect(options: ConnectOptions): Promise<VsphereSession> {
  const session = new VsphereSession(options);
  try {
    await session.open(options.signal, options.keepAliveIntervalMs);
  } catch (error) {
    session.agent.destroy();
    throw error;
  }
  return session;
}
