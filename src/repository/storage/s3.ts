// The object-store storage: a repository in an S3 bucket (Ceph RGW, MinIO, AWS) under a key
// prefix, through the AWS SDK v3. docs/object-storage.md describes it; the layout is the local
// directory's (storage/local.ts), relative to the prefix, so `s3://b/p/` holds `p/config.json`,
// `p/chunks/ab/<64 hex>`, `p/points/<id>.json`, and so on.
//
// Vocabulary
// - Repository URL: `s3://BUCKET/PREFIX` (PREFIX optional). Endpoint, region, path-style, CA
//   file and credentials never come from argv: S3Settings (s3SettingsFrom) reads the
//   environment (VCBT_S3_* and the SDK's AWS_*), the service config's repository entry, and
//   the SDK's default chain (environment, shared credentials file, profile).
// - put = one PUT with Content-MD5 (the server refuses a body cut short: a torn object is never
//   stored); a PUT is atomic and durable when it answers. Staged blobs of a known name
//   (`stage(parts, ref)`) are uploaded straight to that name; publish and batches do nothing.
// - Streams (indexes) are spooled to a private temp file (0600) and PUT at finish.
// - Retries: every request is retried with exponential backoff (100 ms doubling, at most 5 s
//   apart, `retries` times) on 5xx, SlowDown/throttling, timeouts and connection errors; never
//   on 4xx answers, TLS or credential failures, which are named at once.
// - Clock: each answer's Date header gives the server's time; `open` refuses a local clock
//   more than maxClockSkewMs away from it (S3_CLOCK_SKEW), and `serverNowMs` is the server's
//   clock as seen from here (GC ages objects by the server's LastModified).
// - Object Lock: with `retentionDays`, every blob of a restore point (chunk, index, point,
//   committed) is written with COMPLIANCE retention until now + retentionDays. On a versioned
//   bucket delete removes every version of the key; a locked version refuses (AccessDenied),
//   which delete reports as S3_OBJECT_LOCKED naming the date it is locked until.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  DeleteObjectCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  GetObjectLockConfigurationCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  ListObjectVersionsCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  type ObjectLockMode,
} from '@aws-sdk/client-s3';
import { RepositoryError } from '../errors.ts';
import { LocalStorage } from './local.ts';
import { BlobNotFound, checkBlobRef, isValidBlobName, type BlobInfo, type BlobKind, type BlobRef, type BlobStream, type PublishBatch, type StagedBlob, type Storage, type StorageDescriptor } from './storage.ts';

/** Where and how to reach the bucket; plain data, so a worker thread can open the same storage. */
export interface S3Settings {
  bucket: string;
  /** '' or ends with '/'. */
  prefix: string;
  /** undefined: AWS's own endpoint for the region. */
  endpoint: string | undefined;
  region: string;
  pathStyle: boolean;
  /** PEM file of the CA(s) to trust instead of the system's. */
  caFile: string | undefined;
  /** Explicit credentials (a service config entry); undefined: the SDK's default chain. */
  credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string } | undefined;
  /** A profile of the shared credentials file. */
  profile: string | undefined;
  retries: number;
  requestTimeoutMs: number;
}

export const maxClockSkewMs = 120_000;
/** Blob kinds that belong to a restore point and get Object Lock retention. */
const retainedKinds: ReadonlySet<BlobKind> = new Set(['chunk', 'index', 'point', 'committed']);
const listPrefixes: Record<BlobKind, string> = {
  config: 'config.json',
  key: 'keys/',
  chunk: 'chunks/',
  index: 'indexes/',
  point: 'points/',
  lock: 'locks/',
  committed: 'committed/',
  check: 'checks/',
};
const layout = new LocalStorage('/');
const dayMs = 86_400_000;

export function isS3Url(location: string): boolean {
  return location.startsWith('s3://');
}

/** `s3://BUCKET/PREFIX` -> bucket and prefix ('' or ending in '/'). */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const match = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url);
  const prefix = (match?.[2] ?? '').replace(/\/+$/, '');
  if (!match || prefix.split('/').some((part) => part === '..' || part === '.') || /\/\/|[\\\0]/.test(prefix)) {
    throw new RepositoryError('REPO_INVALID_ARGUMENT', `"${url}" is not a repository URL of the form s3://BUCKET/PREFIX (bucket: 3-63 lower-case letters, digits, dots, dashes)`, { url });
  }
  return { bucket: match[1], prefix: prefix ? `${prefix}/` : '' };
}

/** The settings an s3:// URL is opened with; `entry` (service config) wins over the environment. */
export function s3SettingsFrom(url: string, env: NodeJS.ProcessEnv, entry: Partial<Omit<S3Settings, 'bucket' | 'prefix'>> = {}): S3Settings {
  const { bucket, prefix } = parseS3Url(url);
  const endpoint = entry.endpoint ?? env.VCBT_S3_ENDPOINT ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  const flag = env.VCBT_S3_PATH_STYLE;
  const number = (name: string, fallback: number) => {
    const value = env[name];
    if (value === undefined || value === '') return fallback;
    if (!/^\d+$/.test(value)) throw new RepositoryError('REPO_INVALID_ARGUMENT', `${name}=${value} is not a whole number`, { name, value });
    return Number(value);
  };
  const envCredentials = entry.credentials === undefined && env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY
    ? { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY, ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}) }
    : undefined;
  return {
    bucket,
    prefix,
    endpoint,
    region: entry.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1',
    // Non-AWS stores are usually reached by path (no wildcard DNS): the default with an endpoint.
    pathStyle: entry.pathStyle ?? (flag === undefined || flag === '' ? endpoint !== undefined : flag === '1' || flag === 'true'),
    caFile: entry.caFile ?? env.VCBT_S3_CA_FILE ?? env.AWS_CA_BUNDLE,
    credentials: entry.credentials ?? envCredentials,
    profile: entry.profile ?? env.AWS_PROFILE,
    retries: entry.retries ?? number('VCBT_S3_RETRIES', 8),
    requestTimeoutMs: entry.requestTimeoutMs ?? number('VCBT_S3_TIMEOUT_MS', 60_000),
  };
}

interface Failure {
  code: string;
  status: number | undefined;
  message: string;
}

function failureOf(error: unknown): Failure {
  const e = error as Error & { code?: string; $metadata?: { httpStatusCode?: number }; Code?: string };
  const status = error instanceof S3ServiceException ? error.$metadata.httpStatusCode : e?.$metadata?.httpStatusCode;
  const code = error instanceof S3ServiceException ? error.name : (e?.code ?? e?.Code ?? e?.name ?? 'Error');
  return { code, status, message: e?.message ?? String(error) };
}

const tlsCodes = new Set(['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_HAS_EXPIRED', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_UNTRUSTED']);
const credentialCodes = new Set(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'CredentialsProviderError', 'ExpiredToken', 'InvalidToken', 'TokenRefreshRequired']);
const transientCodes = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'RequestTimeout', 'RequestTimeTooSkewed_', 'InternalError', 'ServiceUnavailable', 'TimeoutError', 'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ERR_SOCKET_CONNECTION_TIMEOUT', 'RequestTimeoutException', 'NetworkingError']);

function isTransient(f: Failure): boolean {
  if (tlsCodes.has(f.code) || credentialCodes.has(f.code)) return false;
  if (f.status !== undefined && f.status >= 500) return true;
  if (f.status === 429 || f.status === 503) return true;
  if (transientCodes.has(f.code)) return true;
  // No answer at all (connection refused, reset, socket hang up): the SDK has no status.
  return f.status === undefined && /socket hang up|ECONNRE|EPIPE|ETIMEDOUT|timed? ?out|aborted/i.test(`${f.code} ${f.message}`);
}

export class S3Storage implements Storage {
  readonly location: string;
  readonly settings: S3Settings;
  readonly #client: S3Client;
  /** Object Lock retention for the blobs of restore points (days; 0 = none). */
  retentionDays = 0;
  /** The bucket keeps versions (Object Lock buckets always do): delete removes each version. */
  #versioned: boolean | undefined;
  /** Server time minus local time, from the last answer's Date header. */
  #clockOffsetMs = 0;
  /** Requests sent (bench: requests per GiB). */
  requests = 0;

  constructor(settings: S3Settings) {
    this.settings = settings;
    this.location = `s3://${settings.bucket}/${settings.prefix}`;
    const agent = settings.caFile ? new https.Agent({ keepAlive: true, ca: readCa(settings.caFile) }) : undefined;
    this.#client = new S3Client({
      region: settings.region,
      ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
      forcePathStyle: settings.pathStyle,
      ...(settings.credentials ? { credentials: settings.credentials } : {}),
      ...(settings.profile && !settings.credentials ? { profile: settings.profile } : {}),
      // Retries are ours (streams must be re-opened per attempt; see #send).
      maxAttempts: 1,
      // Content-MD5 on our PUTs; no trailing checksums older S3 servers do not know.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { requestTimeout: settings.requestTimeoutMs, connectionTimeout: Math.min(10_000, settings.requestTimeoutMs), ...(agent ? { httpsAgent: agent } : {}) },
    });
    this.#client.middlewareStack.add(
      (next) => async (args) => {
        const sentMs = Date.now();
        const result = await next(args);
        const date = (result.response as { headers?: Record<string, string> } | undefined)?.headers?.date;
        const serverMs = date ? Date.parse(date) : NaN;
        // Date has a 1 s resolution: the midpoint of the request against the middle of its second.
        if (Number.isFinite(serverMs)) this.#clockOffsetMs = serverMs + 500 - (sentMs + Date.now()) / 2;
        return result;
      },
      { step: 'deserialize', name: 'vcbtServerDate' },
    );
  }

  threadDescriptor(): StorageDescriptor {
    return { type: 's3', settings: this.settings, retentionDays: this.retentionDays };
  }

  /** The server's clock, as far as its last answer tells. */
  serverNowMs(): number {
    return Date.now() + this.#clockOffsetMs;
  }

  get clockOffsetMs(): number {
    return this.#clockOffsetMs;
  }

  keyOf(ref: BlobRef): string {
    checkBlobRef(ref);
    return this.settings.prefix + path.posix.relative('/', layout.pathOf(ref));
  }

  describe(ref: BlobRef): string {
    return `s3://${this.settings.bucket}/${this.keyOf(ref)}`;
  }

  #error(what: string, where: string, f: Failure, cause: unknown): RepositoryError {
    if (credentialCodes.has(f.code) || (f.status === 403 && f.code === 'AccessDenied' && what === 'open')) {
      return new RepositoryError('S3_CREDENTIALS', `${where}: the object store refused the credentials (${f.code}: ${f.message}); check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the shared credentials file or the repository entry`, { url: where, s3Code: f.code }, { cause });
    }
    if (f.code === 'NoSuchBucket') {
      return new RepositoryError('S3_BUCKET_MISSING', `bucket ${this.settings.bucket} does not exist at ${this.settings.endpoint ?? 'AWS'} (${where})`, { bucket: this.settings.bucket, url: where }, { cause });
    }
    if (tlsCodes.has(f.code) || /certificate/i.test(f.message)) {
      return new RepositoryError('S3_TLS', `${where}: the object store's TLS certificate is not trusted (${f.code}: ${f.message}); give its CA with VCBT_S3_CA_FILE`, { url: where, tlsCode: f.code }, { cause });
    }
    if (f.code === 'RequestTimeTooSkewed') {
      return new RepositoryError('S3_CLOCK_SKEW', `${where}: the object store refused the request's time (${f.message}); set this host's clock (NTP)`, { url: where }, { cause });
    }
    if (isTransient(f)) {
      return new RepositoryError('S3_UNAVAILABLE', `cannot ${what} ${where}: the object store did not answer after ${this.settings.retries} retries (${f.code}: ${f.message})`, { url: where, s3Code: f.code, status: f.status }, { cause });
    }
    return new RepositoryError('REPO_IO', `cannot ${what} ${where}: ${f.code}${f.status ? ` (HTTP ${f.status})` : ''}: ${f.message}`, { file: where, s3Code: f.code, status: f.status }, { cause });
  }

  /** One request with retries; `notFound` answers a 404 (NoSuchKey/NotFound). */
  async #send<T>(what: string, where: string, attempt: () => Promise<T>, notFound?: () => T): Promise<T> {
    for (let retry = 0; ; retry++) {
      try {
        this.requests++;
        return await attempt();
      } catch (error) {
        const f = failureOf(error);
        if (notFound && (f.status === 404 && f.code !== 'NoSuchBucket')) return notFound();
        if (isTransient(f) && retry < this.settings.retries) {
          await new Promise((r) => setTimeout(r, Math.min(5000, 100 * 2 ** retry) * (0.5 + Math.random() / 2)));
          continue;
        }
        throw this.#error(what, where, f, error);
      }
    }
  }

  /**
   * Checks at repository open, before any work: the bucket exists, the credentials work, the
   * clock agrees with the server's, and whether the bucket keeps versions / has Object Lock.
   */
  async open(): Promise<{ objectLock: boolean }> {
    const where = this.location;
    await this.#send('open', where, () => this.#client.send(new HeadBucketCommand({ Bucket: this.settings.bucket }))).catch((error: unknown) => {
      // HeadBucket answers a bare 404 / 403 without an S3 code.
      if (error instanceof RepositoryError && error.context.status === 404) throw this.#error('open', where, { code: 'NoSuchBucket', status: 404, message: 'not found' }, error);
      if (error instanceof RepositoryError && error.context.status === 403) throw this.#error('open', where, { code: 'AccessDenied', status: 403, message: 'access denied' }, error);
      throw error;
    });
    if (Math.abs(this.#clockOffsetMs) > maxClockSkewMs) {
      throw new RepositoryError('S3_CLOCK_SKEW', `this host's clock is ${Math.round(this.#clockOffsetMs / 1000)} s away from the object store's (limit ${maxClockSkewMs / 1000} s); locks and garbage collection need agreeing clocks: set this host's clock (NTP)`, { url: where, clockOffsetMs: Math.round(this.#clockOffsetMs) });
    }
    const versioning = await this.#send('open', where, () => this.#client.send(new GetBucketVersioningCommand({ Bucket: this.settings.bucket })));
    this.#versioned = versioning.Status === 'Enabled' || versioning.Status === 'Suspended';
    const lock = await this.#send('open', where, () => this.#client.send(new GetObjectLockConfigurationCommand({ Bucket: this.settings.bucket })), () => undefined).catch((error: unknown) => {
      if (error instanceof RepositoryError && /ObjectLockConfigurationNotFound/.test(String(error.context.s3Code))) return undefined;
      throw error;
    });
    return { objectLock: lock?.ObjectLockConfiguration?.ObjectLockEnabled === 'Enabled' };
  }

  async create(): Promise<void> {
    await this.open();
    const listed = await this.#send('list', this.location, () => this.#client.send(new ListObjectsV2Command({ Bucket: this.settings.bucket, Prefix: this.settings.prefix, MaxKeys: 2 })));
    const keys = (listed.Contents ?? []).map((o) => o.Key);
    if (keys.includes(this.keyOf({ kind: 'config', name: 'config' }))) throw new RepositoryError('REPO_EXISTS', `a repository already exists at ${this.location}`, { repoPath: this.location });
    if (keys.length > 0) throw new RepositoryError('REPO_EXISTS', `${this.location} is not empty; a repository needs an empty prefix`, { repoPath: this.location });
  }

  async #getObject(ref: BlobRef, range: string | undefined, maxBytes?: number): Promise<Buffer> {
    const key = this.keyOf(ref);
    const where = this.describe(ref);
    return this.#send('read', where, async () => {
      const answer = await this.#client.send(new GetObjectCommand({ Bucket: this.settings.bucket, Key: key, Range: range }));
      if (maxBytes !== undefined && (answer.ContentLength ?? 0) > maxBytes) {
        answer.Body?.transformToWebStream().cancel().catch(() => undefined);
        throw new RepositoryError('REPO_CORRUPT', `${where} is ${answer.ContentLength} bytes, more than the ${maxBytes} a ${ref.kind} blob can hold`, { file: where, sizeBytes: answer.ContentLength });
      }
      return Buffer.from((await answer.Body?.transformToByteArray()) ?? new Uint8Array());
    }, () => {
      throw new BlobNotFound(where);
    }).catch((error: unknown) => {
      // A range past the end: no bytes (same as a short read of a file).
      if (error instanceof RepositoryError && error.context.s3Code === 'InvalidRange') return Buffer.alloc(0);
      throw error;
    });
  }

  get(ref: BlobRef, options: { maxBytes?: number } = {}): Promise<Buffer> {
    return this.#getObject(ref, undefined, options.maxBytes);
  }

  async getRange(ref: BlobRef, offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    if (lengthBytes <= 0) return Buffer.alloc(0);
    return this.#getObject(ref, `bytes=${offsetBytes}-${offsetBytes + lengthBytes - 1}`);
  }

  async stat(ref: BlobRef): Promise<BlobInfo | undefined> {
    const key = this.keyOf(ref);
    const head = await this.#send('stat', this.describe(ref), () => this.#client.send(new HeadObjectCommand({ Bucket: this.settings.bucket, Key: key })), () => undefined);
    if (!head) return undefined;
    return { name: ref.name, sizeBytes: head.ContentLength ?? 0, modifiedMs: head.LastModified?.getTime() ?? 0 };
  }

  async statMany(refs: readonly BlobRef[]): Promise<Array<BlobInfo | undefined>> {
    const results: Array<BlobInfo | undefined> = new Array(refs.length);
    let next = 0;
    const worker = async () => {
      while (next < refs.length) {
        const i = next++;
        results[i] = await this.stat(refs[i]);
      }
    };
    await Promise.all(Array.from({ length: Math.min(32, refs.length) }, worker));
    return results;
  }

  async *listKeys(prefix: string): AsyncIterable<{ key: string; sizeBytes: number; modifiedMs: number }> {
    let token: string | undefined;
    do {
      const page = await this.#send('list', `s3://${this.settings.bucket}/${prefix}`, () => this.#client.send(new ListObjectsV2Command({ Bucket: this.settings.bucket, Prefix: prefix, ContinuationToken: token })));
      for (const o of page.Contents ?? []) if (o.Key) yield { key: o.Key, sizeBytes: o.Size ?? 0, modifiedMs: o.LastModified?.getTime() ?? 0 };
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  /** Every blob of a kind with its size and (server) time, in one listing. */
  async *listInfo(kind: BlobKind): AsyncIterable<BlobInfo> {
    for await (const object of this.listKeys(this.settings.prefix + listPrefixes[kind])) {
      const base = object.key.slice(object.key.lastIndexOf('/') + 1);
      const name = kind === 'config' ? 'config' : base.replace(/\.(json|idx)$/, '');
      if (!isValidBlobName(kind, name) || this.keyOf({ kind, name }) !== object.key) continue;
      yield { name, sizeBytes: object.sizeBytes, modifiedMs: object.modifiedMs };
    }
  }

  async *list(kind: BlobKind): AsyncIterable<string> {
    for await (const info of this.listInfo(kind)) yield info.name;
  }

  #retention(ref: BlobRef): { ObjectLockMode: ObjectLockMode; ObjectLockRetainUntilDate: Date } | Record<string, never> {
    if (this.retentionDays <= 0 || !retainedKinds.has(ref.kind)) return {};
    return { ObjectLockMode: 'COMPLIANCE', ObjectLockRetainUntilDate: new Date(this.serverNowMs() + this.retentionDays * dayMs) };
  }

  async put(ref: BlobRef, data: Uint8Array | string): Promise<void> {
    const body = typeof data === 'string' ? Buffer.from(data) : data;
    const key = this.keyOf(ref);
    const md5 = createHash('md5').update(body).digest('base64');
    await this.#send('write', this.describe(ref), () =>
      this.#client.send(new PutObjectCommand({ Bucket: this.settings.bucket, Key: key, Body: body, ContentLength: body.length, ContentMD5: md5, ...this.#retention(ref) })),
    );
  }

  /** Every version of `key` (versioned buckets), delete markers included. */
  async #versions(key: string, where: string): Promise<string[]> {
    const ids: string[] = [];
    let keyMarker: string | undefined;
    let versionMarker: string | undefined;
    do {
      const page = await this.#send('list versions of', where, () => this.#client.send(new ListObjectVersionsCommand({ Bucket: this.settings.bucket, Prefix: key, KeyMarker: keyMarker, VersionIdMarker: versionMarker })));
      for (const v of [...(page.Versions ?? []), ...(page.DeleteMarkers ?? [])]) if (v.Key === key && v.VersionId) ids.push(v.VersionId);
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      versionMarker = page.IsTruncated ? page.NextVersionIdMarker : undefined;
    } while (keyMarker);
    return ids;
  }

  async delete(ref: BlobRef): Promise<void> {
    const key = this.keyOf(ref);
    const where = this.describe(ref);
    if (this.#versioned === undefined) await this.open();
    if (!this.#versioned) {
      await this.#send('remove', where, () => this.#client.send(new DeleteObjectCommand({ Bucket: this.settings.bucket, Key: key })), () => undefined);
      return;
    }
    // A delete marker alone would hide the name and keep the bytes: remove every version.
    for (const versionId of await this.#versions(key, where)) {
      await this.#send('remove', where, () => this.#client.send(new DeleteObjectCommand({ Bucket: this.settings.bucket, Key: key, VersionId: versionId })), () => undefined).catch(async (error: unknown) => {
        if (error instanceof RepositoryError && error.context.status === 403) {
          const head = await this.#client.send(new HeadObjectCommand({ Bucket: this.settings.bucket, Key: key, VersionId: versionId })).catch(() => undefined);
          const until = head?.ObjectLockRetainUntilDate;
          throw new RepositoryError('S3_OBJECT_LOCKED', `${where} is under Object Lock${until ? ` until ${until.toISOString()}` : ''}; it cannot be deleted before then`, { file: where, retainUntil: until?.toISOString() ?? null }, { cause: error });
        }
        throw error;
      });
    }
  }

  /** When the newest version of a blob is locked until (undefined: not locked). */
  async lockedUntilMs(ref: BlobRef): Promise<number | undefined> {
    const key = this.keyOf(ref);
    const head = await this.#send('stat', this.describe(ref), () => this.#client.send(new HeadObjectCommand({ Bucket: this.settings.bucket, Key: key })), () => undefined);
    const until = head?.ObjectLockRetainUntilDate?.getTime();
    return until !== undefined && until > this.serverNowMs() ? until : undefined;
  }

  async stage(parts: readonly Uint8Array[], ref?: BlobRef): Promise<StagedBlob> {
    if (!ref) throw new RepositoryError('REPO_INVALID_ARGUMENT', 'an object store stages only blobs whose name is known', {});
    const body = Buffer.concat(parts);
    await this.put(ref, body);
    return { token: `s3:${ref.kind}:${ref.name}`, sizeBytes: body.length };
  }

  newPublishBatch(): PublishBatch {
    return { sync: async () => undefined };
  }

  async publish(token: string, ref: BlobRef): Promise<void> {
    // Uploaded to its name by stage already (a PUT is atomic and durable).
    if (token !== `s3:${ref.kind}:${ref.name}`) throw new RepositoryError('REPO_INVALID_NAME', `"${token}" is not the staged blob of ${this.describe(ref)}`, { name: token });
  }

  async discard(): Promise<void> {
    // Nothing staged apart from its name: an unreferenced blob, which GC removes.
  }

  async listStaged(): Promise<Array<BlobInfo & { token: string }>> {
    return [];
  }

  async openStream(): Promise<BlobStream> {
    const spool = path.join(os.tmpdir(), `vcbt-s3-${randomBytes(12).toString('hex')}.tmp`);
    const handle = await fsp.open(spool, 'wx', 0o600);
    const md5 = createHash('md5');
    let sizeBytes = 0;
    let closed = false;
    const cleanup = async () => {
      if (!closed) {
        closed = true;
        await handle.close().catch(() => undefined);
      }
      await fsp.rm(spool, { force: true });
    };
    return {
      write: async (bytes) => {
        md5.update(bytes);
        sizeBytes += bytes.length;
        let done = 0;
        while (done < bytes.length) done += (await handle.write(bytes, done, bytes.length - done)).bytesWritten;
      },
      finish: async (ref) => {
        const key = this.keyOf(ref);
        const digest = md5.digest('base64');
        try {
          await this.#send('write', this.describe(ref), () =>
            this.#client.send(new PutObjectCommand({ Bucket: this.settings.bucket, Key: key, Body: createReadStream(spool), ContentLength: sizeBytes, ContentMD5: digest, ...this.#retention(ref) })),
          );
        } finally {
          await cleanup();
        }
      },
      abort: cleanup,
    };
  }

  async quarantine(ref: BlobRef): Promise<string> {
    const bytes = await this.get(ref);
    const aside = `${this.settings.prefix}quarantine/${ref.kind}-${ref.name}-${Date.now()}`;
    await this.#send('move aside', `s3://${this.settings.bucket}/${aside}`, () => this.#client.send(new PutObjectCommand({ Bucket: this.settings.bucket, Key: aside, Body: bytes, ContentLength: bytes.length })));
    await this.delete(ref);
    return `s3://${this.settings.bucket}/${aside}`;
  }

  destroy(): void {
    this.#client.destroy();
  }
}

function readCa(file: string): Buffer {
  try {
    // Read once at construction: a CA bundle is small and fixed for the process.
    return Buffer.from(readFileSync(file));
  } catch (error) {
    throw new RepositoryError('FILE_ACCESS', `cannot read the CA file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, { file }, { cause: error });
  }
}
