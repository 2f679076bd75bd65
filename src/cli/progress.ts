// Progress and log lines of long commands on stderr. Terms:
// - terminal: one stderr, shared by the log lines and the progress bars of one command.
// - status line: on a TTY, the last line of the terminal, redrawn in place, showing every
//   running bar (`disk 2000 [####....] 1.2 GiB / 4.0 GiB 30.0% 120 MiB/s ETA 0:25 | disk 2001 ...`).
//   A log line is printed above it: the status line is cleared, the log line written, the
//   status line redrawn, so a log line never lands inside a bar and a bar never hides one.
// - plain output (not a TTY): log lines carry an ISO 8601 timestamp; a bar prints a
//   timestamped line at most every progressIntervalMs (none before the first interval, so
//   short jobs print no progress at all).
// - quiet (--json): no bars; log lines still go to stderr (a script keeps the log), stdout
//   carries only the document.

export interface Progress {
  update(done: number, total: number): void;
  /** Ends the bar: on a TTY its final state stays as a line above the status line. */
  finish(): void;
}

export interface Terminal {
  /** One event line (a snapshot taken, a disk's plan, a warning). */
  log(line: string): void;
  /** A new bar labelled `label` (counts bytes, or items with unit 'count'). */
  progress(label: string, options?: { unit?: 'bytes' | 'count' }): Progress;
}

export interface TerminalOptions {
  quiet?: boolean;
  /** Plain output: seconds between progress lines of one bar (--progress-interval). */
  progressIntervalMs?: number;
  /** Clock for timestamps (tests). */
  now?: () => Date;
}

export const DEFAULT_PROGRESS_INTERVAL_MS = 10_000;
/** A TTY bar is redrawn at most this often: more is flicker and wasted writes. */
const TTY_REDRAW_MS = 100;
const BAR_WIDTH = 20;
const MiB = 1024 * 1024;

function formatBytes(bytes: number): string {
  if (bytes >= 1024 * MiB) return `${(bytes / (1024 * MiB)).toFixed(2)} GiB`;
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--:--';
  const s = Math.round(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

type Stream = NodeJS.WritableStream & { isTTY?: boolean };

export function createTerminal(stream: Stream, options: TerminalOptions = {}): Terminal {
  const quiet = options.quiet ?? false;
  const tty = stream.isTTY === true;
  const intervalMs = options.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS;
  const now = options.now ?? (() => new Date());
  /** TTY: the text of every running bar, in start order. */
  const segments = new Map<object, string>();
  let statusShown = false;
  let lastRedrawMs = -Infinity;

  const statusText = () => [...segments.values()].join(' | ');
  const redraw = () => {
    const text = statusText();
    stream.write(`\r${text}\x1b[K`);
    statusShown = text !== '';
  };
  const clearStatus = () => {
    if (statusShown) stream.write('\r\x1b[K');
    statusShown = false;
  };
  const printLine = (line: string) => {
    if (tty) {
      clearStatus();
      stream.write(`${line}\n`);
      if (segments.size > 0) redraw();
    } else {
      stream.write(`${now().toISOString()} ${line}\n`);
    }
  };

  return {
    log(line) {
      printLine(line);
    },
    progress(label, barOptions = {}) {
      if (quiet) return { update() {}, finish() {} };
      const unit = barOptions.unit ?? 'bytes';
      const key = {};
      const started = performance.now();
      let lastPlainMs = started;
      let last = { done: 0, total: 0 };
      const describe = () => {
        const elapsedS = (performance.now() - started) / 1000;
        const rate = elapsedS > 0 ? last.done / elapsedS : 0;
        const pct = last.total > 0 ? (100 * last.done) / last.total : 100;
        const eta = rate > 0 ? (last.total - last.done) / rate : Infinity;
        const amount = unit === 'bytes' ? `${formatBytes(last.done)} / ${formatBytes(last.total)}` : `${last.done} / ${last.total}`;
        const speed = unit === 'bytes' ? `${formatBytes(rate)}/s` : `${rate.toFixed(0)}/s`;
        return { pct, text: `${amount} ${pct.toFixed(1)}% ${speed} ETA ${formatSeconds(eta)}` };
      };
      return {
        update(done, total) {
          last = { done, total };
          const nowMs = performance.now();
          if (tty) {
            const { pct, text } = describe();
            const filled = Math.round((Math.min(pct, 100) / 100) * BAR_WIDTH);
            segments.set(key, `${label} [${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${text}`);
            if (nowMs - lastRedrawMs < TTY_REDRAW_MS) return;
            lastRedrawMs = nowMs;
            redraw();
          } else if (nowMs - lastPlainMs >= intervalMs) {
            lastPlainMs = nowMs;
            printLine(`${label} ${describe().text}`);
          }
        },
        finish() {
          if (!tty || !segments.has(key)) return;
          segments.delete(key);
          printLine(`${label} ${describe().text}`);
          if (segments.size === 0) clearStatus();
        },
      };
    },
  };
}

/** A terminal with one bar (apply, restore, verify). */
export function createProgress(label: string, stream: Stream, options: TerminalOptions & { unit?: 'bytes' | 'count' } = {}): Progress {
  return createTerminal(stream, options).progress(label, { unit: options.unit });
}
