// What a CLI command is: a name, a one-line summary, usage text and a run function that
// receives the arguments after the command name and returns an exit code.
// Commands parse their flags with parseFlags (node:util parseArgs, strict, one value per non-repeatable flag) and hold no business logic:
// they call into src/jobs (or the layer a job would call) and format the result.

export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  /** Some VMs or disks failed, others succeeded. */
  partial: 3,
  /** Stopped by SIGINT (128 + 2, the shell's convention). */
  interrupted: 130,
  /** Stopped by SIGTERM (128 + 15). */
  terminated: 143,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** The exit code of a command stopped by `signal`. */
export function exitCodeAfterSignal(signal: NodeJS.Signals): ExitCode {
  return signal === 'SIGTERM' ? ExitCode.terminated : ExitCode.interrupted;
}

export interface CommandIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
  signal: AbortSignal;
}

export interface Command {
  name: string;
  summary: string;
  usage: string;
  run(args: string[], io: CommandIo): Promise<ExitCode>;
}
