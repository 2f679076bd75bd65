// Pipeline: a fixed pool of worker threads that runs CPU-heavy work off the event loop. It is
// generic: it knows no repository, chunk or disk (the repository's chunk worker and its
// messages live in src/repository/chunk-worker.ts and chunk-protocol.ts); layers above import
// it, it imports nothing of theirs.
//
// Vocabulary
// - WorkerPool: `size` worker threads running one script; `run(request, transfer)` hands a
//   request to an idle worker (or queues it) and resolves with its reply. Buffers listed in
//   `transfer` move to the worker without copying and come back in the reply the same way,
//   so callers recycle a fixed set of buffers and memory stays bounded.
// - The queue is not bounded here: callers bound it by how many requests they keep in
//   flight (the ingest and restore windows), which is what bounds memory.
// - A worker that throws replies with a serialized error ({name, message, code, context});
//   a worker that dies fails its request and every later one (the pool is broken).
import { Worker, type Transferable } from 'node:worker_threads';

interface Job {
  request: unknown;
  transfer: Transferable[];
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

export interface WorkerReply {
  ok: boolean;
  result?: unknown;
  error?: { name: string; message: string; code?: string; context?: Record<string, unknown> };
}

export class WorkerFailure extends Error {
  readonly code: string | undefined;
  readonly context: Record<string, unknown>;

  constructor(error: NonNullable<WorkerReply['error']>) {
    super(error.message);
    this.name = error.name;
    this.code = error.code;
    this.context = error.context ?? {};
  }
}

export class WorkerPool<Request, Reply> {
  readonly size: number;
  readonly #idle: Worker[] = [];
  readonly #busy = new Map<Worker, Job>();
  readonly #queue: Job[] = [];
  #broken: Error | undefined;
  #closing = false;

  constructor(script: URL, size: number, workerData: unknown) {
    this.size = size;
    for (let i = 0; i < size; i++) {
      const worker = new Worker(script, { workerData });
      worker.on('message', (reply: WorkerReply) => this.#settle(worker, reply));
      worker.on('error', (error) => this.#fail(worker, error));
      worker.on('exit', (code) => {
        if (this.#busy.has(worker) || !this.#closing) this.#fail(worker, new Error(`pipeline worker exited with code ${code}`));
      });
      this.#idle.push(worker);
    }
  }

  run(request: Request, transfer: Transferable[] = []): Promise<Reply> {
    if (this.#broken) return Promise.reject(this.#broken);
    return new Promise<Reply>((resolve, reject) => {
      this.#queue.push({ request, transfer, resolve: resolve as (value: unknown) => void, reject });
      this.#dispatch();
    });
  }

  async close(): Promise<void> {
    this.#closing = true;
    const workers = [...this.#idle, ...this.#busy.keys()];
    this.#idle.length = 0;
    await Promise.all(workers.map((w) => w.terminate()));
  }

  #dispatch(): void {
    while (this.#idle.length > 0 && this.#queue.length > 0) {
      const worker = this.#idle.pop() as Worker;
      const job = this.#queue.shift() as Job;
      this.#busy.set(worker, job);
      worker.postMessage(job.request, job.transfer);
    }
  }

  #settle(worker: Worker, reply: WorkerReply): void {
    const job = this.#busy.get(worker);
    this.#busy.delete(worker);
    this.#idle.push(worker);
    if (job) {
      if (reply.ok) job.resolve(reply.result);
      else job.reject(new WorkerFailure(reply.error ?? { name: 'Error', message: 'worker failed without detail' }));
    }
    this.#dispatch();
  }

  #fail(worker: Worker, error: Error): void {
    if (this.#closing) return;
    this.#broken = error;
    this.#busy.get(worker)?.reject(error);
    this.#busy.delete(worker);
    for (const job of this.#queue.splice(0)) job.reject(error);
  }
}
