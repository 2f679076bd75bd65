// No stack trace for an expected condition: every command, run as a real process
// (bin/vcbt.ts under this Node), is given broken input a user can produce (unknown or
// malformed flags, a --repo that is a file or not a repository, a directory where a file is
// expected, a file it may not read, a server that is not there) and must answer with a named
// error code and its exit code, never INTERNAL and never a stack trace.
import { after, before, suite, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { makeTestCert } from '../vsphere/test-cert.ts';

const root = resolve(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'vcbt.ts');
/** Root reads any file: run the children as nobody so that mode 000 means "unreadable". */
const asUser: { uid?: number; gid?: number } = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};

interface Run {
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

function vcbt(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: root, env: { PATH: process.env.PATH, HOME: dir, NODE_COMPILE_CACHE: join(dir, 'compile-cache'), ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...asUser });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (exitCode) => resolvePromise({ exitCode, stdout, stderr }));
  });
}

let dir = '';
let repo = '';
const p = (name: string) => join(dir, name);
/** Nothing listens on port 9 (discard) here: a refused connection, at once. */
const deadServer = ['--server', 'https://127.0.0.1:9', '--user', 'u'];
const password = { VCBT_PASSWORD: 'x' };

interface Case {
  name: string;
  args: () => string[];
  env?: NodeJS.ProcessEnv;
  exitCode: number;
  /** The code the error line must carry. */
  code: string;
}

const cases: Case[] = [
  // flags
  ...['vms', 'cbt', 'changes', 'apply', 'replicate', 'init', 'backup', 'points', 'restore', 'export', 'verify', 'prune'].map((command) => ({
    name: `${command} --frobnicate`,
    args: () => [command, '--frobnicate'],
    exitCode: 2,
    code: 'USAGE',
  })),
  { name: 'apply without flags', args: () => ['apply'], exitCode: 2, code: 'USAGE' },
  { name: 'apply --in-flight 99999999999', args: () => ['apply', '--areas', p('areas.csv'), '--from', p('disk.raw'), '--to', p('disk2.raw'), '--in-flight', '99999999999'], exitCode: 2, code: 'USAGE' },
  { name: 'apply --sector-size garbage', args: () => ['apply', '--areas', p('areas.csv'), '--from', p('disk.raw'), '--to', p('disk2.raw'), '--sector-size', '-1x'], exitCode: 2, code: 'USAGE' },
  { name: 'init --chunk-size garbage', args: () => ['init', '--repo', p('new-repo'), '--chunk-size', 'lots'], exitCode: 2, code: 'USAGE' },
  { name: 'prune without a --keep rule', args: () => ['prune', '--repo', repo], exitCode: 2, code: 'USAGE' },
  { name: 'changes with --since and --all', args: () => ['changes', '--vm', 'a', '--disk', '2000', '--since', 'x', '--all', ...deadServer], env: password, exitCode: 2, code: 'USAGE' },
  { name: 'restore --disk garbage', args: () => ['restore', '--repo', repo, '--point', 'latest', '--vm', 'a', '--disk', 'two', '--to', p('out.raw')], exitCode: 2, code: 'USAGE' },
  { name: 'vms --password-file a directory', args: () => ['vms', ...deadServer, '--password-file', dir], exitCode: 2, code: 'USAGE' },
  { name: 'vms --password-file unreadable', args: () => ['vms', ...deadServer, '--password-file', p('unreadable')], exitCode: 2, code: 'USAGE' },
  // apply: directories and unreadable files where files are expected
  { name: 'apply --from a directory', args: () => ['apply', '--areas', p('areas.csv'), '--from', dir, '--to', p('disk2.raw')], exitCode: 1, code: 'FILE_OPEN' },
  { name: 'apply --to a directory', args: () => ['apply', '--areas', p('areas.csv'), '--from', p('disk.raw'), '--to', dir], exitCode: 1, code: 'FILE_OPEN' },
  { name: 'apply --areas a directory', args: () => ['apply', '--areas', dir, '--from', p('disk.raw'), '--to', p('disk2.raw')], exitCode: 1, code: 'APPLY_AREAS_UNREADABLE' },
  { name: 'apply --areas unreadable', args: () => ['apply', '--areas', p('unreadable'), '--from', p('disk.raw'), '--to', p('disk2.raw')], exitCode: 1, code: 'APPLY_AREAS_UNREADABLE' },
  { name: 'apply --from unreadable', args: () => ['apply', '--areas', p('areas.csv'), '--from', p('unreadable'), '--to', p('disk2.raw')], exitCode: 1, code: 'FILE_OPEN' },
  { name: 'apply --from missing', args: () => ['apply', '--areas', p('areas.csv'), '--from', p('missing.raw'), '--to', p('disk2.raw')], exitCode: 1, code: 'FILE_OPEN' },
  // --repo that is a file, a plain directory, a path that does not exist
  ...['points', 'verify'].flatMap((command): Case[] => [
    { name: `${command} --repo a file`, args: () => [command, '--repo', p('areas.csv')], exitCode: 1, code: 'REPO_NOT_FOUND' },
    { name: `${command} --repo a directory that is not a repository`, args: () => [command, '--repo', p('empty')], exitCode: 1, code: 'REPO_NOT_FOUND' },
    { name: `${command} --repo missing`, args: () => [command, '--repo', p('missing')], exitCode: 1, code: 'REPO_NOT_FOUND' },
    { name: `${command} --repo unreadable`, args: () => [command, '--repo', p('locked-dir')], exitCode: 1, code: 'REPO_IO' },
  ]),
  { name: 'prune --repo a file', args: () => ['prune', '--repo', p('areas.csv'), '--keep-last', '1'], exitCode: 1, code: 'REPO_NOT_FOUND' },
  { name: 'restore --repo a file', args: () => ['restore', '--repo', p('areas.csv'), '--point', 'x', '--disk', '2000', '--to', p('out.raw')], exitCode: 1, code: 'REPO_NOT_FOUND' },
  { name: 'export --repo a directory that is not a repository', args: () => ['export', '--repo', p('empty'), '--point', 'x', '--disk', '2000', '--socket', p('s.sock')], exitCode: 1, code: 'REPO_NOT_FOUND' },
  { name: 'init --repo a file', args: () => ['init', '--repo', p('areas.csv')], exitCode: 1, code: 'REPO_EXISTS' },
  { name: 'init --repo under a file', args: () => ['init', '--repo', join(p('areas.csv'), 'repo')], exitCode: 1, code: 'REPO_EXISTS' },
  { name: 'init --repo an existing repository', args: () => ['init', '--repo', repo], exitCode: 1, code: 'REPO_EXISTS' },
  { name: 'init --repo in an unwritable directory', args: () => ['init', '--repo', join(p('locked-dir'), 'repo')], exitCode: 1, code: 'REPO_IO' },
  { name: 'points --passphrase-file a directory', args: () => ['points', '--repo', repo, '--passphrase-file', dir], exitCode: 1, code: 'REPO_INVALID_ARGUMENT' },
  // repository content a command cannot find
  { name: 'restore an unknown point', args: () => ['restore', '--repo', repo, '--point', 'nope', '--disk', '2000', '--to', p('out.raw')], exitCode: 1, code: 'REPO_POINT_NOT_FOUND' },
  { name: 'verify an unknown point', args: () => ['verify', '--repo', repo, '--point', 'nope'], exitCode: 1, code: 'REPO_POINT_NOT_FOUND' },
  { name: 'restore latest without --vm', args: () => ['restore', '--repo', repo, '--point', 'latest', '--disk', '2000', '--to', p('out.raw')], exitCode: 1, code: 'RESTORE_POINT_AMBIGUOUS' },
  // a vSphere server that is not there
  { name: 'vms against no server', args: () => ['vms', ...deadServer], env: password, exitCode: 1, code: 'VSPHERE_UNREACHABLE' },
  { name: 'cbt against no server', args: () => ['cbt', 'enable', '--vm', 'a', ...deadServer], env: password, exitCode: 1, code: 'VSPHERE_UNREACHABLE' },
  { name: 'changes against no server', args: () => ['changes', '--vm', 'a', '--disk', '2000', '--all', ...deadServer], env: password, exitCode: 1, code: 'VSPHERE_UNREACHABLE' },
  { name: 'replicate against no server', args: () => ['replicate', '--vm', 'a', '--to', p('replica.raw'), ...deadServer], env: password, exitCode: 1, code: 'VSPHERE_UNREACHABLE' },
  { name: 'backup against no server', args: () => ['backup', '--vm', 'a', '--repo', repo, ...deadServer], env: password, exitCode: 1, code: 'VSPHERE_UNREACHABLE' },
  { name: 'backup --repo a file', args: () => ['backup', '--vm', 'a', '--repo', p('areas.csv'), ...deadServer], env: password, exitCode: 1, code: 'REPO_NOT_FOUND' },
  { name: 'vms without a password', args: () => ['vms', ...deadServer], exitCode: 2, code: 'USAGE' },
  // --json: the error is a document on stdout as well
  { name: 'points --json --repo a file', args: () => ['points', '--json', '--repo', p('areas.csv')], exitCode: 1, code: 'REPO_NOT_FOUND' },
];

suite('no stack traces', { concurrency: 4 }, () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vcbt-no-stack-'));
    await chmod(dir, 0o755);
    if (asUser.uid !== undefined && asUser.gid !== undefined) await chown(dir, asUser.uid, asUser.gid);
    repo = p('repo');
    await writeFile(p('areas.csv'), '0,4096\n');
    await writeFile(p('disk.raw'), Buffer.alloc(65536));
    await writeFile(p('disk2.raw'), Buffer.alloc(65536));
    await chmod(p('disk2.raw'), 0o666);
    await writeFile(p('unreadable'), 'secret\n', { mode: 0o000 });
    await mkdir(p('empty'));
    await mkdir(p('locked-dir'), { mode: 0o000 });
    const init = await vcbt(['init', '--repo', repo]);
    assert.equal(init.exitCode, 0, init.stderr);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const c of cases) {
    test(c.name, async () => {
      const run = await vcbt(c.args(), c.env);
      const output = `${run.stdout}\n${run.stderr}`;
      assert.doesNotMatch(output, /INTERNAL/, output);
      assert.doesNotMatch(output, /^\s+at /m, `a stack trace: ${output}`);
      assert.match(run.stderr, new RegExp(`^vcbt [a-z]+: ${c.code}: `, 'm'), output);
      assert.equal(run.exitCode, c.exitCode, output);
      if (c.args().includes('--json')) {
        const document = JSON.parse(run.stdout) as { version: number; type: string; code: string; exitCode: number };
        assert.deepEqual([document.version, document.type, document.code, document.exitCode], [1, 'error', c.code, c.exitCode]);
      }
    });
  }
});

test('no stack traces: a reader that closes the pipe early ends vcbt quietly', async () => {
  // `vcbt --help | true`: the reader is gone before vcbt writes; EPIPE must not surface.
  const child = spawn(process.execPath, [bin, 'help'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.destroy();
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exitCode = await new Promise<number | null>((resolvePromise) => child.once('close', resolvePromise));
  assert.equal(stderr, '');
  assert.equal(exitCode, 0);
});

test('no stack traces: --version prints the package version', async () => {
  const run = await vcbt(['--version']);
  assert.equal(run.exitCode, 0);
  assert.match(run.stdout, /^vcbt \d+\.\d+\.\d+\n$/);
});

for (const [signal, exitCode] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  test(`no stack traces: ${signal} while waiting for a server ends with exit ${exitCode}`, async () => {
    // An HTTPS server that takes the request and never answers: vcbt waits until signalled.
    const cert = makeTestCert();
    const silent = createServer({ key: cert.key, cert: cert.cert }, () => {});
    await new Promise<void>((resolvePromise) => silent.listen(0, '127.0.0.1', resolvePromise));
    const { port } = silent.address() as AddressInfo;
    try {
      const child = spawn(process.execPath, [bin, 'vms', '--server', `https://127.0.0.1:${port}`, '--user', 'u', '--thumbprint', cert.sha256, '--json'], {
        cwd: root,
        env: { PATH: process.env.PATH, VCBT_PASSWORD: 'x', NODE_COMPILE_CACHE: join(tmpdir(), 'vcbt-test-compile-cache') },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const closed = new Promise<number | null>((resolvePromise) => child.once('close', resolvePromise));
      await new Promise<void>((resolvePromise) => silent.once('request', () => resolvePromise()));
      child.kill(signal);
      assert.equal(await closed, exitCode, stderr);
      assert.doesNotMatch(stderr, /INTERNAL|^\s+at /m, stderr);
      const document = JSON.parse(stdout) as { type: string; exitCode: number };
      assert.deepEqual([document.type, document.exitCode], ['error', exitCode]);
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });
}

test('no stack traces: SIGINT while a server never finishes the TLS handshake ends vcbt at once, not at the handshake timeout', async () => {
  // A TCP server that accepts and then says nothing: the TLS handshake never completes.
  const sockets: Socket[] = [];
  const mute = createNetServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
  });
  await new Promise<void>((resolvePromise) => mute.listen(0, '127.0.0.1', resolvePromise));
  const { port } = mute.address() as AddressInfo;
  try {
    const connected = new Promise<void>((resolvePromise) => mute.once('connection', () => resolvePromise()));
    const child = spawn(process.execPath, [bin, 'vms', '--server', `https://127.0.0.1:${port}`, '--user', 'u', '--thumbprint', '00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33'], {
      cwd: root,
      env: { PATH: process.env.PATH, VCBT_PASSWORD: 'x', NODE_COMPILE_CACHE: join(tmpdir(), 'vcbt-test-compile-cache') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const closed = new Promise<number | null>((resolvePromise) => child.once('close', resolvePromise));
    await connected;
    child.kill('SIGINT');
    // The handshake timeout is 30 s: a process still alive after 15 s waited for it (a hang, not a speed question).
    const guard = new Promise<'still running'>((resolvePromise) => setTimeout(() => resolvePromise('still running'), 15_000).unref());
    const outcome = await Promise.race([closed, guard]);
    if (outcome === 'still running') child.kill('SIGKILL');
    assert.equal(outcome, 130, stderr);
    assert.match(stderr, /VSPHERE_CANCELLED/);
  } finally {
    for (const socket of sockets) socket.destroy();
    mute.close();
  }
});
