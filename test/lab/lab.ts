// The vSphere lab, from TypeScript: builds (cached) and starts the Go lab program
// (test/lab/go), and drives its control API. docs/lab.md describes the lab itself.
//
// Vocabulary: a *lab* is one running vcsim-based vSphere endpoint with its own state
// directory; `info` is its description (the JSON line it prints when ready, also written to
// <stateDir>/lab.json); a *disk* is addressed by VM name and device key; a *snapshot* by its
// moref value (e.g. "snapshot-79"); an *export* is an NBD server the lab runs for a disk.
//
// A lab process exits and removes its files when stop() is called, and also when the
// process that started it dies (it watches its stdin, which only this process holds).
import { spawn, type ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { buildLabBinaries } from './build.ts';

export interface LabDisk {
  key: number;
  label: string;
  capacityBytes: number;
  /** Datastore path of the live descriptor, e.g. "[LocalDS_0] DC0_H0_VM0/disk1.vmdk". */
  file: string;
}
export interface LabVm {
  name: string;
  moref: string;
  instanceUuid: string;
  powerState: 'poweredOn' | 'poweredOff' | 'suspended';
  disks: LabDisk[];
}
export interface LabInfo {
  /** https://127.0.0.1:PORT/sdk */
  sdk: string;
  username: string;
  password: string;
  /** SHA-1 of the server certificate, "AA:BB:...", as VDDK/nbdkit-vddk want it. */
  thumbprintSha1: string;
  fingerprintSha256: string;
  /** http://127.0.0.1:PORT of the control API. */
  control: string;
  /**
   * The named NBD endpoint, "nbd://127.0.0.1:PORT/{snapshot}/{disk}": replace the
   * placeholders with a snapshot moref value and a disk key for a read-only export of that
   * snapshot's frozen disk (vcbt replicate --transport nbd --nbd-uri TEMPLATE).
   */
  nbdUriTemplate: string;
  /** The live endpoint: a powered-off VM's disks, writable, export names `<vm>/<disk key>` (docs/lab.md). */
  nbdLiveUriTemplate: string;
  datacenter: string;
  /** Process id of the lab program. */
  pid: number;
  vms: LabVm[];
}
export interface LabOptions {
  /** Directory for datastores, sockets and lab.json; a fresh temp dir (removed on stop) if absent. */
  stateDir?: string;
  /** Capacities in bytes (multiples of 1024) of DC0_H0_VM0's disks; default 20 MiB + 3 KiB, 12 MiB + 512 KiB. */
  diskSizes?: number[];
  /** Capacity in bytes of the single disk of every other VM; default 4 MiB. */
  otherDiskBytes?: number;
}
export interface LabSnapshot {
  moref: string;
  name: string;
  disks: Array<{ key: number; changeId: string; file: string }>;
}
/**
 * Faults to arm (POST /faults); each fires for the next `count` calls / the next response or
 * connection long enough, then disarms. `faultsArmed()` answers the same shape with only what
 * is still armed.
 */
export interface LabFaults {
  /** The next `count` QueryChangedDiskAreas calls fail with this SOAP fault type. */
  queryChangedDiskAreas?: { fault: string; count: number };
  /**
   * The first /folder GET response with more than N body bytes is cut (connection closed)
   * after exactly N; shorter responses (a descriptor) pass and leave the fault armed. 0 disarms.
   */
  httpCutAfterBytes?: number;
  /**
   * The next `count` /folder GET responses longer than `afterBytes` send exactly that many
   * body bytes and then stall (the connection stays open, nothing more comes). Count 0 disarms.
   */
  httpStall?: { afterBytes: number; count: number };
  /**
   * The first NBD connection (any export, accepted while armed) that sends more than N bytes
   * to its client is closed after exactly N; shorter connections (a size probe) leave it armed.
   */
  nbdCutAfterBytes?: number;
  /**
   * Any SOAP method by name (e.g. "CreateSnapshot_Task", "RemoveSnapshot_Task", "Login"):
   * the next `count` calls by a logged-in client fail; *_Task methods return a task that
   * ends in that fault, other methods a SOAP fault.
   */
  methods?: Record<string, { fault: string; count: number }>;
  /** The next snapshot removal leaves runtime.consolidationNeeded=true until ConsolidateVMDisks_Task. */
  consolidationNeeded?: boolean;
  /**
   * Every vSphere session ends (as POST /sessions/expire) just before the N-th SOAP request
   * from a client, counted from now (1 = the next request). 0 disarms. `faultsArmed()`
   * answers how many requests are left until it fires.
   */
  expireSessionsBeforeCall?: number;
  /**
   * The next upload to an HttpNfcLease device URL is cut after N bytes (the lab closes the
   * connection): the lease goes to state error and its VM is removed, as vCenter rolls back a
   * failed import. 0 disarms.
   */
  nfcUploadCutAfterBytes?: number;
}
/** A vSphere fault as the govmomi test client reports it. */
export interface GovmomiFault {
  fault: string;
  message: string;
}
export interface Lab {
  info: LabInfo;
  stateDir: string;
  write(vm: string, diskKey: number, offsetBytes: number, data: Uint8Array): Promise<void>;
  resize(vm: string, diskKey: number, capacityBytes: number): Promise<void>;
  /** A guest UNMAP/TRIM: the range reads as zeros (an seSparse delta marks whole grains unmapped). */
  unmap(vm: string, diskKey: number, offsetBytes: number, lengthBytes: number): Promise<void>;
  /** The delta format the VM's next snapshots get (default vmfsSparse; seSparse as on VMFS6). */
  deltaFormat(vm: string, format: 'vmfsSparse' | 'seSparse'): Promise<void>;
  /** The local directory of a datastore path's folder (`[LocalDS_0] VM/disk1.vmdk` -> .../VM). */
  localPath(datastorePath: string): Promise<string>;
  sha256(vm: string, diskKey: number, snapshot?: string): Promise<{ sha256: string; capacityBytes: number }>;
  content(vm: string, diskKey: number, snapshot?: string): Promise<Buffer>;
  snapshots(vm: string): Promise<LabSnapshot[]>;
  config(c: { cbtBlockBytes?: number; maxAreasPerReply?: number; maxBytesPerReply?: number; datastoreFreeBytes?: number }): Promise<void>;
  faults(f: LabFaults): Promise<void>;
  /** What is still armed (GET /faults): only armed faults appear, so nothing armed is `{}`. */
  faultsArmed(): Promise<LabFaults>;
  nbdExport(vm: string, diskKey: number, snapshot?: string): Promise<{ uri: string; id: string }>;
  scratchExport(capacityBytes: number): Promise<{ uri: string; path: string; id: string }>;
  closeExport(id: string): Promise<void>;
  /** Ends every logged-in vSphere session now (as an idle timeout would); returns how many. */
  expireSessions(): Promise<number>;
  /** SOAP method names clients called since the lab started or `clearSoapCalls()`, in order. */
  soapCalls(): Promise<string[]>;
  clearSoapCalls(): Promise<void>;
  /** Re-reads the lab description (power states, capacities and live file names change). */
  refreshInfo(): Promise<LabInfo>;
  /**
   * Runs the govmomi test client against this lab (commands: see
   * test/lab/govmomi-client/main.go). Resolves with its JSON output; a vSphere fault
   * resolves as {fault, message}; other failures reject.
   */
  govmomi(args: string[]): Promise<unknown>;
  stop(): Promise<void>;
}

/** The lab failed to start, stopped unexpectedly, or its control API refused a request. */
/** Test harness only, so not a VcbtError: its code is not one of the product's ErrorCodes. */
export class LabError extends Error {
  readonly code = 'LAB';
  readonly context: Readonly<Record<string, unknown>>;
  constructor(message: string, context: Record<string, unknown> = {}, cause?: unknown) {
    super(message, { cause });
    this.name = 'LabError';
    this.context = context;
  }
}

const startTimeoutMs = 60_000;
const stopTimeoutMs = 10_000;

export async function startLab(options: LabOptions = {}): Promise<Lab> {
  const binaries = await buildLabBinaries();
  const ownsStateDir = options.stateDir === undefined;
  const stateDir = options.stateDir ?? (await mkdtemp(join(tmpdir(), 'vcbt-lab-')));
  const args = ['-state', stateDir];
  if (options.diskSizes) args.push('-disk-sizes', options.diskSizes.join(','));
  if (options.otherDiskBytes !== undefined) args.push('-other-disk-bytes', String(options.otherDiskBytes));
  if (ownsStateDir) args.push('-remove-state-on-exit');
  const child = spawn(binaries.lab, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-8192);
  });
  let info: LabInfo;
  try {
    info = await readReadyLine(child, () => stderr);
  } catch (error) {
    child.kill('SIGKILL');
    if (ownsStateDir) await rm(stateDir, { recursive: true, force: true });
    throw error;
  }
  // The lab must not keep the test process alive; if this process dies, the lab sees EOF
  // on stdin and cleans up.
  child.unref();
  for (const stream of [child.stdin, child.stdout, child.stderr]) (stream as unknown as { unref?: () => void }).unref?.();
  return new RunningLab(child, info, stateDir, ownsStateDir, binaries.govmomi, () => stderr);
}

function readReadyLine(child: ChildProcess, stderr: () => string): Promise<LabInfo> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => fail(new LabError(`the lab did not become ready in ${startTimeoutMs} ms`, { stderr: stderr() })), startTimeoutMs);
    const fail = (error: Error) => {
      clearTimeout(timer);
      lines.close();
      reject(error);
    };
    child.once('error', (error) => fail(new LabError(`the lab could not be started: ${error.message}`, {}, error)));
    child.once('exit', (code, signal) =>
      fail(new LabError(`the lab exited before it was ready (code ${code}, signal ${signal}): ${stderr().trim()}`, { code, signal })),
    );
    lines.once('line', (line) => {
      clearTimeout(timer);
      lines.close();
      child.removeAllListeners('exit');
      try {
        resolve(JSON.parse(line) as LabInfo);
      } catch (error) {
        reject(new LabError(`the lab printed an unreadable ready line: ${line.slice(0, 200)}`, {}, error));
      }
    });
  });
}

class RunningLab implements Lab {
  info: LabInfo;
  stateDir: string;
  readonly #child: ChildProcess;
  readonly #ownsStateDir: boolean;
  readonly #govmomiBinary: string;
  readonly #stderr: () => string;
  readonly #exited: Promise<void>;

  constructor(child: ChildProcess, info: LabInfo, stateDir: string, ownsStateDir: boolean, govmomiBinary: string, stderr: () => string) {
    this.#child = child;
    this.info = info;
    this.stateDir = stateDir;
    this.#ownsStateDir = ownsStateDir;
    this.#govmomiBinary = govmomiBinary;
    this.#stderr = stderr;
    this.#exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
  }

  async #request(method: string, path: string, body?: Uint8Array | string): Promise<Response> {
    let response: Response;
    try {
      response = await fetch(this.info.control + path, { method, body });
    } catch (error) {
      throw new LabError(`lab control API ${method} ${path} failed: ${String(error)}`, { method, path, stderr: this.#stderr() }, error);
    }
    if (!response.ok) {
      const text = await response.text();
      let message = text;
      try {
        message = (JSON.parse(text) as { error: string }).error;
      } catch {
        // not JSON: keep the text
      }
      throw new LabError(`lab control API ${method} ${path}: HTTP ${response.status}: ${message}`, { method, path, status: response.status });
    }
    return response;
  }

  async #json<T>(method: string, path: string, body?: Uint8Array | string): Promise<T> {
    return (await (await this.#request(method, path, body)).json()) as T;
  }

  #disk(vm: string, diskKey: number, action: string, query: Record<string, string | number | undefined> = {}): string {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v));
    const q = params.size > 0 ? `?${params}` : '';
    return `/vms/${encodeURIComponent(vm)}/disks/${diskKey}/${action}${q}`;
  }

  async write(vm: string, diskKey: number, offsetBytes: number, data: Uint8Array): Promise<void> {
    await this.#json('POST', this.#disk(vm, diskKey, 'write', { offset: offsetBytes }), data);
  }

  async unmap(vm: string, diskKey: number, offsetBytes: number, lengthBytes: number): Promise<void> {
    await this.#json('POST', this.#disk(vm, diskKey, 'unmap', { offset: offsetBytes, length: lengthBytes }));
  }

  async deltaFormat(vm: string, format: 'vmfsSparse' | 'seSparse'): Promise<void> {
    await this.#json('POST', `/vms/${encodeURIComponent(vm)}/delta-format?format=${format}`);
  }

  async localPath(datastorePath: string): Promise<string> {
    const match = /^\[([^\]]+)\]\s*(.+)$/.exec(datastorePath);
    if (!match) throw new LabError(`"${datastorePath}" is not a datastore path`);
    const root = join(this.stateDir, 'datastores');
    const dir = (await readdir(root)).find((d) => d.endsWith(`-${match[1]}`) || d.includes(`-${match[1]}-`));
    if (!dir) throw new LabError(`datastore ${match[1]} not found under ${root}`);
    return join(root, dir, match[2]);
  }

  async resize(vm: string, diskKey: number, capacityBytes: number): Promise<void> {
    await this.#json('POST', this.#disk(vm, diskKey, 'resize', { capacityBytes }));
    await this.refreshInfo();
  }

  sha256(vm: string, diskKey: number, snapshot?: string): Promise<{ sha256: string; capacityBytes: number }> {
    return this.#json('GET', this.#disk(vm, diskKey, 'sha256', { snapshot }));
  }

  async content(vm: string, diskKey: number, snapshot?: string): Promise<Buffer> {
    const response = await this.#request('GET', this.#disk(vm, diskKey, 'content', { snapshot }));
    // Collecting the stream is several times faster than arrayBuffer() for tens of MiB.
    const chunks: Buffer[] = [];
    if (response.body) for await (const chunk of response.body) chunks.push(Buffer.from(chunk));
    return Buffer.concat(chunks);
  }

  snapshots(vm: string): Promise<LabSnapshot[]> {
    return this.#json('GET', `/vms/${encodeURIComponent(vm)}/snapshots`);
  }

  /** `datastoreFreeBytes`: every datastore's free space as vSphere reports it and ImportVApp checks (-1: the real one). */
  async config(c: { cbtBlockBytes?: number; maxAreasPerReply?: number; maxBytesPerReply?: number; datastoreFreeBytes?: number }): Promise<void> {
    await this.#json('POST', '/config', JSON.stringify(c));
  }

  async faults(f: LabFaults): Promise<void> {
    await this.#json('POST', '/faults', JSON.stringify(f));
  }

  faultsArmed(): Promise<LabFaults> {
    return this.#json('GET', '/faults');
  }

  nbdExport(vm: string, diskKey: number, snapshot?: string): Promise<{ uri: string; id: string }> {
    return this.#json('POST', this.#disk(vm, diskKey, 'nbd', { snapshot }));
  }

  scratchExport(capacityBytes: number): Promise<{ uri: string; path: string; id: string }> {
    return this.#json('POST', `/scratch?capacityBytes=${capacityBytes}`);
  }

  async closeExport(id: string): Promise<void> {
    await this.#json('DELETE', `/nbd/${encodeURIComponent(id)}`);
  }

  async expireSessions(): Promise<number> {
    return (await this.#json<{ expired: number }>('POST', '/sessions/expire')).expired;
  }

  async soapCalls(): Promise<string[]> {
    return (await this.#json<{ calls: string[] }>('GET', '/soap-calls')).calls;
  }

  async clearSoapCalls(): Promise<void> {
    await this.#json('DELETE', '/soap-calls');
  }

  async refreshInfo(): Promise<LabInfo> {
    this.info = await this.#json<LabInfo>('GET', '/info');
    return this.info;
  }

  govmomi(args: string[]): Promise<unknown> {
    return new Promise((resolve, reject) => {
      execFile(
        this.#govmomiBinary,
        args,
        {
          env: {
            ...process.env,
            VCBT_LAB_SDK: this.info.sdk,
            VCBT_LAB_USERNAME: this.info.username,
            VCBT_LAB_PASSWORD: this.info.password,
            VCBT_LAB_THUMBPRINT: this.info.thumbprintSha1,
          },
          maxBuffer: 64 * 1024 * 1024,
        },
        (error, stdout, stderr) => {
          const exitCode = error ? (error as { code?: unknown }).code : 0;
          if (exitCode === 0 || exitCode === 2) {
            try {
              resolve(JSON.parse(stdout));
              return;
            } catch (parseError) {
              reject(new LabError(`govmomi client printed unreadable output for ${args[0]}: ${stdout.slice(0, 200)}`, { args }, parseError));
              return;
            }
          }
          reject(new LabError(`govmomi client ${args.join(' ')} failed: ${stderr.trim()}`, { args, exitCode }, error));
        },
      );
    });
  }

  async stop(): Promise<void> {
    if (this.#child.exitCode === null && this.#child.signalCode === null) {
      this.#child.stdin?.end();
      this.#child.kill('SIGTERM');
      const timer = setTimeout(() => this.#child.kill('SIGKILL'), stopTimeoutMs);
      await this.#exited;
      clearTimeout(timer);
    }
    if (this.#ownsStateDir) await rm(this.stateDir, { recursive: true, force: true });
  }
}
