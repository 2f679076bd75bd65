// File-level restore through the service's HTTP API (`vcbt serve` as a child process): a
// restore point's file systems and directories are listed, a file downloads byte-identical and a
// directory as a tar of exactly its tree, from the right restore point; a missing path is a 404
// with FILES_PATH_NOT_FOUND; a read-only token may browse. Every JSON answer is checked against
// the OpenAPI document the server serves. The disk is test/files/fixture.ts's GPT (ext4 + FAT).
//
// Slow (the appliance boots once per restore point browsed): `npm run test:files`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { runCli } from '../helpers/cli-runner.ts';
import { checkSchema } from '../api/schema-check.ts';
import { buildFixture, type Fixture } from './fixture.ts';

const run = promisify(execFile);
const bin = join(import.meta.dirname, '../../bin/vcbt.ts');
const sha = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
const guestfsEnv: NodeJS.ProcessEnv = process.env.VCBT_TEST_KVM === '1' ? {} : { LIBGUESTFS_BACKEND_SETTINGS: 'force_tcg' };
let fixture: Fixture;
let dir: string;
let daemon: ChildProcess;
let daemonLog = '';
let base: string;
let token: string;
let readOnly: string;
let document: Record<string, unknown>;

before(async () => {
  fixture = await buildFixture();
  dir = await mkdtemp(join(tmpdir(), 'vcbt-files-api-'));
  const configFile = join(dir, 'vcbt.yaml');
  // A server is required by the configuration; the file browser never contacts it.
  await writeFile(join(dir, 'unused.password'), 'unused', { mode: 0o600 });
  await writeFile(configFile, `servers:\n  vc: { url: "https://127.0.0.1:9/sdk", user: "nobody", passwordFile: unused.password }\nrepositories:\n  main: { path: "${fixture.repoPath}" }\ncatalog: { path: catalog.sqlite }\ndaemon: { listen: "127.0.0.1:0", stopTimeout: 5s }\n`);
  token = (await runCli(['token', 'create', '--config', configFile])).stdout.trim();
  readOnly = (await runCli(['token', 'create', '--config', configFile, '--read-only'])).stdout.trim();
  assert.match(token, /^vcbt_/);
  daemon = spawn(process.execPath, [bin, 'serve', '--config', configFile], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...guestfsEnv } });
  daemon.stderr!.on('data', (d: Buffer) => (daemonLog += d.toString()));
  for (;;) {
    const match = /API listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(daemonLog);
    if (match) {
      base = match[1] as string;
      break;
    }
    assert.equal(daemon.exitCode, null, daemonLog);
    await sleep(20);
  }
  document = (await (await fetch(`${base}/api/openapi.json`, { headers: { authorization: `Bearer ${token}` } })).json()) as Record<string, unknown>;
});

after(async () => {
  if (daemon && daemon.exitCode === null) {
    const exited = new Promise((resolve) => daemon.on('exit', resolve));
    daemon.kill('SIGTERM');
    await exited;
  }
  await fixture?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A GET whose JSON answer is checked against the document for `template`. */
async function getJson(path: string, template: string, auth = token): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(base + path, { headers: { authorization: `Bearer ${auth}` } });
  const text = await response.text();
  const body = JSON.parse(text) as Record<string, unknown>;
  type Operation = { responses: Record<string, { content: { 'application/json': { schema: Record<string, unknown> } } } | undefined> };
  const paths = document.paths as Record<string, { get?: Operation } | undefined>;
  const answer = paths[template]?.get?.responses[String(response.status)];
  assert.ok(answer, `GET ${path}: status ${response.status} is documented (${text.slice(0, 300)})`);
  assert.deepEqual(checkSchema(document, answer.content['application/json'].schema, body), [], `GET ${path}: ${text.slice(0, 300)}`);
  return { status: response.status, body };
}

const filesPath = (point: string, query: Record<string, string>) => `/api/repositories/main/points/${point}/files?${new URLSearchParams(query)}`;
const contentPath = (point: string, path: string) => `/api/repositories/main/points/${point}/files/content?${new URLSearchParams({ path })}`;

test('browse and download through the API: file systems, a directory, a file byte-identical, a tree as tar, the right point', async () => {
  try {
    await browseAndDownload();
  } catch (error) {
    throw new Error(`${error instanceof Error ? error.stack : String(error)}\n--- the daemon's log:\n${daemonLog}`, { cause: error });
  }
});

async function browseAndDownload(): Promise<void> {
  const [older, newer] = fixture.gptPoints;
  const template = '/api/repositories/{name}/points/{id}/files';
  const top = await getJson(filesPath(older, {}), template);
  assert.equal(top.status, 200);
  assert.deepEqual((top.body.filesystems as Array<Record<string, unknown>>).map((f) => [f.prefix, f.type, f.browsable]), [['1', 'ext4', true], ['2', 'vfat', true], ['3', '', false]]);
  assert.equal(top.body.entries, null);

  const files = fixture.filesOf.get(older)!;
  const listed = await getJson(filesPath(older, { path: '1:/home/alice' }), template, readOnly);
  assert.equal(listed.status, 200, 'a read-only token browses');
  const entries = listed.body.entries as Array<{ path: string; sizeBytes: number; kind: string }>;
  assert.deepEqual(entries.filter((e) => e.kind === 'file').map((e) => [e.path, e.sizeBytes]), Object.entries(files).filter(([p]) => p.startsWith('1:/home/alice/')).map(([p, d]) => [p, d.length]).sort());

  const download = await fetch(base + contentPath(older, '1:/home/alice/data.bin'), { headers: { authorization: `Bearer ${token}` } });
  assert.equal(download.status, 200);
  assert.equal(download.headers.get('content-type'), 'application/octet-stream');
  assert.match(download.headers.get('content-disposition') ?? '', /filename="data\.bin"/);
  assert.equal(sha(new Uint8Array(await download.arrayBuffer())), sha(files['1:/home/alice/data.bin']), 'the older version from the older point');

  const tar = await fetch(base + contentPath(older, '2:/EFI'), { headers: { authorization: `Bearer ${token}` } });
  assert.equal(tar.status, 200);
  assert.equal(tar.headers.get('content-type'), 'application/x-tar');
  const tarFile = join(dir, 'efi.tar');
  await writeFile(tarFile, new Uint8Array(await tar.arrayBuffer()));
  const { stdout } = await run('tar', ['-t', '-f', tarFile]);
  assert.deepEqual(stdout.split('\n').filter((l) => l !== '' && !l.endsWith('/')).sort(), ['EFI/BOOT/BOOTX64.EFI']);

  const missing = await getJson(filesPath(older, { path: '1:/home/nobody' }), template);
  assert.equal(missing.status, 404);
  assert.equal(missing.body.code, 'FILES_PATH_NOT_FOUND');
  const noPartition = await getJson(filesPath(older, { path: '7:/' }), template);
  assert.equal(noPartition.status, 404);
  assert.equal(noPartition.body.code, 'FILES_PARTITION_NOT_FOUND');

  const newerFile = await fetch(base + contentPath(newer, '1:/home/alice/data.bin'), { headers: { authorization: `Bearer ${token}` } });
  assert.equal(newerFile.status, 200);
  assert.equal(sha(new Uint8Array(await newerFile.arrayBuffer())), sha(fixture.filesOf.get(newer)!['1:/home/alice/data.bin']), 'the newer version from the newer point');
  assert.doesNotMatch(daemonLog, /INTERNAL/, daemonLog);
}
