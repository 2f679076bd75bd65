// File-level restore: browse and extract files of a restore point's disk without root and
// without mounting anything on the host.
//
// How: the point's disk is served by vcbt's own read-only NBD export (jobs/export.ts) on a
// private unix socket, and a libguestfs session (jobs/guestfish.ts) boots its appliance on it.
// The appliance reads the partition table and file systems; we only ask it questions.
//
// Terms:
// - file system: a partition (`/dev/sda1` in the appliance, numbered N as the partition
//   table numbers it), an LVM logical volume (`/dev/VG/LV`, named `VG/LV`) or the whole disk
//   (`/dev/sda`, number null) holding one. A partition that is an LVM physical volume is listed
//   (type `LVM2_member`, not browsable); its logical volumes are listed after the partitions.
// - prefix: how a guest path names its file system: the partition number `N` or `VG/LV`.
// - guest path: `PREFIX:/dir/file`, or `/dir/file` when the disk holds exactly one file system.
// - browser: one open restore point disk (export + session). Only one file system is mounted at
//   a time, read-only, at the appliance's `/`; switching unmounts the other.
import { spawn } from 'node:child_process';
import { chmod, chown, lstat, mkdir, mkdtemp, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, posix } from 'node:path';
import { VcbtError } from '../errors.ts';
import type { Repository } from '../repository/repository.ts';
import { exportDisk, type RunningExport } from './export.ts';
import { GuestfishSession, libguestfsNbdUri } from './guestfish.ts';

export class FilesError extends VcbtError {}

/** File system types the appliance mounts (vfs-type names). */
const MOUNTABLE = new Set(['ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'ntfs', 'vfat', 'msdos', 'exfat', 'iso9660', 'udf', 'hfsplus', 'f2fs']);
const ENCRYPTED = new Set(['crypto_LUKS', 'BitLocker', 'bitlocker']);

export interface GuestFileSystem {
  /** Partition number (as the partition table numbers it), null for a file system on the whole disk or a logical volume. */
  partition: number | null;
  /** LVM logical volume as `VG/LV`, null for a partition or the whole disk. */
  volume: string | null;
  /** The appliance's device name (/dev/sda1, /dev/VG/LV). */
  device: string;
  /** vfs-type's answer (ext4, vfat, xfs, ntfs, crypto_LUKS, ...), "" when nothing is recognised. */
  type: string;
  sizeBytes: number;
  /** Whether the engine can mount and read it. */
  browsable: boolean;
}

export type GuestEntryKind = 'file' | 'directory' | 'symlink' | 'other';

export interface GuestEntry {
  name: string;
  /** Full guest path (`N:/dir/name` or `/dir/name`). */
  path: string;
  kind: GuestEntryKind;
  sizeBytes: number;
  /** Permission bits and file type as st_mode. */
  mode: number;
  uid: number;
  gid: number;
  /** Modification time, ISO 8601. */
  modifiedAt: string;
}

export interface FilesOpenOptions {
  repository: Repository;
  pointId: string;
  deviceKey: number;
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  /** Hears what the user should know while starting (a retry without KVM). */
  onNotice?: (text: string) => void;
}

interface ParsedPath {
  fs: GuestFileSystem;
  path: string;
}

/** The disk to browse: the one given, or the point's only disk. */
export async function resolveFilesDisk(repository: Repository, pointId: string, deviceKey: number | undefined): Promise<number> {
  const manifest = await repository.readManifest(pointId);
  const keys = manifest.disks.map((d) => d.deviceKey);
  if (deviceKey !== undefined) return deviceKey;
  if (keys.length === 1) return keys[0];
  throw new FilesError('FILES_DISK_AMBIGUOUS', `restore point ${pointId} has ${keys.length} disks (${keys.join(', ')}); say which with --disk KEY`, { pointId, deviceKeys: keys });
}

/** Opens a browser, runs `work`, and always stops the appliance and the export. */
export async function withFilesBrowser<T>(options: FilesOpenOptions, work: (browser: FilesBrowser) => Promise<T>): Promise<T> {
  const browser = await FilesBrowser.open(options);
  try {
    return await work(browser);
  } finally {
    await browser.close();
  }
}

/** guestfish prints a struct list as `[i] = {` / `  field: value` / `}` blocks. */
export function parseStructList(text: string): Array<Record<string, string>> {
  const out: Array<Record<string, string>> = [];
  let current: Record<string, string> | null = null;
  for (const line of text.split('\n')) {
    if (/^\[\d+\] = \{$/.test(line)) current = {};
    else if (line === '}' && current) {
      out.push(current);
      current = null;
    } else if (current) {
      const match = /^ {2}([a-z_]+): (.*)$/.exec(line);
      if (match) current[match[1]] = match[2];
    }
  }
  return out;
}

function kindOfMode(mode: number): GuestEntryKind {
  const type = mode & 0o170000;
  if (type === 0o040000) return 'directory';
  if (type === 0o100000) return 'file';
  if (type === 0o120000) return 'symlink';
  return 'other';
}

/** A glob (`*`, `?`) matched against a whole name. */
export function globToRegExp(pattern: string): RegExp {
  const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

export class FilesBrowser {
  readonly pointId: string;
  readonly deviceKey: number;
  readonly filesystems: GuestFileSystem[];
  readonly #export: RunningExport;
  readonly #session: GuestfishSession;
  readonly #socketDir: string;
  #mounted: string | null = null;

  private constructor(pointId: string, deviceKey: number, filesystems: GuestFileSystem[], running: RunningExport, session: GuestfishSession, socketDir: string) {
    this.pointId = pointId;
    this.deviceKey = deviceKey;
    this.filesystems = filesystems;
    this.#export = running;
    this.#session = session;
    this.#socketDir = socketDir;
  }

  /** Serves the disk, starts the engine and finds the file systems; undoes all of it on failure. */
  static async open(options: FilesOpenOptions): Promise<FilesBrowser> {
    const socketDir = await mkdtemp(join(tmpdir(), 'vcbt-files-'));
    let running: RunningExport | undefined;
    let session: GuestfishSession | undefined;
    try {
      running = await exportDisk({ repository: options.repository, pointId: options.pointId, deviceKey: options.deviceKey, listen: { socketPath: join(socketDir, 'nbd.sock') }, exportName: 'disk' });
      options.signal?.throwIfAborted();
      session = await GuestfishSession.startWithFallback({ onNotice: options.onNotice, diskUri: libguestfsNbdUri(running.uri), workDir: socketDir, env: options.env, signal: options.signal });
      const filesystems = await discover(session, options.signal);
      return new FilesBrowser(running.pointId, running.deviceKey, filesystems, running, session, socketDir);
    } catch (error) {
      await session?.close();
      await running?.close();
      await rm(socketDir, { recursive: true, force: true });
      throw error;
    }
  }

  /** Stops the appliance and the export. */
  async close(): Promise<void> {
    try {
      await this.#session.close();
    } finally {
      await this.#export.close();
      await rm(this.#socketDir, { recursive: true, force: true });
    }
  }

  /** The file system and in-file-system path a guest path names. */
  parsePath(text: string): ParsedPath {
    const match = /^(?:(\d+|[A-Za-z0-9_.+-]+\/[A-Za-z0-9_.+-]+):)?(\/.*)$/.exec(text);
    if (!match) throw new FilesError('FILES_PATH_SYNTAX', `"${text}" is not a guest path: give /dir/file, or N:/dir/file with N a partition number (VG/LV:/dir/file for a logical volume) from vcbt files ls`, { path: text });
    const path = posix.normalize(match[2]);
    if (match[1] === undefined) {
      if (this.filesystems.length !== 1) {
        throw new FilesError('FILES_PATH_SYNTAX', `"${text}": this disk holds ${this.filesystems.length} file systems; prefix the path with one of ${this.filesystems.map((f) => `${prefixOf(f)}:`).join(', ')}`, { path: text });
      }
      return { fs: this.filesystems[0], path };
    }
    const fs = this.filesystems.find((f) => prefixOf(f) === match[1]);
    if (!fs) {
      const isVolume = match[1].includes('/');
      throw new FilesError('FILES_PARTITION_NOT_FOUND', `"${text}": the disk has no ${isVolume ? 'logical volume' : 'partition'} ${match[1]} (it has ${this.filesystems.map((f) => prefixOf(f) ?? 'none').join(', ')})`, isVolume ? { path: text, volume: match[1] } : { path: text, partition: Number(match[1]) });
    }
    return { fs, path };
  }

  /** The guest path of `path` inside `fs`, in the form the user types. */
  guestPath(fs: GuestFileSystem, path: string): string {
    const prefix = prefixOf(fs);
    return this.filesystems.length === 1 || prefix === null ? path : `${prefix}:${path}`;
  }

  async #mount(fs: GuestFileSystem, signal?: AbortSignal): Promise<void> {
    if (this.#mounted === fs.device) return;
    if (!fs.browsable) {
      const what = ENCRYPTED.has(fs.type) ? `is encrypted (${fs.type})` : fs.type === '' ? 'holds no file system the engine recognises' : `holds a ${fs.type} file system, which cannot be browsed`;
      const where = fs.volume !== null ? `logical volume ${fs.volume}` : fs.partition === null ? 'the disk' : `partition ${fs.partition}`;
      const hint = fs.type === 'LVM2_member' ? ' (an LVM physical volume: browse its logical volumes, listed by vcbt files ls, as VG/LV:/path)' : '';
      throw new FilesError(ENCRYPTED.has(fs.type) ? 'FILES_FILESYSTEM_ENCRYPTED' : 'FILES_FILESYSTEM_UNKNOWN', `${where} ${what}${hint}`, { partition: fs.partition, volume: fs.volume, type: fs.type });
    }
    if (this.#mounted !== null) await this.#session.run(['umount-all'], signal);
    this.#mounted = null;
    await this.#session.run(['mount-ro', fs.device, '/'], signal);
    this.#mounted = fs.device;
  }

  /**
   * Stat of one path; FILES_PATH_NOT_FOUND when it does not exist. Asked with `exists` first: a
   * failing command ends a `guestfish --listen` daemon, so expected misses must not fail.
   */
  async #stat(parsed: ParsedPath, signal?: AbortSignal): Promise<Record<string, string>> {
    if ((await this.#session.run(['exists', parsed.path], signal)).stdout.trim() !== 'true') {
      const path = this.guestPath(parsed.fs, parsed.path);
      throw new FilesError('FILES_PATH_NOT_FOUND', `${path} does not exist in restore point ${this.pointId} disk ${this.deviceKey}`, { path, pointId: this.pointId, deviceKey: this.deviceKey });
    }
    const [stat] = parseStructListSingle((await this.#session.run(['lstatns', parsed.path], signal)).stdout);
    return stat;
  }

  /** A directory's entries (or the one entry of a file), sorted by name. */
  async list(text: string, signal?: AbortSignal): Promise<GuestEntry[]> {
    const parsed = this.parsePath(text);
    await this.#mount(parsed.fs, signal);
    const self = toEntry(this.guestPath(parsed.fs, parsed.path), await this.#stat(parsed, signal));
    if (self.kind !== 'directory') return [self];
    const names = (await this.#session.run(['ls', parsed.path], signal)).stdout.split('\n').filter((n) => n !== '');
    const entries: GuestEntry[] = [];
    // lstatnslist takes a space-separated list: names with blanks or quotes are asked one by one.
    const plain = names.filter((n) => /^[^\s"'\\]+$/.test(n));
    const odd = names.filter((n) => !/^[^\s"'\\]+$/.test(n));
    for (let i = 0; i < plain.length; i += 200) {
      const batch = plain.slice(i, i + 200);
      const stats = parseStructList((await this.#session.run(['lstatnslist', parsed.path, batch.join(' ')], signal)).stdout);
      batch.forEach((name, k) => entries.push(toEntry(this.guestPath(parsed.fs, posix.join(parsed.path, name)), stats[k])));
    }
    for (const name of odd) entries.push(toEntry(this.guestPath(parsed.fs, posix.join(parsed.path, name)), await this.#stat({ fs: parsed.fs, path: posix.join(parsed.path, name) }, signal)));
    return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Paths whose name matches the glob, across every browsable file system (or the one of `under`). */
  async find(pattern: string, under?: string, signal?: AbortSignal): Promise<string[]> {
    const regexp = globToRegExp(pattern);
    const roots = under === undefined ? this.filesystems.filter((f) => f.browsable).map((fs) => ({ fs, path: '/' })) : [this.parsePath(under)];
    const found: string[] = [];
    for (const root of roots) {
      await this.#mount(root.fs, signal);
      await this.#stat(root, signal);
      const listed = (await this.#session.run(['find', root.path], signal)).stdout.split('\n').filter((n) => n !== '');
      for (const relative of listed) {
        if (regexp.test(posix.basename(relative))) found.push(this.guestPath(root.fs, posix.join(root.path, relative)));
      }
    }
    return found.sort();
  }

  /**
   * Copies files or whole trees into `toDir` (each as toDir/<its name>). Directories keep mode,
   * times and (as root) owners through the engine's tar; a single file gets its mode and times set
   * here (owner too when running as root).
   */
  async get(paths: string[], toDir: string, signal?: AbortSignal): Promise<Array<{ path: string; to: string; kind: GuestEntryKind }>> {
    await mkdir(toDir, { recursive: true });
    const copied: Array<{ path: string; to: string; kind: GuestEntryKind }> = [];
    for (const text of paths) {
      const parsed = this.parsePath(text);
      await this.#mount(parsed.fs, signal);
      const stat = toEntry(this.guestPath(parsed.fs, parsed.path), await this.#stat(parsed, signal));
      const to = join(toDir, parsed.path === '/' ? (parsed.fs.volume !== null ? `volume-${parsed.fs.volume.replace('/', '-')}` : `partition-${parsed.fs.partition ?? 'disk'}`) : basename(parsed.path));
      if (stat.kind === 'directory') {
        await mkdir(to, { recursive: true });
        // copy-out of a directory writes DIR/<basename>; tar-out of its content keeps the names we chose.
        await this.#extractTar(parsed.path, to, signal);
      } else if (stat.kind === 'file') {
        await this.#session.run(['download', parsed.path, to], signal);
        await keepMetadata(to, stat);
      } else {
        await this.#session.run(['copy-out', parsed.path, toDir], signal);
      }
      copied.push({ path: stat.path, to, kind: stat.kind });
    }
    return copied;
  }

  async #extractTar(path: string, to: string, signal?: AbortSignal): Promise<void> {
    const { stdout, done } = await this.#session.stream(['tar-out', path, '-', 'numericowner:true'], signal);
    const untar = spawn('tar', ['-x', '-f', '-', '-C', to, ...(process.getuid?.() === 0 ? ['--same-owner', '--numeric-owner'] : ['--no-same-owner'])], { stdio: ['pipe', 'ignore', 'pipe'], signal });
    let stderr = '';
    untar.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    stdout.pipe(untar.stdin);
    const untarDone = new Promise<void>((resolve, reject) => {
      untar.on('error', reject);
      untar.on('close', (code) => (code === 0 ? resolve() : reject(new FilesError('FILES_ENGINE_FAILED', `tar could not extract ${path} into ${to}: ${stderr.trim()}`, { path, to }))));
    });
    await Promise.all([done, untarDone]);
  }

  /** Writes a tar of the paths (each as <its name>/...) to `out`, through a temporary extraction. */
  async tar(paths: string[], out: NodeJS.WritableStream, signal?: AbortSignal): Promise<void> {
    const staging = await mkdtemp(join(tmpdir(), 'vcbt-files-tar-'));
    try {
      const copied = await this.get(paths, staging, signal);
      const names = copied.map((c) => basename(c.to));
      const child = spawn('tar', ['-c', '-f', '-', '--numeric-owner', '-C', staging, '--', ...names], { stdio: ['ignore', 'pipe', 'pipe'], signal });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.stdout.pipe(out, { end: false });
      await new Promise<void>((resolve, reject) => {
        child.on('error', reject);
        child.on('close', (code) => (code === 0 ? resolve() : reject(new FilesError('FILES_ENGINE_FAILED', `tar failed: ${stderr.trim()}`, {}))));
      });
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }
}

/** The prefix a guest path uses for a file system: `N`, `VG/LV`, or null for the whole disk. */
export function prefixOf(fs: GuestFileSystem): string | null {
  return fs.volume ?? (fs.partition === null ? null : String(fs.partition));
}

function parseStructListSingle(text: string): Array<Record<string, string>> {
  // A single struct prints without the `[i] = {` wrapper: `field: value` lines.
  const fields: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const match = /^([a-z_]+): (.*)$/.exec(line);
    if (match) fields[match[1]] = match[2];
  }
  return [fields];
}

function toEntry(path: string, stat: Record<string, string>): GuestEntry {
  const mode = Number(stat.st_mode);
  return {
    name: path === '/' || path.endsWith(':/') ? '/' : posix.basename(path.replace(/^[^:]*:/, '')),
    path,
    kind: kindOfMode(mode),
    sizeBytes: Number(stat.st_size),
    mode,
    uid: Number(stat.st_uid),
    gid: Number(stat.st_gid),
    modifiedAt: new Date(Number(stat.st_mtime_sec) * 1000 + Math.floor(Number(stat.st_mtime_nsec ?? 0) / 1e6)).toISOString(),
  };
}

async function keepMetadata(to: string, stat: GuestEntry): Promise<void> {
  await chmod(to, stat.mode & 0o7777);
  const seconds = Date.parse(stat.modifiedAt) / 1000;
  await utimes(to, seconds, seconds);
  if (process.getuid?.() === 0) await chown(to, stat.uid, stat.gid).catch(() => undefined);
  await lstat(to);
}

/** Partitions and their file systems; the whole disk when there is no partition table. */
async function discover(session: GuestfishSession, signal?: AbortSignal): Promise<GuestFileSystem[]> {
  const devices = (await session.run(['list-devices'], signal)).stdout.split('\n').filter((d) => d !== '');
  const disk = devices[0] ?? '/dev/sda';
  const partitions = (await session.run(['list-partitions'], signal)).stdout.split('\n').filter((d) => d !== '');
  const found: GuestFileSystem[] = [];
  if (partitions.length === 0) {
    const sizeBytes = Number((await session.run(['blockdev-getsize64', disk], signal)).stdout.trim());
    found.push({ partition: null, volume: null, device: disk, type: (await session.run(['vfs-type', disk], signal).catch(() => ({ stdout: '' }))).stdout.trim(), sizeBytes, browsable: false });
  } else {
    // One part-list for numbers and sizes (a remote command costs 0.1-0.4 s in TCG), then the types.
    const table = parseStructList((await session.run(['part-list', disk], signal)).stdout);
    for (const row of table) {
      const device = partitions.find((d) => d === `${disk}${row.part_num}`) ?? `${disk}${row.part_num}`;
      found.push({ partition: Number(row.part_num), volume: null, device, type: (await session.run(['vfs-type', device], signal)).stdout.trim(), sizeBytes: Number(row.part_size), browsable: false });
    }
  }
  // LVM: libguestfs activates the volume groups it finds at launch; each logical volume is a
  // file system of its own (named VG/LV), after the partitions that hold them.
  if (found.some((f) => f.type === 'LVM2_member')) {
    const volumes = (await session.run(['lvs'], signal)).stdout.split('\n').filter((d) => /^\/dev\/[^/]+\/[^/]+$/.test(d));
    for (const device of volumes) {
      const sizeBytes = Number((await session.run(['blockdev-getsize64', device], signal)).stdout.trim());
      found.push({ partition: null, volume: device.slice('/dev/'.length), device, type: (await session.run(['vfs-type', device], signal)).stdout.trim(), sizeBytes, browsable: false });
    }
  }
  for (const fs of found) fs.browsable = MOUNTABLE.has(fs.type);
  if (partitions.length === 0 && found[0].type === '') {
    throw new FilesError('FILES_NO_FILESYSTEM', 'the disk has no partition table and no file system the engine recognises', { device: disk });
  }
  return found;
}
