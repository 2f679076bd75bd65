// Starts `vcbt serve --config FILE` as a child process and waits for its "API listening on URL"
// line (the daemon's stderr goes to `onLog` as it comes): the tests of the API, the service,
// the console and the file browser all drive the daemon this way.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const bin = join(import.meta.dirname, '../../bin/vcbt.ts');

export async function startServe(configFile: string, onLog: (text: string) => void, env?: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; base: string }> {
  const child = spawn(process.execPath, [bin, 'serve', '--config', configFile], { stdio: ['ignore', 'ignore', 'pipe'], ...(env ? { env } : {}) });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => {
    log += d.toString();
    onLog(d.toString());
  });
  for (;;) {
    const match = /API listening on (https?:\/\/127\.0\.0\.1:\d+)/.exec(log);
    if (match) return { child, base: match[1] as string };
    assert.equal(child.exitCode, null, log);
    await sleep(20);
  }
}
