// How a long job talks to the terminal: event lines on stderr and one progress bar per disk
// (src/cli/progress.ts); with --json the bars stay silent (stdout carries only the result) and
// event lines still go to stderr, so a script keeps the log of what happened.
import type { CommandIo } from './command.ts';
import { createProgress, type Progress } from './progress.ts';

export interface JobReporter {
  onEvent(line: string): void;
  onProgress(deviceKey: number, doneBytes: number, totalBytes: number): void;
  /** Closes the progress bars (call once the job is done). */
  finish(): void;
}

export function jobReporter(io: CommandIo, json: boolean): JobReporter {
  const bars = new Map<number, Progress>();
  return {
    onEvent: (line) => {
      io.stderr.write(`${line}\n`);
    },
    onProgress: (deviceKey, doneBytes, totalBytes) => {
      let bar = bars.get(deviceKey);
      if (!bar) bars.set(deviceKey, (bar = createProgress(`disk ${deviceKey}`, io.stderr, { quiet: json })));
      bar.update(doneBytes, totalBytes);
    },
    finish: () => {
      for (const bar of bars.values()) bar.finish();
    },
  };
}

/** A job's result as the --json document on stdout (elapsed time in whole milliseconds). */
export function writeJsonResult(io: CommandIo, result: { elapsedMs: number }): void {
  io.stdout.write(`${JSON.stringify({ ...result, elapsedMs: Math.round(result.elapsedMs) }, null, 2)}\n`);
}
