// Datastore HTTP: reading a VM disk at a snapshot without VDDK, through the `/folder` file
// access that ESXi and vCenter serve (`GET /folder/<path>?dcPath=<datacenter>&dsName=<ds>`
// with `Range: bytes=a-b`), authenticated by the vSphere session cookie over the session's
// TLS-checked keep-alive agent.
//
// The snapshot's disk descriptor is fetched first. A flat disk (no earlier snapshot) is read
// straight from its flat extent files; a delta chain (vmfsSparse/SEsparse deltas of earlier
// snapshots) through datastore-chain.ts, which reads only the metadata and grains it needs
// with the same ranged GETs (DatastoreFiles).
//
// - Resume: a response that ends early - the connection is cut, or no byte arrives for
//   `ioTimeoutMs` (a stall, before or after the headers) - is resumed at the exact next byte.
//   Every early end counts as one attempt of that range (bounded by `maxAttempts`, with
//   backoff), progress or not, so a peer that trickles a little and stalls cannot keep a read
//   (and the VM's snapshot) open for long. Then the read fails: HTTP_STALLED when the last
//   attempt stalled, HTTP_RESUME_EXHAUSTED when it was cut; both name the file and offset.
// - A slow response that keeps delivering bytes never times out: the deadline is on
//   inactivity, not on the whole response.
// - Session cookie: re-read for every request (a re-login changes it). A 401 logs in again,
//   unless the cookie already changed since the request was sent. And since vCenter expires
//   the datastore session cookie after 30 idle minutes, a cookie in use for `cookieRenewMs`
//   (default 25 minutes, as virt-v2v renews) is renewed before the next request.
import type https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { request } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { VcbtError } from '../errors.ts';
import type { DiskReader } from './disk.ts';
import { checkDiskRange } from './range.ts';
import { flatExtentTypes, parseDatastorePath, parseDescriptor, parseVmdkDescriptor, type FlatExtent } from '../vmdk/descriptor.ts';
import { descriptorMaxBytes } from '../vmdk/chain.ts';
import { openDatastoreChain, type DatastoreChainDisk } from './datastore-chain.ts';

/**
 * Codes: HTTP_STATUS (unexpected status or range), HTTP_STALLED (no data for ioTimeoutMs, too
 * often), HTTP_RESUME_EXHAUSTED (cut too often), HTTP_SIZE (descriptor vs capacity).
 */
export class DatastoreHttpError extends VcbtError {}

/** What the reader needs from a vSphere session (kept structural so transport does not import vsphere). */
export interface DatastoreAccess {
  /** `https://host:port` of the server that owns the session. */
  origin: URL;
  agent: https.Agent;
  cookieHeader(): string;
  /** Called after a 401, and to renew a cookie before it can expire: make the session valid again (re-login). */
  reauthenticate(): Promise<void>;
}

export interface DatastoreDiskOptions {
  access: DatastoreAccess;
  datacenter: string;
  /** The snapshot's disk backing file: `[ds] vm/vm.vmdk`. */
  file: string;
  /** Capacity the vSphere API reports for this disk; the descriptor must agree. */
  capacityBytes: number;
  /** Attempts per range: every cut or stalled response counts, with or without progress. */
  maxAttempts?: number;
  /** Longest wait for the next byte (headers or body) of a response; default 60 s. */
  ioTimeoutMs?: number;
  /** Age at which the session cookie is renewed before the next request; default 25 minutes. */
  cookieRenewMs?: number;
  /** Label for messages (VM name and disk key). */
  label?: string;
}

const defaultMaxAttempts = 6;
const defaultIoTimeoutMs = 60_000;
/** vCenter expires the datastore session cookie after 30 idle minutes; renew with margin (virt-v2v: 25). */
const defaultCookieRenewMs = 25 * 60_000;
const retryDelayMs = 200;
const transientCodes = new Set(['ECONNRESET', 'EPIPE', 'ECONNREFUSED', 'ETIMEDOUT', 'ERR_STREAM_PREMATURE_CLOSE', 'HTTP_CUT', 'HTTP_STALLED']);

/** One file on the datastore. */
export interface RemoteFile {
  url: URL;
  /** `[datastore] dir/file-flat.vmdk`, for messages. */
  file: string;
}

interface Located extends RemoteFile {
  extent: FlatExtent;
  diskOffsetBytes: number;
}

/** How one GET ended: all bytes, or `bytes` of them and the reason it ended early. */
interface GetOutcome {
  bytes: number;
  early?: DatastoreHttpError;
}

/** Flat extents read straight from their files. */
export class DatastoreHttpDisk implements DiskReader {
  readonly sizeBytes: number;
  readonly files: DatastoreFiles;
  readonly #extents: Located[];
  readonly #name: string;

  constructor(options: DatastoreDiskOptions, extents: Located[], files = new DatastoreFiles(options)) {
    this.files = files;
    this.#extents = extents;
    this.sizeBytes = options.capacityBytes;
    this.#name = files.name;
  }

  /** Requests re-issued after a response ended early with progress. */
  get resumedRequests(): number {
    return this.files.resumedRequests;
  }

  /** Cookie renewals done because the cookie reached cookieRenewMs. */
  get cookieRenewals(): number {
    return this.files.cookieRenewals;
  }

  async read(offsetBytes: number, target: Uint8Array, signal?: AbortSignal): Promise<void> {
    checkDiskRange(this.#name, this.sizeBytes, 'read', offsetBytes, target.length);
    let done = 0;
    for (const located of this.#extents) {
      if (done === target.length) break;
      const at = offsetBytes + done;
      const start = located.diskOffsetBytes;
      const end = start + located.extent.sizeBytes;
      if (at >= end || at < start) continue;
      const length = Math.min(end - at, target.length - done);
      const fileOffset = located.extent.fileOffsetBytes + (at - start);
      await this.files.readRange(located, fileOffset, target.subarray(done, done + length), signal);
      done += length;
    }
  }

  async close(): Promise<void> {
    // The agent belongs to the vSphere session; nothing of ours to release.
  }
}

/**
 * Ranged reads of any file of the datastore through one vSphere session: the resume, stall
 * and cookie logic every http reader shares (flat extents and delta chains).
 */
export class DatastoreFiles {
  readonly name: string;
  readonly #options: DatastoreDiskOptions;
  readonly #ioTimeoutMs: number;
  readonly #cookieRenewMs: number;
  #cookieSeen: string | undefined;
  #cookieSinceMs = 0;
  #renewing: Promise<void> | undefined;
  readonly #name: string;
  /** Requests re-issued after a response ended early with progress (for tests and the summary). */
  resumedRequests = 0;
  /** Cookie renewals done because the cookie reached cookieRenewMs (for tests). */
  cookieRenewals = 0;

  constructor(options: DatastoreDiskOptions) {
    this.#options = options;
    this.#ioTimeoutMs = options.ioTimeoutMs ?? defaultIoTimeoutMs;
    this.#cookieRenewMs = options.cookieRenewMs ?? defaultCookieRenewMs;
    this.name = options.label ? `${options.label} (${options.file})` : options.file;
    this.#name = this.name;
  }

  /** The URL and message name of a file of the datastore, by its path inside it. */
  remote(datastore: string, path: string): RemoteFile {
    return { url: folderUrl(this.#options.access.origin, this.#options.datacenter, datastore, path), file: `[${datastore}] ${path}` };
  }

  /** A small file (a descriptor) whole, or its first maxBytes; with its total size when the server tells it. */
  async getSmall(remote: RemoteFile, maxBytes: number, signal?: AbortSignal): Promise<SmallFile> {
    const maxAttempts = this.#options.maxAttempts ?? defaultMaxAttempts;
    let reply: SmallFile | undefined;
    let reauthenticated = false;
    for (let attempt = 1; !reply; attempt++) {
      try {
        reply = await getSmallFile(this.#options.access, remote.url, remote.file, maxBytes, this.#ioTimeoutMs, signal);
      } catch (error) {
        const code = (error as { code?: string }).code ?? '';
        if (!transientCodes.has(code) || signal?.aborted) throw error;
        if (attempt >= maxAttempts) {
          if (error instanceof DatastoreHttpError) throw new DatastoreHttpError(error.code, `${error.message}, ${attempt} times in a row`, { ...error.context, attempts: attempt }, { cause: error });
          throw new DatastoreHttpError('HTTP_RESUME_EXHAUSTED', `GET ${remote.file} failed ${attempt} times (last: ${(error as Error).message})`, { file: remote.file, offsetBytes: 0, attempts: attempt }, { cause: error });
        }
        await sleep(retryDelayMs * attempt, undefined, { signal });
        continue;
      }
      if (reply.status === 401 && !reauthenticated) {
        reauthenticated = true;
        reply = undefined;
        await this.#options.access.reauthenticate();
      }
    }
    if (reply.status !== 200 && reply.status !== 206) {
      throw new DatastoreHttpError('HTTP_STATUS', `GET ${remote.file} (datacenter ${this.#options.datacenter}) answered HTTP ${reply.status}`, { file: remote.file, status: reply.status });
    }
    return reply;
  }

  /**
   * PUTs a small file whole (an NVRAM), replacing what is there; a 401 logs in again once.
   * Fails with HTTP_STATUS on any other answer than 200/201/204.
   */
  async putSmall(remote: RemoteFile, body: Buffer, signal?: AbortSignal): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const status = await putFile(this.#options.access, remote.url, body, this.#ioTimeoutMs, remote.file, signal);
      if (status === 401 && attempt === 1) {
        await this.#options.access.reauthenticate();
        continue;
      }
      if (status !== 200 && status !== 201 && status !== 204) {
        throw new DatastoreHttpError('HTTP_STATUS', `PUT ${remote.file} (datacenter ${this.#options.datacenter}) answered HTTP ${status}`, { file: remote.file, status });
      }
      return;
    }
  }

  /** Renews the cookie once it has been in use for cookieRenewMs (concurrent reads share one renewal). */
  async #renewCookieIfDue(): Promise<void> {
    if (this.#renewing) return this.#renewing;
    const cookie = this.#options.access.cookieHeader();
    const nowMs = Date.now();
    if (cookie !== this.#cookieSeen) {
      this.#cookieSeen = cookie;
      this.#cookieSinceMs = nowMs;
      return;
    }
    if (nowMs - this.#cookieSinceMs < this.#cookieRenewMs) return;
    this.#renewing = (async () => {
      try {
        await this.#options.access.reauthenticate();
        this.cookieRenewals++;
      } finally {
        this.#cookieSeen = this.#options.access.cookieHeader();
        this.#cookieSinceMs = Date.now();
        this.#renewing = undefined;
      }
    })();
    return this.#renewing;
  }

  /** GET one byte range into target, resuming after early ends at the first byte not yet received. */
  async readRange(located: RemoteFile, fileOffsetBytes: number, target: Uint8Array, signal?: AbortSignal): Promise<void> {
    const maxAttempts = this.#options.maxAttempts ?? defaultMaxAttempts;
    let received = 0;
    let reauthenticated = false;
    let earlyEnds = 0;
    while (received < target.length) {
      signal?.throwIfAborted();
      await this.#renewCookieIfDue();
      const cookie = this.#options.access.cookieHeader();
      let outcome: GetOutcome;
      try {
        outcome = await this.#get(located, cookie, fileOffsetBytes + received, target.subarray(received), signal);
      } catch (error) {
        if (error instanceof DatastoreHttpError && error.code === 'HTTP_UNAUTHORIZED') {
          // A re-login since this request was sent (by another read or a SOAP call) already
          // gave a new cookie: just retry with it. Otherwise log in again, once per range.
          if (this.#options.access.cookieHeader() !== cookie && earlyEnds++ < maxAttempts) continue;
          if (!reauthenticated) {
            reauthenticated = true;
            await this.#options.access.reauthenticate();
            continue;
          }
        }
        const code = (error as { code?: string }).code ?? '';
        if (!transientCodes.has(code) || signal?.aborted) throw error;
        outcome = { bytes: 0, early: error as DatastoreHttpError };
      }
      received += outcome.bytes;
      if (!outcome.early) continue;
      earlyEnds++;
      if (earlyEnds >= maxAttempts) throw this.#givingUp(located, fileOffsetBytes + received, fileOffsetBytes + target.length - 1, earlyEnds, outcome.early);
      await sleep(retryDelayMs * earlyEnds, undefined, { signal });
    }
  }

  #givingUp(located: RemoteFile, offsetBytes: number, lastByte: number, attempts: number, last: Error): DatastoreHttpError {
    const context = { file: located.file, url: located.url.pathname, offsetBytes, attempts };
    if ((last as { code?: string }).code === 'HTTP_STALLED') {
      return new DatastoreHttpError('HTTP_STALLED', `${this.#name}: reading ${located.file} at offset ${offsetBytes}: no data for ${this.#ioTimeoutMs} ms, ${attempts} times in a row; the server stalls`, { ...context, ioTimeoutMs: this.#ioTimeoutMs }, { cause: last });
    }
    return new DatastoreHttpError('HTTP_RESUME_EXHAUSTED', `${this.#name}: reading bytes ${offsetBytes}-${lastByte} of ${located.file} failed ${attempts} times (last: ${last.message})`, context, { cause: last });
  }

  /**
   * One ranged GET. Resolves with the bytes that arrived: all of them, or fewer with the reason
   * when the response ended early (cut, or nothing for ioTimeoutMs); the caller asks for the
   * rest. Rejects on anything that is not an early end (status, range, network error before
   * any byte, cancellation).
   */
  #get(located: RemoteFile, cookie: string, fileOffsetBytes: number, target: Uint8Array, signal?: AbortSignal): Promise<GetOutcome> {
    const { url, file } = located;
    const last = fileOffsetBytes + target.length - 1;
    return new Promise<GetOutcome>((resolve, reject) => {
      let received = 0;
      let settled = false;
      let idleTimer: NodeJS.Timeout | undefined;
      const settle = (outcome: GetOutcome | Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(idleTimer);
        if (outcome instanceof Error) {
          req.destroy();
          reject(outcome);
          return;
        }
        if (outcome.early) {
          req.destroy();
          if (outcome.bytes > 0) this.resumedRequests++;
        }
        resolve(outcome);
      };
      const early = (code: 'HTTP_CUT' | 'HTTP_STALLED', message: string) =>
        settle({ bytes: received, early: new DatastoreHttpError(code, `${this.#name}: ${file} at offset ${fileOffsetBytes + received}: ${message}`, { file, url: url.pathname, offsetBytes: fileOffsetBytes + received }) });
      const touch = () => {
        clearTimeout(idleTimer);
        idleTimer = setTimeout(() => early('HTTP_STALLED', `no data for ${this.#ioTimeoutMs} ms`), this.#ioTimeoutMs);
      };
      const req = request(url, {
        agent: this.#options.access.agent,
        headers: { Cookie: cookie, Range: `bytes=${fileOffsetBytes}-${last}` },
        signal,
      });
      req.on('error', (error: NodeJS.ErrnoException) => {
        if (signal?.aborted) settle(signal.reason as Error);
        else if (received > 0) early('HTTP_CUT', error.message);
        else settle(error);
      });
      req.on('response', (res: IncomingMessage) => {
        touch();
        if (res.statusCode === 401) {
          res.resume();
          settle(new DatastoreHttpError('HTTP_UNAUTHORIZED', `${this.#name}: server refused the session cookie for ${file}`, { file, url: url.pathname }));
          return;
        }
        if (res.statusCode !== 206 && !(res.statusCode === 200 && fileOffsetBytes === 0 && Number(res.headers['content-length']) === target.length)) {
          res.resume();
          settle(new DatastoreHttpError('HTTP_STATUS', `${this.#name}: GET ${file} bytes ${fileOffsetBytes}-${last} answered HTTP ${res.statusCode}`, { file, url: url.pathname, status: res.statusCode }));
          return;
        }
        const contentRange = res.headers['content-range'];
        if (res.statusCode === 206 && (!contentRange || !contentRange.startsWith(`bytes ${fileOffsetBytes}-`))) {
          res.resume();
          settle(new DatastoreHttpError('HTTP_STATUS', `${this.#name}: GET ${file} asked bytes ${fileOffsetBytes}-${last}, server sent range "${contentRange ?? 'none'}"`, { file, url: url.pathname }));
          return;
        }
        res.on('data', (chunk: Buffer) => {
          if (settled) return;
          const room = target.length - received;
          if (chunk.length > room) {
            settle(new DatastoreHttpError('HTTP_STATUS', `${this.#name}: GET ${file} sent more than the ${target.length} bytes asked`, { file, url: url.pathname }));
            return;
          }
          target.set(chunk, received);
          received += chunk.length;
          touch();
        });
        res.on('end', () => (received === target.length ? settle({ bytes: received }) : early('HTTP_CUT', `connection ended after ${received} of ${target.length} bytes`)));
        res.on('error', (error) => early('HTTP_CUT', error.message));
      });
      touch();
      req.end();
    });
  }
}

function folderUrl(origin: URL, datacenter: string, datastore: string, path: string): URL {
  const url = new URL(`/folder/${path.split('/').map(encodeURIComponent).join('/')}`, origin);
  url.searchParams.set('dcPath', datacenter);
  url.searchParams.set('dsName', datastore);
  return url;
}

/**
 * GET a whole small file (the descriptor), keeping at most `maxBytes` (a server that ignores
 * the Range header cannot make it buffer more) and failing with HTTP_STALLED when nothing
 * arrives for `ioTimeoutMs`.
 */
export interface SmallFile {
  status: number;
  body: Buffer;
  /** The file's size from Content-Range (206), or Content-Length of a whole 200 answer. */
  totalBytes?: number;
}

function totalOf(res: IncomingMessage): number | undefined {
  const range = /\/(\d+)\s*$/.exec(res.headers['content-range'] ?? '');
  if (range) return Number(range[1]);
  return res.statusCode === 200 && res.headers['content-length'] !== undefined ? Number(res.headers['content-length']) : undefined;
}

function getSmallFile(access: DatastoreAccess, url: URL, file: string, maxBytes: number, ioTimeoutMs: number, signal?: AbortSignal): Promise<SmallFile> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let idleTimer: NodeJS.Timeout | undefined;
    const settle = (error: Error | undefined, result?: SmallFile) => {
      if (settled) return;
      settled = true;
      clearTimeout(idleTimer);
      if (error) {
        req.destroy();
        reject(error);
      } else {
        resolve(result!);
      }
    };
    const touch = () => {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => settle(new DatastoreHttpError('HTTP_STALLED', `GET descriptor ${file}: no data for ${ioTimeoutMs} ms`, { file, url: url.pathname, offsetBytes: 0, ioTimeoutMs })), ioTimeoutMs);
    };
    const req = request(url, { agent: access.agent, headers: { Cookie: access.cookieHeader(), Range: `bytes=0-${maxBytes - 1}` }, signal });
    req.on('error', (error) => settle(signal?.aborted ? (signal.reason as Error) : error));
    req.on('response', (res) => {
      touch();
      const parts: Buffer[] = [];
      let bytes = 0;
      res.on('data', (chunk: Buffer) => {
        touch();
        const keep = chunk.subarray(0, Math.max(0, maxBytes - bytes));
        bytes += keep.length;
        if (keep.length > 0) parts.push(keep);
        // More than a descriptor can be: the first maxBytes are enough to parse or refuse.
        if (bytes >= maxBytes) {
          settle(undefined, { status: res.statusCode ?? 0, body: Buffer.concat(parts), totalBytes: totalOf(res) });
          req.destroy();
        }
      });
      res.on('end', () => settle(undefined, { status: res.statusCode ?? 0, body: Buffer.concat(parts), totalBytes: totalOf(res) }));
      res.on('error', (error) => settle(error));
    });
    touch();
    req.end();
  });
}

function putFile(access: DatastoreAccess, url: URL, body: Buffer, ioTimeoutMs: number, file: string, signal?: AbortSignal): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'PUT', agent: access.agent, headers: { Cookie: access.cookieHeader(), 'Content-Type': 'application/octet-stream', 'Content-Length': String(body.length) }, signal });
    const timer = setTimeout(() => req.destroy(new DatastoreHttpError('HTTP_STALLED', `PUT ${file}: no answer for ${ioTimeoutMs} ms`, { file, ioTimeoutMs })), ioTimeoutMs);
    req.on('error', (error) => {
      clearTimeout(timer);
      reject(signal?.aborted ? (signal.reason as Error) : error);
    });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => {
        clearTimeout(timer);
        resolve(res.statusCode ?? 0);
      });
    });
    req.end(body);
  });
}

/**
 * Opens the disk named by a snapshot's backing file for range reads: straight from the flat
 * extents of a disk without earlier snapshots, through the delta chain otherwise.
 */
export async function openDatastoreDisk(options: DatastoreDiskOptions, signal?: AbortSignal): Promise<DatastoreHttpDisk | DatastoreChainDisk> {
  const { datastore, path } = parseDatastorePath(options.file);
  const files = new DatastoreFiles(options);
  const reply = await files.getSmall(files.remote(datastore, path), descriptorMaxBytes, signal);
  const descriptor = parseDescriptor(reply.body.toString('latin1'), options.file);
  if (descriptor.capacityBytes !== options.capacityBytes) {
    throw new DatastoreHttpError('HTTP_SIZE', `${options.file}: descriptor extents total ${descriptor.capacityBytes} bytes but vSphere reports a capacity of ${options.capacityBytes}`, { file: options.file });
  }
  const flat = descriptor.parentFileNameHint === undefined && descriptor.extents.every((e) => flatExtentTypes.has(e.type));
  if (!flat) return openDatastoreChain(files, options, signal);
  const { extents } = parseVmdkDescriptor(reply.body.toString('latin1'), options.file);
  const directory = path.includes('/') ? path.slice(0, path.lastIndexOf('/') + 1) : '';
  let diskOffsetBytes = 0;
  const located = extents.map((extent) => {
    const entry = { extent, ...files.remote(datastore, directory + extent.file), diskOffsetBytes };
    diskOffsetBytes += extent.sizeBytes;
    return entry;
  });
  return new DatastoreHttpDisk(options, located, files);
}
