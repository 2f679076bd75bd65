// The `vcbt` command line: dispatches to one command, maps errors to exit codes and
// prints them as `vcbt: CODE: message`. Ctrl-C / SIGTERM abort the command's signal so
// jobs can clean up (remove snapshots, release locks) before the process exits.
import { ExitCode, type CommandIo } from './command.ts';
import { commands } from './commands/index.ts';
import { isVcbtError } from '../errors.ts';

function helpText(): string {
  const width = Math.max(...commands.map((c) => c.name.length), 4);
  const lines = commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return [
    'vcbt: incremental backup and replication of vSphere VMs with Changed Block Tracking',
    '',
    'usage: vcbt <command> [flags]     (vcbt <command> --help for its flags)',
    '',
    'commands:',
    ...lines,
    '',
    'Secrets come from VCBT_PASSWORD / VCBT_PASSPHRASE or --password-file, never from argv.',
  ].join('\n');
}

export async function main(argv: string[], partialIo: Partial<CommandIo> = {}): Promise<ExitCode> {
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(130); // second Ctrl-C: give up cleaning
    controller.abort(new Error(`interrupted by ${signal}`));
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
  const command = commands.find((c) => c.name === name);
  if (!command) {
    io.stderr.write(`vcbt: USAGE: unknown command "${name}"\n\n${helpText()}\n`);
    return ExitCode.usage;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout.write(`${command.usage}\n`);
    return ExitCode.ok;
  }
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await command.run(rest, io);
  } catch (error) {
    const nodeCode = (error as { code?: unknown }).code;
    if (typeof nodeCode === 'string' && nodeCode.startsWith('ERR_PARSE_ARGS')) {
      // node:util parseArgs: unknown flag, missing value, unexpected positional argument.
      io.stderr.write(`vcbt ${name}: USAGE: ${(error as Error).message}\n(vcbt ${name} --help lists the flags)\n`);
      return ExitCode.usage;
    }
    if (isVcbtError(error)) {
      io.stderr.write(`vcbt ${name}: ${error.code}: ${error.message}\n`);
      return error.code === 'USAGE' ? ExitCode.usage : ExitCode.failure;
    }
    io.stderr.write(`vcbt ${name}: INTERNAL: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    return ExitCode.failure;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
