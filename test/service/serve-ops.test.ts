// The daemon's operations surface against the lab: the API over TLS (daemon.tls, a generated
// certificate) read by a client that verifies it (and refused by one that does not trust
// it); Prometheus metrics at /metrics behind the token (last success per job and VM, VM
// results, bytes, repository size); `vcbt token list` never shows a secret and `vcbt token
// revoke` makes the daemon refuse the token from the next request on.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { request } from 'node:https';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startLab, type Lab } from '../lab/lab.ts';
import { startServe } from '../helpers/serve.ts';
import { runCli } from '../helpers/cli-runner.ts';
import { makeTestCert, type TestCert } from '../vsphere/test-cert.ts';

const VM = 'DC0_H0_VM1';
let lab: Lab;
let dir: string;
let configFile: string;
let cert: TestCert;
let daemon: ChildProcess;
let daemonLog = '';
let base: string;

before(async () => {
  cert = makeTestCert();
  lab = await startLab({ otherDiskBytes: 1024 * 1024, diskSizes: [1024 * 1024] });
  dir = await mkdtemp(join(tmpdir(), 'vcbt-serve-ops-'));
  assert.equal((await runCli(['init', '--repo', join(dir, 'repo')])).code, 0);
  await writeFile(join(dir, 'lab.password'), lab.info.password, { mode: 0o600 });
  await writeFile(join(dir, 'api-cert.pem'), cert.cert);
  await writeFile(join(dir, 'api-key.pem'), cert.key, { mode: 0o600 });
  configFile = join(dir, 'vcbt.yaml');
  await writeFile(
    configFile,
    `servers:
  lab: { url: "${lab.info.sdk}", user: "${lab.info.username}", passwordFile: lab.password, thumbprint: "${lab.info.thumbprintSha1}" }
repositories:
  main: { path: repo }
catalog: { path: catalog.sqlite }
daemon: { listen: "127.0.0.1:0", stopTimeout: 5s, tls: { certificateFile: api-cert.pem, keyFile: api-key.pem } }
jobs:
  one:
    type: backup
    server: lab
    repository: main
    vms: { include: ["${VM}"] }
    retries: { count: 0 }
    waitBusy: 0
`,
  );
});

after(async () => {
  if (daemon && daemon.exitCode === null) {
    daemon.kill('SIGTERM');
    await new Promise((resolve) => daemon.once('exit', resolve));
  }
  await lab?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Answer {
  status: number;
  contentType: string;
  body: string;
}

/** One HTTPS request that trusts only `ca` (and checks the name 127.0.0.1 against the certificate). */
function call(method: string, path: string, token: string | undefined, ca: Buffer | null = cert.cert): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method, ca: ca ?? undefined, headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type']), body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  });
}

function metric(text: string, name: string, labels: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

test('TLS API, metrics behind the token, token list and revoke', async () => {
  const created = await runCli(['token', 'create', '--config', configFile, '--note', 'prometheus']);
  assert.equal(created.code, 0, created.stderr);
  const token = created.stdout.trim();
  const other = (await runCli(['token', 'create', '--config', configFile, '--read-only', '--note', 'grafana'])).stdout.trim();

  // token list: ids, kinds, notes; never a token or its hash.
  const listed = await runCli(['token', 'list', '--config', configFile, '--json']);
  assert.equal(listed.code, 0, listed.stderr);
  const doc = JSON.parse(listed.stdout) as { type: string; tokens: Array<Record<string, unknown>> };
  assert.equal(doc.type, 'token-list');
  assert.deepEqual(doc.tokens.map((t) => [t.id, t.readOnly, t.note, Object.keys(t).sort().join()]), [
    [1, false, 'prometheus', 'createdAt,id,note,readOnly'],
    [2, true, 'grafana', 'createdAt,id,note,readOnly'],
  ]);
  const text = await runCli(['token', 'list', '--config', configFile]);
  assert.match(text.stdout, /^ {3}1 {2}full {7}\S+ {2}prometheus\n {3}2 {2}read-only {2}\S+ {2}grafana\n$/);
  const catalogBytes = await readFile(join(dir, 'catalog.sqlite'));
  for (const t of [token, other]) {
    assert.ok(!listed.stdout.includes(t) && !text.stdout.includes(t), 'no token listed');
    assert.ok(!catalogBytes.includes(Buffer.from(t)), 'the catalog keeps only hashes');
  }

  ({ child: daemon, base } = await startServe(configFile, (text) => (daemonLog += text)));

  // A client that does not trust the certificate is refused by TLS itself; one that does gets 401 without a token.
  await assert.rejects(call('GET', '/api/jobs', token, null), (e: NodeJS.ErrnoException) => /SELF_SIGNED|UNABLE_TO_VERIFY/.test(String(e.code)));
  assert.equal((await call('GET', '/metrics', undefined)).status, 401);
  assert.equal((await call('GET', '/api/jobs', token)).status, 200);

  // A run, then the metrics show it.
  const started = await call('POST', '/api/jobs/one/run', token);
  assert.equal(started.status, 202, started.body);
  const { runId } = JSON.parse(started.body) as { runId: number };
  let status = 'running';
  for (let i = 0; status === 'running'; i++) {
    assert.ok(i < 1200, `run ${runId} never ended:\n${daemonLog}`);
    await sleep(50);
    status = (JSON.parse((await call('GET', `/api/runs/${runId}`, token)).body) as { run: { status: string } }).run.status;
  }
  assert.equal(status, 'success', daemonLog);
  const metrics = await call('GET', '/metrics', other);
  assert.equal(metrics.status, 200);
  assert.match(metrics.contentType, /^text\/plain; version=0\.0\.4/);
  const moref = lab.info.vms.find((v) => v.name === VM)!.moref;
  const jobSuccess = metric(metrics.body, 'vcbt_job_last_success_timestamp_seconds', 'job="one"');
  const vmSuccess = metric(metrics.body, 'vcbt_vm_last_success_timestamp_seconds', `job="one",vm="${VM}",moref="${moref}"`);
  assert.ok(jobSuccess !== undefined && Math.abs(jobSuccess - Date.now() / 1000) < 600, metrics.body);
  assert.ok(vmSuccess !== undefined && vmSuccess <= jobSuccess + 1, metrics.body);
  assert.equal(metric(metrics.body, 'vcbt_job_last_run_status', 'job="one",status="success"'), 1);
  assert.equal(metric(metrics.body, 'vcbt_job_last_run_status', 'job="one",status="failed"'), 0);
  assert.equal(metric(metrics.body, 'vcbt_vm_results_total', 'job="one",result="success"'), 1);
  assert.equal(metric(metrics.body, 'vcbt_vm_last_task_failed', `job="one",vm="${VM}",moref="${moref}"`), 0);
  assert.equal(typeof metric(metrics.body, 'vcbt_read_bytes_total', 'job="one"'), 'number', metrics.body);
  assert.equal(typeof metric(metrics.body, 'vcbt_vm_last_task_stored_bytes', `job="one",vm="${VM}",moref="${moref}"`), 'number', metrics.body);
  assert.ok((metric(metrics.body, 'vcbt_repository_size_bytes', 'repository="main"') ?? 0) > 0, metrics.body);
  assert.equal(metric(metrics.body, 'vcbt_vm_duration_seconds_count', 'job="one"'), 1);
  assert.match(metrics.body, /^vcbt_process_resident_memory_bytes \d+/m);

  // Revoked: refused from the next request on.
  const revoked = await runCli(['token', 'revoke', '1', '--config', configFile]);
  assert.equal(revoked.code, 0, revoked.stderr);
  assert.equal((await call('GET', '/metrics', token)).status, 401);
  assert.equal((await call('GET', '/metrics', other)).status, 200);
  const missing = await runCli(['token', 'revoke', '1', '--config', configFile]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /TOKEN_NOT_FOUND: no API token 1 in the catalog/);
  for (const t of [token, other]) assert.ok(!daemonLog.includes(t), 'no token in the daemon log');
});
