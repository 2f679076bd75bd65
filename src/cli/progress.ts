// Progress display for long copies: a redrawn one-line bar on a TTY (bytes done/total,
// rate, ETA), plain log lines at most every logIntervalMs otherwise, nothing with --json
// (stdout is then reserved for the result document).

export interface Progress {
  update(doneBytes: number, totalBytes: number): void;
  finish(): void;
}

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

export function createProgress(label: string, stream: NodeJS.WritableStream & { isTTY?: boolean }, options: { quiet?: boolean; logIntervalMs?: number } = {}): Progress {
  if (options.quiet) return { update() {}, finish() {} };
  const started = performance.now();
  const logIntervalMs = options.logIntervalMs ?? 10_000;
  // Plain logs start after one interval: short jobs print no progress at all.
  let lastDrawMs = stream.isTTY ? -Infinity : started;
  let last = { done: 0, total: 0 };
  const line = () => {
    const elapsedS = (performance.now() - started) / 1000;
    const rate = elapsedS > 0 ? last.done / elapsedS : 0;
    const pct = last.total > 0 ? (100 * last.done) / last.total : 100;
    const eta = rate > 0 ? (last.total - last.done) / rate : Infinity;
    return { pct, text: `${label} ${formatBytes(last.done)} / ${formatBytes(last.total)} ${pct.toFixed(1)}% ${formatBytes(rate)}/s ETA ${formatSeconds(eta)}` };
  };
  return {
    update(done, total) {
      last = { done, total };
      const now = performance.now();
      if (stream.isTTY) {
        if (now - lastDrawMs < 100) return;
        const { pct, text } = line();
        const width = 24;
        const filled = Math.round((pct / 100) * width);
        stream.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${text}\x1b[K`);
      } else {
        if (now - lastDrawMs < logIntervalMs) return;
        stream.write(`${line().text}\n`);
      }
      lastDrawMs = now;
    },
    finish() {
      if (stream.isTTY) stream.write(`\r${line().text}\x1b[K\n`);
    },
  };
}
