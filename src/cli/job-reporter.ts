// How a long job talks to the terminal: event lines and one progress bar per disk on stderr,
// through one Terminal (src/cli/progress.ts) so that log lines print above the bars; with
// --json the bars stay silent (stdout carries only the result document) and the event lines
// still go to stderr.
import type { CommandIo } from './command.ts';
import { createTerminal, type Progress } from './progress.ts';

export interface JobReporter {
  onEvent(line: string): void;
  onProgress(deviceKey: number, doneBytes: number, totalBytes: number): void;
  /** Closes the progress bars (call once the job is done). */
  finish(): void;
}

export function jobReporter(io: CommandIo, json: boolean, options: { progressIntervalMs?: number } = {}): JobReporter {
  const terminal = createTerminal(io.stderr, { quiet: json, progressIntervalMs: options.progressIntervalMs });
  const bars = new Map<number, Progress>();
  return {
    onEvent: (line) => terminal.log(line),
    onProgress: (deviceKey, doneBytes, totalBytes) => {
      let bar = bars.get(deviceKey);
      if (!bar) bars.set(deviceKey, (bar = terminal.progress(`disk ${deviceKey}`)));
      bar.update(doneBytes, totalBytes);
    },
    finish: () => {
      for (const bar of bars.values()) bar.finish();
    },
  };
}
