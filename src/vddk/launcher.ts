// The vddk launcher: runs nbdkit with VMware's VDDK plugin for one (VM, snapshot, disk) and
// hands back the NBD URI of a private unix socket serving that disk.
//
// Vocabulary
// - VDDK: VMware's proprietary Virtual Disk Development Kit (libvixDiskLib). vcbt never links
//   it; nbdkit's `vddk` plugin does, and we talk NBD to nbdkit.
// - libdir: the unpacked VDDK distribution (the directory that holds lib64/).
// - transports: VDDK transport modes in preference order (`nbdssl`, `nbd`, `hotadd`, `san`).
// - thumbprint: the SHA-1 fingerprint of the ESXi/vCenter certificate, `AA:BB:...` (VDDK's form).
//
// Secrets: the password goes to nbdkit as `password=+FILE`, a 0600 file in a private 0700
// directory that is deleted as soon as nbdkit is ready (it reads the password at start-up),
// so it never appears in argv, the environment or a log.
import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:fs';
import { access, mkdtemp, rm, writeFile, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { VcbtError } from '../errors.ts';

/** Codes: VDDK_START_FAILED (nbdkit exited or never became ready), VDDK_OPTIONS (bad input). */
export class VddkError extends VcbtError {}

export interface VddkDisk {
  /** vCenter or ESXi host name (no scheme). */
  server: string;
  user: string;
  password: string;
  /** SHA-1 certificate thumbprint `AA:BB:...`; VDDK refuses to connect without it. */
  thumbprintSha1: string;
  vmMoref: string;
  /** Snapshot moref; the disk is read as it was at that snapshot. */
  snapshotMoref?: string;
  /** Datastore path of the disk as named in the snapshot's config: `[ds] vm/vm.vmdk`. */
  file: string;
  libdir: string;
  transports?: readonly string[];
  readonly?: boolean;
  /** NFC compression between ESXi and the backup host (nbdkit `compression=`). */
  compression?: 'none' | 'zlib' | 'fastlz' | 'skipz';
}

export interface VddkLaunchOptions {
  /** nbdkit executable; tests point this at a stand-in. */
  nbdkitPath?: string;
  readyTimeoutMs?: number;
  signal?: AbortSignal;
}

export interface VddkExport {
  /** `nbd+unix:///?socket=...` */
  uri: string;
  socketPath: string;
  pid: number;
  close(): Promise<void>;
}

const thumbprintPattern = /^([0-9A-F]{2}:){19}[0-9A-F]{2}$/i;
const morefPattern = /^[A-Za-z0-9_.:-]+$/;

function validate(disk: VddkDisk): void {
  const bad = (what: string) => new VddkError('VDDK_OPTIONS', `vddk: ${what}`, { server: disk.server, vm: disk.vmMoref, file: disk.file });
  if (!thumbprintPattern.test(disk.thumbprintSha1)) throw bad(`thumbprint must be a SHA-1 fingerprint like 96:09:...:AB (20 bytes), got "${disk.thumbprintSha1}"`);
  if (!morefPattern.test(disk.vmMoref)) throw bad(`VM moref "${disk.vmMoref}" is not a managed object id like vm-10`);
  if (disk.snapshotMoref !== undefined && !morefPattern.test(disk.snapshotMoref)) throw bad(`snapshot moref "${disk.snapshotMoref}" is not a managed object id like snapshot-20`);
  if (!/^\[[^\]]+\] \S/.test(disk.file)) throw bad(`disk file "${disk.file}" is not a datastore path like "[datastore1] vm/vm.vmdk"`);
  if (disk.server === '' || /[\s/]/.test(disk.server)) throw bad(`server "${disk.server}" must be a host name without scheme or path`);
}

/**
 * The nbdkit argv for one disk. Filters: cacheextents answers repeated block-status
 * queries from cache (VDDK's QueryAllocatedBlocks is slow), retry reopens the VDDK
 * connection after transient NFC errors.
 */
export function vddkArguments(disk: VddkDisk, paths: { socketPath: string; pidFile: string; passwordFile: string }): string[] {
  validate(disk);
  const args = ['--exit-with-parent', '--foreground', '--unix', paths.socketPath, '--pidfile', paths.pidFile];
  if (disk.readonly ?? true) args.push('--readonly');
  args.push('--filter=cacheextents', '--filter=retry', 'vddk');
  args.push(`libdir=${disk.libdir}`, `server=${disk.server}`, `user=${disk.user}`, `password=+${paths.passwordFile}`);
  args.push(`thumbprint=${disk.thumbprintSha1.toUpperCase()}`, `vm=moref=${disk.vmMoref}`);
  if (disk.snapshotMoref) args.push(`snapshot=${disk.snapshotMoref}`);
  args.push(`transports=${(disk.transports ?? ['nbdssl', 'nbd']).join(':')}`);
  if (disk.compression) args.push(`compression=${disk.compression}`);
  args.push(`file=${disk.file}`);
  return args;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

/** Starts nbdkit-vddk for one disk and waits until it accepts connections. */
/**
 * What can be checked before any snapshot exists: `libdir` is an unpacked VDDK (it holds
 * lib64/) and the nbdkit executable can be run. Throws VDDK_OPTIONS / VDDK_START_FAILED.
 */
export async function checkVddk(libdir: string, nbdkitPath = 'nbdkit'): Promise<void> {
  const lib64 = join(libdir, 'lib64');
  const info = await stat(lib64).catch(() => undefined);
  if (!info?.isDirectory()) {
    throw new VddkError('VDDK_OPTIONS', `--vddk-libdir ${libdir} is not an unpacked VDDK: it has no lib64/ directory (see docs/vddk.md)`, { libdir });
  }
  const candidates = nbdkitPath.includes('/') ? [nbdkitPath] : (process.env.PATH ?? '').split(':').filter(Boolean).map((dir) => join(dir, nbdkitPath));
  for (const candidate of candidates) {
    if (await access(candidate, constants.X_OK).then(() => true, () => false)) return;
  }
  throw new VddkError('VDDK_START_FAILED', `nbdkit (${nbdkitPath}) is not installed or not executable; the vddk transport needs nbdkit and its vddk plugin (see docs/vddk.md)`, { nbdkitPath });
}

export async function launchVddk(disk: VddkDisk, options: VddkLaunchOptions = {}): Promise<VddkExport> {
  const dir = await mkdtemp(join(tmpdir(), 'vcbt-vddk-'));
  const paths = { socketPath: join(dir, 'nbd.sock'), pidFile: join(dir, 'nbdkit.pid'), passwordFile: join(dir, 'password') };
  const context = { server: disk.server, vm: disk.vmMoref, snapshot: disk.snapshotMoref, file: disk.file };
  let child: ChildProcess | undefined;
  try {
    const args = vddkArguments(disk, paths);
    await writeFile(paths.passwordFile, disk.password, { mode: 0o600 });
    let stderr = '';
    child = spawn(options.nbdkitPath ?? 'nbdkit', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    const exited = new Promise<string>((resolve) => {
      child?.once('error', (e) => resolve(e.message));
      child?.once('exit', (code, signal) => resolve(`exited with ${signal ?? `code ${code}`}`));
    });
    let exitReason: string | undefined;
    void exited.then((r) => (exitReason = r));
    const deadline = Date.now() + (options.readyTimeoutMs ?? 60_000);
    while (!(await exists(paths.pidFile)) || !(await readFile(paths.pidFile, 'utf8')).trim()) {
      options.signal?.throwIfAborted();
      if (exitReason !== undefined) {
        throw new VddkError('VDDK_START_FAILED', `nbdkit vddk for ${disk.file} on ${disk.server} ${exitReason}: ${stderr.trim() || 'no output'}`, context);
      }
      if (Date.now() > deadline) throw new VddkError('VDDK_START_FAILED', `nbdkit vddk for ${disk.file} on ${disk.server} not ready after ${options.readyTimeoutMs ?? 60_000} ms`, context);
      await sleep(20);
    }
    await rm(paths.passwordFile, { force: true });
    const running = child;
    return {
      uri: `nbd+unix:///?socket=${paths.socketPath}`,
      socketPath: paths.socketPath,
      pid: running.pid ?? -1,
      close: async () => {
        if (running.exitCode === null && running.signalCode === null) {
          running.kill('SIGTERM');
          await exited;
        }
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}
