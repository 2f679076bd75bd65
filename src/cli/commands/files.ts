// `vcbt files ls|get|find`: browse and extract files of a restore point's disk (file-level
// restore). The job (src/jobs/files.ts) serves the disk over NBD on a private socket and reads
// it with libguestfs; every subcommand starts and stops both.
import { parseFlags } from '../flags.ts';
import { ExitCode, type Command, type CommandIo } from '../command.ts';
import { parsePositiveInteger } from '../flags.ts';
import { repositoryFlags, repositoryUsage, withRepository } from '../repository-flags.ts';
import { UsageError } from '../../errors.ts';
import { writeJsonDocument } from '../json-output.ts';
import { documentHeader } from '../json-documents.ts';
import { prefixOf, resolveFilesDisk, withFilesBrowser, type FilesBrowser, type GuestEntry, type GuestFileSystem } from '../../jobs/files.ts';
import { resolvePointId } from '../../jobs/restore-points.ts';

const usage = `usage: vcbt files ls   --repo DIR --point ID|latest [--vm VM] [--disk KEY] [PATH] [--json]
       vcbt files get  --repo DIR --point ID|latest [--vm VM] [--disk KEY] PATH... (--to DIR | --tar -) [--json]
       vcbt files find --repo DIR --point ID|latest [--vm VM] [--disk KEY] PATTERN [--under PATH] [--json]

File-level restore: reads the partitions and file systems of a restore point's disk (ext2/3/4,
XFS, Btrfs, NTFS, FAT, ..., also inside LVM logical volumes) without root and without mounting anything on this machine. vcbt
serves the disk read-only over NBD on a private socket and libguestfs's appliance reads it; both
stop when the command ends. Starting the appliance takes a few seconds with KVM, 12-20 s without.

  ls [PATH]              without PATH: the partitions and their file systems; with PATH: a
                         directory's entries (or one file) with mode, owner, size and time
  get PATH... --to DIR   copies files or whole trees into DIR (as DIR/<name>), keeping mode
                         and times (and owners when run as root)
  get PATH... --tar -    writes a tar archive of them to stdout instead
  find PATTERN           paths whose name matches PATTERN (* and ?, case-sensitive) on every
                         file system, or below --under PATH

  PATH                   /dir/file when the disk holds one file system (whole disk or a single
                         partition), else N:/dir/file with N the partition number ls shows,
                         or VG/LV:/dir/file for an LVM logical volume
  --point ID|latest      a restore point id (vcbt points), or the newest of --vm
  --vm VM                with --point latest: name, moref, instance UUID or repository id
  --disk KEY             device key of the disk (default: the point's only disk)
  --json                 print the result as a JSON document

${repositoryUsage}

environment: LIBGUESTFS_BACKEND_SETTINGS=force_tcg runs the appliance emulated from the start
(vcbt retries that way by itself when it cannot boot with KVM).`;

const modeLetters = (mode: number): string => {
  const kind = { 0o040000: 'd', 0o120000: 'l', 0o100000: '-' }[mode & 0o170000] ?? '?';
  let text = kind;
  for (let shift = 6; shift >= 0; shift -= 3) {
    const bits = (mode >> shift) & 7;
    text += (bits & 4 ? 'r' : '-') + (bits & 2 ? 'w' : '-') + (bits & 1 ? 'x' : '-');
  }
  return text;
};

function printFilesystems(io: CommandIo, filesystems: GuestFileSystem[]): void {
  io.stdout.write('PARTITION  TYPE         SIZE_BYTES  PATHS\n');
  for (const fs of filesystems) {
    const name = prefixOf(fs);
    const prefix = filesystems.length === 1 || name === null ? '/' : `${name}:/`;
    const note = fs.type === 'LVM2_member' ? '(LVM: see its volumes)' : '(not browsable)';
    io.stdout.write(`${(name ?? '-').padEnd(9)}  ${(fs.type || 'unknown').padEnd(11)}  ${String(fs.sizeBytes).padStart(10)}  ${fs.browsable ? prefix : note}\n`);
  }
}

function printEntries(io: CommandIo, entries: GuestEntry[]): void {
  for (const e of entries) {
    io.stdout.write(`${modeLetters(e.mode)} ${`${e.uid}/${e.gid}`.padEnd(11)} ${String(e.sizeBytes).padStart(12)} ${e.modifiedAt.replace(/\.\d+Z$/, 'Z')} ${e.name}${e.kind === 'directory' ? '/' : ''}\n`);
  }
}

export const filesCommand: Command = {
  name: 'files',
  summary: 'list, find and extract files in a restore point (file-level restore)',
  usage,
  async run(args, io) {
    const [sub, ...rest] = args;
    if (sub !== 'ls' && sub !== 'get' && sub !== 'find') throw new UsageError(`files needs a subcommand: ls, get or find\n\n${usage}`);
    const { values, positionals } = parseFlags({
      args: rest,
      strict: true,
      allowPositionals: true,
      options: {
        ...repositoryFlags,
        point: { type: 'string' },
        vm: { type: 'string' },
        disk: { type: 'string' },
        to: { type: 'string' },
        tar: { type: 'string' },
        under: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
    });
    if (!values.point) throw new UsageError(`files ${sub} needs --point ID (or latest with --vm)\n\n${usage}`);
    const deviceKey = values.disk === undefined ? undefined : parsePositiveInteger(values.disk, '--disk');
    if (sub === 'ls' && positionals.length > 1) throw new UsageError('files ls takes at most one PATH');
    if (sub === 'find' && positionals.length !== 1) throw new UsageError('files find takes one PATTERN');
    if (sub === 'get') {
      if (positionals.length === 0) throw new UsageError('files get needs at least one PATH');
      if ((values.to === undefined) === (values.tar === undefined)) throw new UsageError('files get needs either --to DIR or --tar -');
      if (values.tar !== undefined && values.tar !== '-') throw new UsageError('--tar takes - (stdout); use --to DIR to write files');
      if (values.tar !== undefined && values.json) throw new UsageError('--tar - writes the archive to stdout: it cannot be combined with --json');
    }
    if (sub !== 'get' && (values.to !== undefined || values.tar !== undefined)) throw new UsageError(`--to and --tar belong to files get, not files ${sub}`);
    if (sub !== 'find' && values.under !== undefined) throw new UsageError('--under belongs to files find');
    await withRepository(values, io, async (repository) => {
      const pointId = await resolvePointId(repository, values.point as string, values.vm);
      const key = await resolveFilesDisk(repository, pointId, deviceKey);
      const open = { repository, pointId, deviceKey: key, env: io.env, signal: io.signal, onNotice: (text: string) => io.stderr.write(`vcbt files: ${text}\n`) };
      await withFilesBrowser(open, async (browser: FilesBrowser) => {
        const where = { pointId: browser.pointId, deviceKey: browser.deviceKey };
        if (sub === 'ls') {
          const path = positionals[0];
          const entries = path === undefined ? null : await browser.list(path, io.signal);
          if (values.json) writeJsonDocument(io, { ...documentHeader('files-ls'), ...where, filesystems: browser.filesystems, path: path ?? null, entries });
          else if (entries === null) printFilesystems(io, browser.filesystems);
          else printEntries(io, entries);
        } else if (sub === 'find') {
          const paths = await browser.find(positionals[0], values.under, io.signal);
          if (values.json) writeJsonDocument(io, { ...documentHeader('files-find'), ...where, pattern: positionals[0], paths });
          else for (const path of paths) io.stdout.write(`${path}\n`);
        } else if (values.tar !== undefined) {
          await browser.tar(positionals, io.stdout, io.signal);
        } else {
          const copied = await browser.get(positionals, values.to as string, io.signal);
          if (values.json) writeJsonDocument(io, { ...documentHeader('files-get'), ...where, copied });
          else for (const c of copied) io.stderr.write(`${c.path} -> ${c.to}\n`);
        }
      });
    });
    return ExitCode.ok;
  },
};
