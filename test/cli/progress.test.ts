// Progress bars and log lines share stderr: on a TTY a log line goes above the redrawn status
// line; elsewhere every line carries an ISO timestamp and progress comes at the interval.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { createTerminal } from '../../src/cli/progress.ts';
import { parseProgressInterval } from '../../src/cli/flags.ts';

function capture(isTTY: boolean): { stream: PassThrough & { isTTY?: boolean }; text: () => string } {
  const stream: PassThrough & { isTTY?: boolean } = new PassThrough();
  stream.isTTY = isTTY;
  let out = '';
  stream.on('data', (d: Buffer) => (out += d.toString()));
  return { stream, text: () => out };
}

/** What a terminal shows: \r moves to column 0, \x1b[K clears to the end of the line, text overwrites. */
function screen(raw: string): string[] {
  const lines = [''];
  let column = 0;
  // eslint-disable-next-line no-control-regex -- terminal control codes are what is tested
  for (const part of raw.split(/(\r|\n|\x1b\[K)/)) {
    const row = lines.length - 1;
    if (part === '\r') column = 0;
    else if (part === '\n') {
      lines.push('');
      column = 0;
    } else if (part === '\x1b[K') lines[row] = lines[row].slice(0, column);
    else {
      lines[row] = lines[row].slice(0, column) + part + lines[row].slice(column + part.length);
      column += part.length;
    }
  }
  return lines;
}

test('progress on a TTY: a log line is printed above the bar, never inside it, and the bar is redrawn', () => {
  const { stream, text } = capture(true);
  const terminal = createTerminal(stream);
  const bar = terminal.progress('disk 2000');
  bar.update(1024 * 1024, 4 * 1024 * 1024);
  terminal.log('VM "web": snapshot-20 taken');
  const raw = text();
  // The log line starts on a cleared line and is followed by a redraw of the bar.
  // eslint-disable-next-line no-control-regex -- terminal control codes are what is tested
  assert.match(raw, /\r\x1b\[KVM "web": snapshot-20 taken\n\rdisk 2000 \[#####\.+\] 1\.0 MiB \/ 4\.0 MiB 25\.0%/);
  const shown = screen(raw);
  assert.equal(shown[0], 'VM "web": snapshot-20 taken');
  assert.match(shown[1], /^disk 2000 \[/);
  bar.finish();
  const final = screen(text());
  assert.match(final.at(-2) ?? '', /^disk 2000 1\.0 MiB \/ 4\.0 MiB 25\.0%/, 'the finished bar stays as a line');
  assert.equal(final.at(-1), '', 'no status line is left behind');
});

test('progress on a TTY: two disks share one status line', () => {
  const { stream, text } = capture(true);
  const terminal = createTerminal(stream);
  terminal.progress('disk 2000').update(1, 2);
  terminal.progress('disk 2001').update(1, 4);
  terminal.log('both running'); // a log line redraws the status line with every bar
  const shown = screen(text());
  assert.deepEqual(shown.slice(0, 1), ['both running']);
  assert.match(shown[1], /^disk 2000 \[#{10}\.{10}\] .* \| disk 2001 \[#{5}\.{15}\] /);
});

test('progress off a TTY: every line has an ISO timestamp and progress prints at the interval', () => {
  const { stream, text } = capture(false);
  const terminal = createTerminal(stream, { progressIntervalMs: 0, now: () => new Date('2026-01-02T03:04:05.678Z') });
  terminal.log('snapshot taken');
  terminal.progress('disk 2000').update(2 * 1024 * 1024, 4 * 1024 * 1024);
  assert.deepEqual(text().split('\n').slice(0, 2).map((l) => l.slice(0, 59)), [
    '2026-01-02T03:04:05.678Z snapshot taken',
    '2026-01-02T03:04:05.678Z disk 2000 2.0 MiB / 4.0 MiB 50.0% ',
  ]);
  // eslint-disable-next-line no-control-regex -- terminal control codes are what is tested
  assert.doesNotMatch(text(), /\r|\x1b/, 'no terminal control characters in a log file');
});

test('progress: with --json (quiet) no bar is drawn, event lines still are; counts for verify', () => {
  const { stream, text } = capture(true);
  const terminal = createTerminal(stream, { quiet: true });
  terminal.progress('disk 2000').update(1, 2);
  assert.equal(text(), '');
  terminal.log('snapshot taken');
  assert.equal(text(), 'snapshot taken\n');
  const counted = capture(false);
  createTerminal(counted.stream, { progressIntervalMs: 0, now: () => new Date(0) }).progress('verify: chunks', { unit: 'count' }).update(256, 1024);
  assert.match(counted.text(), /^1970-01-01T00:00:00\.000Z verify: chunks 256 \/ 1024 25\.0% /);
});

test('progress: --progress-interval takes seconds', () => {
  assert.equal(parseProgressInterval('2.5'), 2500);
  assert.equal(parseProgressInterval(undefined), undefined);
  assert.throws(() => parseProgressInterval('0'), { code: 'USAGE' });
  assert.throws(() => parseProgressInterval('soon'), { code: 'USAGE' });
});
