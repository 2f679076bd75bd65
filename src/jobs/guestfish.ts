// One libguestfs session (the "engine" of file-level restore): a `guestfish --listen` daemon
// holding a small appliance VM that reads one disk, driven command by command with
// `guestfish --remote=PID CMD ARGS...` (a short-lived process per command, whose exit status
// and stderr tell success from failure without parsing an interleaved stream).
//
// Terms:
// - appliance: the qemu VM libguestfs boots (its kernel and tools come from the host's
//   packages); with KVM it starts in a few seconds, emulated (TCG) in 12-16 s.
// - disk URI: what the appliance's qemu opens; libguestfs takes `nbd:///EXPORT?socket=PATH`
//   (not libnbd's `nbd+unix://` form).
// The disk is always added read-only (`--ro`): libguestfs then keeps writes (journal replay,
// atime) in a throw-away qcow2 overlay in $TMPDIR, never on the export.
import { execFile, spawn } from 'node:child_process';
import { open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { VcbtError } from '../errors.ts';

export class GuestfsError extends VcbtError {}

export interface GuestfishOptions {
  diskUri: string;
  /** A private directory for the daemon's start-up log. */
  workDir: string;
  env?: NodeJS.ProcessEnv;
  /** The guestfish binary (default `guestfish` from PATH). */
  binary?: string;
  signal?: AbortSignal;
}

export interface CommandResult {
  stdout: string;
}

/** `nbd+unix:///NAME?socket=PATH` (vcbt's export) in the form libguestfs accepts. */
export function libguestfsNbdUri(uri: string): string {
  const match = /^nbd\+unix:\/\/\/([^?]*)\?socket=(.+)$/.exec(uri);
  return match ? `nbd:///${match[1]}?socket=${match[2]}` : uri;
}

const NO_MESSAGE = 'no message';

/** The first `libguestfs: error:` line of guestfish's stderr, or the last line. */
function engineMessage(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const error = lines.find((l) => l.startsWith('libguestfs: error:'));
  return (error ?? lines.at(-1) ?? NO_MESSAGE).replace(/^libguestfs: error: /, '');
}

export class GuestfishSession {
  readonly #binary: string;
  readonly #env: NodeJS.ProcessEnv;
  readonly #pid: number;
  /** The daemon's stdout/stderr: where it prints the errors of the commands it runs. */
  readonly #logPath: string;
  #closed = false;

  private constructor(binary: string, env: NodeJS.ProcessEnv, pid: number, logPath: string) {
    this.#binary = binary;
    this.#env = env;
    this.#pid = pid;
    this.#logPath = logPath;
  }

  /**
   * Starts a session; when the appliance cannot boot with the default accelerator and the
   * caller did not choose one (LIBGUESTFS_BACKEND_SETTINGS), tries once more emulated (TCG):
   * some hosts have a /dev/kvm on which qemu aborts. `onNotice` hears about the retry.
   */
  static async startWithFallback(options: GuestfishOptions & { onNotice?: (text: string) => void }): Promise<GuestfishSession> {
    const chosen = { ...process.env, ...options.env }.LIBGUESTFS_BACKEND_SETTINGS;
    try {
      return await GuestfishSession.start(options);
    } catch (error) {
      if (chosen !== undefined || !(error instanceof GuestfsError) || error.code !== 'FILES_ENGINE_FAILED' || options.signal?.aborted) throw error;
      options.onNotice?.(`the libguestfs appliance did not boot (${error.message}); retrying without KVM (TCG, slower). Set LIBGUESTFS_BACKEND_SETTINGS=force_tcg to skip the first attempt.`);
      return GuestfishSession.start({ ...options, env: { ...options.env, LIBGUESTFS_BACKEND_SETTINGS: 'force_tcg' } });
    }
  }

  /** Starts the daemon and boots the appliance on the disk. */
  static async start(options: GuestfishOptions): Promise<GuestfishSession> {
    const binary = options.binary ?? 'guestfish';
    const env = { ...process.env, ...options.env };
    // The daemon forks and keeps the parent's stdout/stderr open: give it a log file rather than
    // pipes (a pipe would never reach end-of-file), and read the PID line once the parent exits.
    const logPath = join(options.workDir, 'guestfish.log');
    const log = await open(logPath, 'w');
    let exitCode: number | null;
    try {
      exitCode = await new Promise<number | null>((resolve, reject) => {
        const child = spawn(binary, ['--listen', '--ro', '--format=raw', '-a', options.diskUri], { env, stdio: ['ignore', log.fd, log.fd] });
        child.on('error', (error: NodeJS.ErrnoException) => {
          if (error.code === 'ENOENT') {
            reject(new GuestfsError('FILES_ENGINE_MISSING', `${binary} is not installed: file-level restore needs libguestfs (scripts/install-guestfs-packages.sh, Debian: libguestfs-tools)`, { binary }));
          } else reject(error);
        });
        child.on('exit', (code) => resolve(code));
      });
    } finally {
      await log.close();
    }
    const output = await readFile(logPath, 'utf8');
    const match = /GUESTFISH_PID=(\d+)/.exec(output);
    if (exitCode !== 0 || !match) throw new GuestfsError('FILES_ENGINE_FAILED', `libguestfs could not start: ${engineMessage(output)}`, { command: 'listen', engineMessage: engineMessage(output) });
    const pid = Number(match[1]);
    const session = new GuestfishSession(binary, env, pid, logPath);
    try {
      await session.run(['run'], options.signal);
    } catch (error) {
      await session.close();
      throw error;
    }
    return session;
  }

  /**
   * Runs one guestfish command in the session; fails with FILES_ENGINE_FAILED and the engine's
   * message. A failed command ends the daemon (guestfish --listen exits on an error), so callers
   * ask first (exists, is-dir) where a miss is expected.
   */
  async run(args: string[], signal?: AbortSignal): Promise<CommandResult> {
    if (this.#closed) throw new GuestfsError('FILES_ENGINE_FAILED', 'the libguestfs session is closed', { command: args[0] });
    const logFromBytes = await this.#logSizeBytes();
    const outcome = await new Promise<{ stdout: string; stderr: string; failed: boolean }>((resolve) => {
      execFile(this.#binary, [`--remote=${this.#pid}`, '--', ...args], { env: this.#env, maxBuffer: 256 * 1024 * 1024, signal }, (error, stdout, stderr) => resolve({ stdout, stderr, failed: error !== null }));
    });
    signal?.throwIfAborted();
    if (outcome.failed) throw await this.#failure(args[0], outcome.stderr, logFromBytes);
    return { stdout: outcome.stdout };
  }

  async #logSizeBytes(): Promise<number> {
    return (await stat(this.#logPath).catch(() => ({ size: 0 }))).size;
  }

  /** The error of a failed command: its message is in the daemon's log (or the client's stderr). */
  async #failure(command: string, stderr: string, logFromBytes: number): Promise<GuestfsError> {
    const log = await readFile(this.#logPath).catch(() => Buffer.alloc(0));
    const message = engineMessage(`${log.subarray(logFromBytes).toString('utf8')}\n${stderr}`);
    return new GuestfsError('FILES_ENGINE_FAILED', `libguestfs ${command} failed: ${message}`, { command, engineMessage: message });
  }

  /** Runs a command whose output is a byte stream (`tar-out DIR -`), returning the child's stdout. */
  async stream(args: string[], signal?: AbortSignal): Promise<{ stdout: NodeJS.ReadableStream; done: Promise<void> }> {
    const logFromBytes = await this.#logSizeBytes();
    const child = spawn(this.#binary, [`--remote=${this.#pid}`, '--', ...args], { env: this.#env, stdio: ['ignore', 'pipe', 'pipe'], signal });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const done = new Promise<void>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code) => {
        if (code === 0) resolve();
        else if (signal?.aborted) reject(signal.reason as Error);
        else void this.#failure(args[0], stderr, logFromBytes).then(reject);
      });
    });
    return { stdout: child.stdout, done };
  }

  /** Shuts the appliance down and ends the daemon (killed if it does not exit within 10 s). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const exited = new Promise<void>((resolve) => {
      const child = execFile(this.#binary, [`--remote=${this.#pid}`, '--', 'exit'], { env: this.#env, timeout: 10_000 }, () => resolve());
      child.on('error', () => resolve());
    });
    await exited;
    // The daemon may linger after `exit` or not have answered: make sure it is gone (libguestfs's
    // recovery process then stops the appliance's qemu).
    for (let i = 0; i < 50 && alive(this.#pid); i++) await new Promise((r) => setTimeout(r, 100));
    if (alive(this.#pid)) process.kill(this.#pid, 'SIGKILL');
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
