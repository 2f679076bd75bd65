// An in-memory storage for tests: blobs in a Map, same contract as the local directory
// (names checked, put atomic, staged blobs invisible until published). It cannot be shared
// with worker threads (threadDescriptor is undefined), so a repository on it runs its chunk
// work on the calling thread. `files` is exposed so tests can damage or inspect blobs.
import { randomBytes } from 'node:crypto';
import { RepositoryError } from '../errors.ts';
import { BlobNotFound, checkBlobRef, type BlobInfo, type BlobKind, type BlobRef, type BlobStream, type PublishBatch, type StagedBlob, type Storage } from './storage.ts';

interface Entry {
  bytes: Buffer;
  modifiedMs: number;
}

const noBatch: PublishBatch = { sync: async () => undefined };

export class MemoryStorage implements Storage {
  readonly location: string;
  /** key = `${kind}/${name}` */
  readonly files = new Map<string, Entry>();
  readonly staged = new Map<string, Entry>();
  /** Quarantined blobs: `quarantine/<kind>-<name>-<n>` -> bytes. */
  readonly quarantined = new Map<string, Entry>();
  #created = false;

  constructor(location = 'memory:') {
    this.location = location;
  }

  threadDescriptor(): undefined {
    return undefined;
  }

  static key(ref: BlobRef): string {
    checkBlobRef(ref);
    return `${ref.kind}/${ref.name}`;
  }

  describe(ref: BlobRef): string {
    return `${this.location}${MemoryStorage.key(ref)}`;
  }

  async create(): Promise<void> {
    if (this.#created || this.files.size > 0) throw new RepositoryError('REPO_EXISTS', `a repository already exists at ${this.location}`, { repoPath: this.location });
    this.#created = true;
  }

  #entry(ref: BlobRef): Entry {
    const entry = this.files.get(MemoryStorage.key(ref));
    if (!entry) throw new BlobNotFound(this.describe(ref));
    return entry;
  }

  async get(ref: BlobRef, options: { maxBytes?: number } = {}): Promise<Buffer> {
    const { bytes } = this.#entry(ref);
    if (options.maxBytes !== undefined && bytes.length > options.maxBytes) {
      throw new RepositoryError('REPO_CORRUPT', `${this.describe(ref)} is ${bytes.length} bytes, more than the ${options.maxBytes} a ${ref.kind} blob can hold`, { file: this.describe(ref) });
    }
    return Buffer.from(bytes);
  }

  async getRange(ref: BlobRef, offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return Buffer.from(this.#entry(ref).bytes.subarray(offsetBytes, offsetBytes + lengthBytes));
  }

  async stat(ref: BlobRef): Promise<BlobInfo | undefined> {
    const entry = this.files.get(MemoryStorage.key(ref));
    return entry && { name: ref.name, sizeBytes: entry.bytes.length, modifiedMs: entry.modifiedMs };
  }

  async statMany(refs: readonly BlobRef[]): Promise<Array<BlobInfo | undefined>> {
    return Promise.all(refs.map((ref) => this.stat(ref)));
  }

  async *list(kind: BlobKind): AsyncIterable<string> {
    const prefix = `${kind}/`;
    const names = [...this.files.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length)).sort();
    yield* names;
  }

  async put(ref: BlobRef, data: Uint8Array | string): Promise<void> {
    this.files.set(MemoryStorage.key(ref), { bytes: Buffer.from(data), modifiedMs: Date.now() });
  }

  async delete(ref: BlobRef): Promise<void> {
    this.files.delete(MemoryStorage.key(ref));
  }

  async stage(parts: readonly Uint8Array[]): Promise<StagedBlob> {
    const token = `${randomBytes(12).toString('hex')}.tmp`;
    const bytes = Buffer.concat(parts);
    this.staged.set(token, { bytes, modifiedMs: Date.now() });
    return { token, sizeBytes: bytes.length };
  }

  newPublishBatch(): PublishBatch {
    return noBatch;
  }

  async publish(token: string, ref: BlobRef): Promise<void> {
    const entry = this.staged.get(token);
    if (!entry) throw new BlobNotFound(`${this.location}tmp/${token}`);
    this.staged.delete(token);
    this.files.set(MemoryStorage.key(ref), entry);
  }

  async discard(token: string): Promise<void> {
    this.staged.delete(token);
  }

  async listStaged(): Promise<Array<BlobInfo & { token: string }>> {
    return [...this.staged].map(([token, e]) => ({ token, name: token, sizeBytes: e.bytes.length, modifiedMs: e.modifiedMs }));
  }

  async quarantine(ref: BlobRef): Promise<string> {
    const entry = this.#entry(ref);
    const aside = `quarantine/${ref.kind}-${ref.name}-${this.quarantined.size}`;
    this.quarantined.set(aside, entry);
    this.files.delete(MemoryStorage.key(ref));
    return `${this.location}${aside}`;
  }

  async openStream(): Promise<BlobStream> {
    const parts: Buffer[] = [];
    return {
      write: async (bytes) => {
        parts.push(Buffer.from(bytes));
      },
      finish: async (ref) => this.put(ref, Buffer.concat(parts)),
      abort: async () => undefined,
    };
  }
}
