// Datastore HTTP: reading a VM disk at a snapshot without VDDK, through the `/folder` file
// access that ESXi and vCenter serve (`GET /folder/<path>?dcPath=<datacenter>&dsName=<ds>`
// with `Range: bytes=a-b`), authenticated by the vSphere session cookie over the session's
// TLS-checked keep-alive agent.
//
// The snapshot's disk descriptor is fetched first and must describe flat extents (see
// vmdk-descriptor.ts); reads then go straight to the flat extent files. A connection cut
// mid-body resumes at the exact next byte (bounded attempts with backoff); a 401 re-validates
// the session (the vSphere client re-logs in transparently) and retries.
import type https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { request } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { VcbtError } from '../errors.ts';
import type { DiskReader } from './disk.ts';
import { checkDiskRange } from './range.ts';
import { parseDatastorePath, parseVmdkDescriptor, type FlatExtent } from './vmdk-descriptor.ts';

/** Codes: HTTP_STATUS (unexpected status), HTTP_RESUME_EXHAUSTED (cut too often), HTTP_SIZE (descriptor vs capacity). */
export class DatastoreHttpError extends VcbtError {}

/** What the reader needs from a vSphere session (kept structural so transport does not import vsphere). */
export interface DatastoreAccess {
  /** `https://host:port` of the server that owns the session. */
  origin: URL;
  agent: https.Agent;
  cookieHeader(): string;
  /** Called after a 401: make the session valid again (re-login). */
  reauthenticate(): Promise<void>;
}

export interface DatastoreDiskOptions {
  access: DatastoreAccess;
  datacenter: string;
  /** The snapshot's disk backing file: `[ds] vm/vm.vmdk`. */
  file: string;
  /** Capacity the vSphere API reports for this disk; the descriptor must agree. */
  capacityBytes: number;
  maxInFlight?: number;
  /** Attempts per request after a cut connection or transient error. */
  maxAttempts?: number;
  /** Label for messages (VM name and disk key). */
  label?: string;
}

const defaultMaxInFlight = 4;
const defaultMaxAttempts = 6;
const retryDelayMs = 200;
const transientCodes = new Set(['ECONNRESET', 'EPIPE', 'ECONNREFUSED', 'ETIMEDOUT', 'ERR_STREAM_PREMATURE_CLOSE', 'HTTP_CUT']);

interface Located {
  extent: FlatExtent;
  url: URL;
  diskOffsetBytes: number;
}

export class DatastoreHttpDisk implements DiskReader {
  readonly sizeBytes: number;
  readonly preferredBlockBytes = 1024 * 1024;
  readonly maxInFlight: number;
  readonly #options: DatastoreDiskOptions;
  readonly #extents: Located[];
  readonly #name: string;
  /** Bytes re-requested after cuts (for tests and the summary). */
  resumedRequests = 0;

  constructor(options: DatastoreDiskOptions, extents: Located[]) {
    this.#options = options;
    this.#extents = extents;
    this.sizeBytes = options.capacityBytes;
    this.maxInFlight = options.maxInFlight ?? defaultMaxInFlight;
    this.#name = options.label ? `${options.label} (${options.file})` : options.file;
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
      await this.#readRange(located.url, fileOffset, target.subarray(done, done + length), signal);
      done += length;
    }
  }

  /** GET one byte range into target, resuming after cuts at the first byte not yet received. */
  async #readRange(url: URL, fileOffsetBytes: number, target: Uint8Array, signal?: AbortSignal): Promise<void> {
    const maxAttempts = this.#options.maxAttempts ?? defaultMaxAttempts;
    let received = 0;
    let reauthenticated = false;
    for (let attempt = 1; received < target.length; attempt++) {
      signal?.throwIfAborted();
      const cookie = this.#options.access.cookieHeader();
      try {
        received += await this.#get(url, cookie, fileOffsetBytes + received, target.subarray(received), signal);
      } catch (error) {
        if (error instanceof DatastoreHttpError && error.code === 'HTTP_UNAUTHORIZED') {
          // A re-login since this request was sent (by another read or a SOAP call) already
          // gave a new cookie: just retry with it. Otherwise log in again, once per range.
          if (this.#options.access.cookieHeader() !== cookie) continue;
          if (!reauthenticated) {
            reauthenticated = true;
            await this.#options.access.reauthenticate();
            continue;
          }
        }
        const code = (error as { code?: string }).code ?? '';
        if (!transientCodes.has(code) || signal?.aborted) throw error;
        if (attempt >= maxAttempts) {
          throw new DatastoreHttpError('HTTP_RESUME_EXHAUSTED', `${this.#name}: reading bytes ${fileOffsetBytes + received}-${fileOffsetBytes + target.length - 1} of ${url.pathname} failed ${attempt} times (last: ${(error as Error).message})`, { url: url.pathname, offsetBytes: fileOffsetBytes + received, attempts: attempt }, { cause: error });
        }
        await sleep(retryDelayMs * attempt, undefined, { signal });
      }
    }
  }

  /**
   * One ranged GET. Resolves with the number of bytes that arrived: all of them, or fewer when
   * the connection was cut after some progress (the caller asks for the rest). A cut before
   * any byte arrived rejects with HTTP_CUT, which the caller treats as transient.
   */
  #get(url: URL, cookie: string, fileOffsetBytes: number, target: Uint8Array, signal?: AbortSignal): Promise<number> {
    const last = fileOffsetBytes + target.length - 1;
    return new Promise<number>((resolve, reject) => {
      let received = 0;
      const req = request(url, {
        agent: this.#options.access.agent,
        headers: { Cookie: cookie, Range: `bytes=${fileOffsetBytes}-${last}` },
        signal,
      });
      const cut = (message: string) => {
        if (received > 0) {
          this.resumedRequests++;
          resolve(received);
        } else {
          reject(new DatastoreHttpError('HTTP_CUT', `${this.#name}: ${message}`, { url: url.pathname, offsetBytes: fileOffsetBytes }));
        }
      };
      req.on('error', (error: NodeJS.ErrnoException) => (signal?.aborted ? reject(signal.reason as Error) : received > 0 ? cut(error.message) : reject(error)));
      req.on('response', (res: IncomingMessage) => {
        if (res.statusCode === 401) {
          res.resume();
          reject(new DatastoreHttpError('HTTP_UNAUTHORIZED', `${this.#name}: server refused the session cookie for ${url.pathname}`, { url: url.pathname }));
          return;
        }
        if (res.statusCode !== 206 && !(res.statusCode === 200 && fileOffsetBytes === 0 && Number(res.headers['content-length']) === target.length)) {
          res.resume();
          reject(new DatastoreHttpError('HTTP_STATUS', `${this.#name}: GET ${url.pathname} bytes ${fileOffsetBytes}-${last} answered HTTP ${res.statusCode}`, { url: url.pathname, status: res.statusCode }));
          return;
        }
        const contentRange = res.headers['content-range'];
        if (res.statusCode === 206 && (!contentRange || !contentRange.startsWith(`bytes ${fileOffsetBytes}-`))) {
          res.resume();
          reject(new DatastoreHttpError('HTTP_STATUS', `${this.#name}: GET ${url.pathname} asked bytes ${fileOffsetBytes}-${last}, server sent range "${contentRange ?? 'none'}"`, { url: url.pathname }));
          return;
        }
        res.on('data', (chunk: Buffer) => {
          const room = target.length - received;
          if (chunk.length > room) {
            res.destroy();
            reject(new DatastoreHttpError('HTTP_STATUS', `${this.#name}: GET ${url.pathname} sent more than the ${target.length} bytes asked`, { url: url.pathname }));
            return;
          }
          target.set(chunk, received);
          received += chunk.length;
        });
        res.on('end', () => (received === target.length ? resolve(received) : cut(`connection ended after ${received} of ${target.length} bytes`)));
                res.on('error', (error) => cut(error.message));
      });
      req.end();
    });
  }

  async close(): Promise<void> {
    // The agent belongs to the vSphere session; nothing of ours to release.
  }
}

function folderUrl(origin: URL, datacenter: string, datastore: string, path: string): URL {
  const url = new URL(`/folder/${path.split('/').map(encodeURIComponent).join('/')}`, origin);
  url.searchParams.set('dcPath', datacenter);
  url.searchParams.set('dsName', datastore);
  return url;
}

/** GET a whole small file (the descriptor). */
function getSmallFile(access: DatastoreAccess, url: URL, maxBytes: number, signal?: AbortSignal): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: access.agent, headers: { Cookie: access.cookieHeader(), Range: `bytes=0-${maxBytes - 1}` }, signal });
    req.on('error', reject);
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (chunk: Buffer) => parts.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.end();
  });
}

const descriptorMaxBytes = 64 * 1024;

/** Opens the disk named by a snapshot's backing file for range reads. */
export async function openDatastoreDisk(options: DatastoreDiskOptions, signal?: AbortSignal): Promise<DatastoreHttpDisk> {
  const { datastore, path } = parseDatastorePath(options.file);
  const descriptorUrl = folderUrl(options.access.origin, options.datacenter, datastore, path);
  let reply = await getSmallFile(options.access, descriptorUrl, descriptorMaxBytes, signal);
  if (reply.status === 401) {
    await options.access.reauthenticate();
    reply = await getSmallFile(options.access, descriptorUrl, descriptorMaxBytes, signal);
  }
  if (reply.status !== 200 && reply.status !== 206) {
    throw new DatastoreHttpError('HTTP_STATUS', `GET descriptor ${options.file} (datacenter ${options.datacenter}) answered HTTP ${reply.status}`, { file: options.file, status: reply.status });
  }
  const descriptor = parseVmdkDescriptor(reply.body.toString('latin1'), options.file);
  if (descriptor.capacityBytes !== options.capacityBytes) {
    throw new DatastoreHttpError('HTTP_SIZE', `${options.file}: descriptor extents total ${descriptor.capacityBytes} bytes but vSphere reports a capacity of ${options.capacityBytes}`, { file: options.file });
  }
  const directory = path.includes('/') ? path.slice(0, path.lastIndexOf('/') + 1) : '';
  let diskOffsetBytes = 0;
  const located = descriptor.extents.map((extent) => {
    const entry = { extent, url: folderUrl(options.access.origin, options.datacenter, datastore, directory + extent.file), diskOffsetBytes };
    diskOffsetBytes += extent.sizeBytes;
    return entry;
  });
  return new DatastoreHttpDisk(options, located);
}
