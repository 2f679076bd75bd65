// Real NBD peers for tests: nbdkit and qemu-nbd started on a private unix socket (or a TCP
// port), waited for until they serve, and stopped by pid. Plus small helpers (temp dirs,
// sha256, running the libnbd/qemu command line tools).

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, access, readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Peer {
  /** nbd+unix:// (or nbd://) URI of the default export. */
  uri: string;
  socketPath?: string;
  port?: number;
  /** Stop the server (SIGTERM, then SIGKILL after 2 s; or `signal` right away). */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'vcbt-nbd-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export async function sha256File(file: string): Promise<string> {
  return sha256(await readFile(file));
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function waitFor(file: string, child: ChildProcess, stderr: () => string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (child.exitCode !== null) throw new Error(`peer exited early (${child.exitCode}): ${stderr()}`);
    try {
      await access(file);
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  throw new Error(`peer did not start: ${stderr()}`);
}

async function startPeer(command: string, args: string[], dir: string, readyFile: string, uri: string, extra: Partial<Peer>): Promise<Peer> {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  await waitFor(readyFile, child, () => stderr);
  return {
    uri,
    ...extra,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill(signal);
        // nbdkit waits for connected clients on SIGTERM; a test that already failed may not
        // have closed its client.
        const kill = setTimeout(() => child.kill('SIGKILL'), 2000);
        await exited;
        clearTimeout(kill);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface NbdkitOptions {
  tcp?: boolean;
  readOnly?: boolean;
  /** Options placed before the plugin (e.g. --filter=error, --tls=require). */
  before?: string[];
  exportName?: string;
  /** Listen on this unix socket (e.g. to restart a server where clients expect it). */
  socketPath?: string;
}

/** nbdkit with `plugin` and its arguments, e.g. startNbdkit(['memory', '64M']). */
export async function startNbdkit(pluginArgs: string[], options: NbdkitOptions = {}): Promise<Peer> {
  const dir = await mkdtemp(path.join(tmpdir(), 'vcbt-nbdkit-'));
  const pidFile = path.join(dir, 'pid');
  const socketPath = options.socketPath ?? path.join(dir, 'sock');
  const args = ['-f', '-P', pidFile, ...(options.readOnly ? ['-r'] : []), ...(options.before ?? [])];
  const exportPath = encodeURIComponent(options.exportName ?? '');
  if (options.tcp) {
    const port = await freePort();
    args.push('-i', '127.0.0.1', '-p', String(port));
    return startPeer('nbdkit', [...args, ...pluginArgs], dir, pidFile, `nbd://127.0.0.1:${port}/${exportPath}`, { port });
  }
  args.push('-U', socketPath);
  return startPeer('nbdkit', [...args, ...pluginArgs], dir, pidFile, `nbd+unix:///${exportPath}?socket=${socketPath}`, { socketPath });
}

/** qemu-nbd serving a raw file (persistent, several clients allowed). */
export async function startQemuNbd(file: string, options: { readOnly?: boolean; tcp?: boolean } = {}): Promise<Peer> {
  const dir = await mkdtemp(path.join(tmpdir(), 'vcbt-qemu-nbd-'));
  const pidFile = path.join(dir, 'pid');
  const socketPath = path.join(dir, 'sock');
  const args = ['-f', 'raw', '-t', '--shared=8', '--pid-file', pidFile, ...(options.readOnly ? ['-r'] : [])];
  if (options.tcp) {
    const port = await freePort();
    return startPeer('qemu-nbd', [...args, '-b', '127.0.0.1', '-p', String(port), file], dir, pidFile, `nbd://127.0.0.1:${port}/`, { port });
  }
  return startPeer('qemu-nbd', [...args, '-k', socketPath, file], dir, pidFile, `nbd+unix:///?socket=${socketPath}`, { socketPath });
}

export async function tool(command: string, args: string[]): Promise<string> {
  const { stdout } = await run(command, args, { maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}
