// How a long job talks to the terminal: event lines on stderr and one progress bar per disk
// (src/cli/progress.ts); with --json both stay silent so stdout carries only the result.
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
      if (!json) io.stderr.write(`${line}\n`);
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
