// The `vcbt` command line: dispatches to one command, maps errors to exit codes and
// prints them as `vcbt <command>: CODE: message` (and, with --json, as an error document on
// stdout). Ctrl-C / SIGTERM abort the command's signal so jobs can clean up (remove
// snapshots, release locks) before the process exits with 130 / 143.
//
// Only a bug prints a stack trace (code INTERNAL): an expected condition that arrives as a
// plain Node error (a path that cannot be opened, a full file system) is named here with
// the path it concerns (FILE_ACCESS, NO_SPACE).
import { readFileSync } from 'node:fs';
import { ExitCode, exitCodeAfterSignal, type CommandIo } from './command.ts';
import { commands } from './commands/index.ts';
import { errorDocument, writeJsonDocument } from './json-output.ts';
import { UsageError, VcbtError, isVcbtError } from '../errors.ts';

/** The version in package.json (the one place it is written down). */
export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function helpText(): string {
  const width = Math.max(...commands.map((c) => c.name.length), 4);
  const lines = commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return [
    'vcbt: incremental backup and replication of vSphere VMs with Changed Block Tracking',
    '',
    'usage: vcbt <command> [flags]     (vcbt <command> --help for its flags)',
    '       vcbt --version',
    '',
    'commands:',
    ...lines,
    '',
    'Secrets come from VCBT_PASSWORD / VCBT_PASSPHRASE or --password-file, never from argv.',
    'Exit codes: 0 success, 1 failure, 2 usage, 3 partial failure, 130 SIGINT, 143 SIGTERM.',
  ].join('\n');
}

// Node's file-system errno codes that mean "this path cannot be used as asked": the user's
// input or environment, never a bug of ours.
const pathErrnos = new Set(['EACCES', 'EPERM', 'ENOENT', 'ENOTDIR', 'EISDIR', 'EROFS', 'EEXIST', 'ENOTEMPTY', 'ELOOP', 'ENAMETOOLONG', 'EMFILE', 'ENFILE', 'EBUSY', 'ETXTBSY', 'EXDEV', 'EFBIG', 'EIO', 'ENXIO', 'ENODEV']);
const spaceErrnos = new Set(['ENOSPC', 'EDQUOT']);
const errnoText: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOENT: 'no such file or directory',
  ENOTDIR: 'a path component is not a directory',
  EISDIR: 'is a directory',
  EROFS: 'read-only file system',
  EEXIST: 'already exists',
  ENOTEMPTY: 'directory not empty',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
};

/** A thrown value as the VcbtError the user sees; undefined for a bug (INTERNAL). */
export function describeError(error: unknown): VcbtError | undefined {
  if (isVcbtError(error)) return error;
  const e = error as (Partial<NodeJS.ErrnoException> & { dest?: unknown }) | null;
  const code = typeof e?.code === 'string' ? e.code : undefined;
  if (code === undefined) return undefined;
  if (code.startsWith('ERR_PARSE_ARGS')) return new UsageError(String(e?.message)); // node:util parseArgs
  if (!pathErrnos.has(code) && !spaceErrnos.has(code)) return undefined;
  const path = typeof e?.path === 'string' ? e.path : undefined;
  const dest = typeof e?.dest === 'string' ? e.dest : undefined;
  const syscall = typeof e?.syscall === 'string' ? e.syscall : undefined;
  const what = errnoText[code] ?? code;
  const where = path === undefined ? '' : ` ${path}${dest === undefined ? '' : ` -> ${dest}`}`;
  const context = { path, dest, errno: code, syscall };
  if (spaceErrnos.has(code)) return new VcbtError('NO_SPACE', `${syscall ?? 'write'}${where}: ${what}`, context, { cause: error });
  return new VcbtError('FILE_ACCESS', `cannot ${syscall ?? 'use'}${where}: ${what} (${code})`, context, { cause: error });
}

function wantsJson(args: readonly string[]): boolean {
  return args.includes('--json') || args.includes('--format=json') || args.join(' ').includes('--format json');
}

export async function main(argv: string[], partialIo: Partial<CommandIo> = {}): Promise<ExitCode> {
  const controller = new AbortController();
  let stoppedBy: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stoppedBy !== undefined) process.exit(exitCodeAfterSignal(signal)); // second signal: give up cleaning
    stoppedBy = signal;
    controller.abort(new VcbtError('INTERRUPTED', `stopped by ${signal}`, { signal }));
  };
  const io: CommandIo = {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    signal: controller.signal,
    ...partialIo,
  };
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    io.stdout.write(helpText() + '\n');
    return name === undefined ? ExitCode.usage : ExitCode.ok;
  }
  if (name === '--version' || name === 'version') {
    io.stdout.write(`vcbt ${version()}\n`);
    return ExitCode.ok;
  }
  const entry = commands.find((c) => c.name === name);
  if (!entry) {
    io.stderr.write(`vcbt: USAGE: unknown command "${name}"\n\n${helpText()}\n`);
    return ExitCode.usage;
  }
  const command = await entry.load();
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout.write(`${command.usage}\n`);
    return ExitCode.ok;
  }
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await command.run(rest, io);
  } catch (thrown) {
    // A command that fails once it was told to stop failed because of the stop.
    const reason: unknown = io.signal.aborted ? io.signal.reason : undefined;
    const signal = stoppedBy ?? (isVcbtError(reason) && reason.code === 'INTERRUPTED' ? (reason.context.signal as NodeJS.Signals) : undefined);
    const error = describeError(thrown) ?? (signal !== undefined ? describeError(reason) : undefined);
    const exitCode: ExitCode = signal !== undefined ? exitCodeAfterSignal(signal) : error?.code === 'USAGE' ? ExitCode.usage : ExitCode.failure;
    if (error === undefined) {
      io.stderr.write(`vcbt ${name}: INTERNAL: ${thrown instanceof Error ? (thrown.stack ?? thrown.message) : String(thrown)}\n`);
    } else {
      const hint = error.code === 'USAGE' && !error.message.includes('usage:') ? `\n(vcbt ${name} --help lists the flags)` : '';
      io.stderr.write(`vcbt ${name}: ${error.code}: ${error.message}${hint}\n`);
    }
    if (wantsJson(rest)) writeJsonDocument(io, errorDocument(name, error, thrown, exitCode));
    return exitCode;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
