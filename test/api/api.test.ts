// The HTTP API of `vcbt serve` (a child process) against the lab: every request needs a
// token (none or an unknown one: 401), a read-only token reads but cannot run a job (403),
// "run a job now" starts a run (202) and a second one while it works is refused (409); every
// answer, errors included, is checked against the OpenAPI document the server serves (its
// status documented for that path, its body valid against the schema); tokens are stored
// hashed, and neither a token nor the vSphere password appears in any answer or log line.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startLab, type Lab } from '../lab/lab.ts';
import { startServe } from '../helpers/serve.ts';
import { runCli } from '../helpers/cli-runner.ts';
import { checkSchema } from './schema-check.ts';
import { openApiDocument } from '../../src/api/openapi.ts';
import { openSqliteCatalog } from '../../src/service/catalog/sqlite.ts';

const VM = 'DC0_H0_VM1';
let lab: Lab;
let dir: string;
let configFile: string;
let daemon: ChildProcess;
let daemonLog = '';
let base: string;
let token: string;
let readOnly: string;
let document: Record<string, unknown>;
const bodies: string[] = [];
/** `METHOD TEMPLATE` of every request made, to check that every documented operation is exercised. */
const exercised = new Set<string>();

before(async () => {
  lab = await startLab({ otherDiskBytes: 2 * 1024 * 1024, diskSizes: [1024 * 1024] });
  dir = await mkdtemp(join(tmpdir(), 'vcbt-api-'));
  assert.equal((await runCli(['init', '--repo', join(dir, 'repo')])).code, 0);
  await writeFile(join(dir, 'lab.password'), lab.info.password, { mode: 0o600 });
  configFile = join(dir, 'vcbt.yaml');
  await writeFile(
    configFile,
    `servers:
  lab: { url: "${lab.info.sdk}", user: "${lab.info.username}", passwordFile: lab.password, thumbprint: "${lab.info.thumbprintSha1}" }
repositories:
  main: { path: repo }
catalog: { path: catalog.sqlite }
daemon: { listen: "127.0.0.1:0", stopTimeout: 5s, inventoryCache: 10m, restoreDirectory: restores }
jobs:
  one:
    type: backup
    server: lab
    repository: main
    vms: { include: ["${VM}"] }
    transport: { ioTimeout: 1s }
    retries: { count: 0 }
    waitBusy: 0
    rpo: 1h
  nightly:
    type: backup
    server: lab
    repository: main
    vms: { include: ["DC0_H0_*"], exclude: ["${VM}"] }
    schedule: "0 2 * * *"
`,
  );
  // A VM the catalog knows that vSphere no longer lists (deleted since its last backup).
  const seeded = openSqliteCatalog(join(dir, 'catalog.sqlite'));
  const dayAgo = (ms: number) => new Date(Date.now() - 86_400_000 + ms).toISOString();
  const oldRun = await seeded.startRun({ job: 'one', jobType: 'backup', trigger: 'manual', startedAt: dayAgo(0), host: 'elsewhere', pid: 1 });
  const oldTask = await seeded.startTask(oldRun, { vm: 'deleted-vm', moref: 'vm-9999', host: null, startedAt: dayAgo(1000) });
  await seeded.endTask(oldTask, { status: 'success', endedAt: dayAgo(60_000), attempts: 1, mode: 'full', reasonCodes: ['NO_BASELINE'], bytesRead: 1, bytesStored: 1, pointId: null, error: null, warnings: [] });
  await seeded.endRun(oldRun, { status: 'success', endedAt: dayAgo(60_000), error: null });
  await seeded.close();
  const created = await runCli(['token', 'create', '--config', configFile, '--note', 'test']);
  assert.equal(created.code, 0, created.stderr);
  assert.match(created.stdout, /^vcbt_[A-Za-z0-9_-]{43}\n$/);
  token = created.stdout.trim();
  const ro = await runCli(['token', 'create', '--config', configFile, '--read-only']);
  assert.equal(ro.code, 0, ro.stderr);
  readOnly = ro.stdout.trim();
  assert.match(ro.stderr, /read-only/);

  ({ child: daemon, base } = await startServe(configFile, (text) => (daemonLog += text)));
});

after(async () => {
  const alone = [...process.argv, ...process.execArgv].some((a) => a.startsWith('--test-name-pattern'));
  if (!alone && base) await checkEveryOperationExercised();
  if (daemon && daemon.exitCode === null) {
    const exited = new Promise((resolve) => daemon.on('exit', resolve));
    daemon.kill('SIGTERM');
    await exited;
  }
  await lab?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A request; the answer is checked against the OpenAPI document for `template` (the path as documented). */
async function call(method: string, path: string, template: string, auth: string | undefined, requestBody?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const headers: Record<string, string> = auth === undefined ? {} : { authorization: `Bearer ${auth}` };
  if (requestBody !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(base + path, { method, headers, body: requestBody === undefined ? undefined : JSON.stringify(requestBody) });
  const text = await response.text();
  bodies.push(text);
  assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
  const body = JSON.parse(text) as Record<string, unknown>;
  const doc = (document ?? openApiDocument) as unknown as Record<string, Record<string, Record<string, Record<string, Record<string, Record<string, unknown>>>>>>;
  exercised.add(`${method} ${template}`);
  const operation = doc.paths?.[template]?.[method.toLowerCase()];
  assert.ok(operation, `${method} ${template} is in the document`);
  const answer = (operation.responses as unknown as Record<string, { content: { 'application/json': { schema: Record<string, unknown> } } }>)[String(response.status)];
  assert.ok(answer, `${method} ${path}: status ${response.status} is documented (${text})`);
  assert.deepEqual(checkSchema(doc as unknown as Record<string, unknown>, answer.content['application/json'].schema, body), [], `${method} ${path} ${response.status}: ${text.slice(0, 500)}`);
  return { status: response.status, body };
}

/** Reads a run's Server-Sent Events to the end; each is checked against the document's RunEvent schema. */
async function readEvents(runId: number, auth: string): Promise<Array<{ event: string; data: Record<string, unknown> }>> {
  exercised.add('GET /api/runs/{id}/events');
  const response = await fetch(`${base}/api/runs/${runId}/events`, { headers: { authorization: `Bearer ${auth}` } });
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
  const text = await response.text();
  bodies.push(text);
  const events: Array<{ event: string; data: Record<string, unknown> }> = [];
  for (const block of text.split('\n\n')) {
    const event = /^event: (.+)$/m.exec(block)?.[1];
    const data = /^data: (.+)$/m.exec(block)?.[1];
    if (!event || !data) continue;
    const parsed = { event, data: JSON.parse(data) as Record<string, unknown> };
    const doc = (document ?? openApiDocument) as unknown as Record<string, unknown>;
    assert.deepEqual(checkSchema(doc, { $ref: '#/components/schemas/RunEvent' }, parsed), [], block.slice(0, 500));
    events.push(parsed);
  }
  return events;
}

test('every request needs a known token; the document served is the one in the code', async () => {
  for (const [path, template] of [
    ['/api/openapi.json', '/api/openapi.json'],
    ['/api/jobs', '/api/jobs'],
    ['/api/runs', '/api/runs'],
    ['/api/vms', '/api/vms'],
  ]) {
    const none = await call('GET', path as string, template as string, undefined);
    assert.deepEqual([none.status, none.body.code], [401, 'API_UNAUTHORIZED'], path);
    const wrong = await call('GET', path as string, template as string, `vcbt_${'A'.repeat(43)}`);
    assert.deepEqual([wrong.status, wrong.body.code], [401, 'API_UNAUTHORIZED'], path);
  }
  const none = await call('POST', '/api/jobs/one/run', '/api/jobs/{name}/run', undefined);
  assert.equal(none.status, 401);
  const served = await call('GET', '/api/openapi.json', '/api/openapi.json', readOnly);
  assert.equal(served.status, 200);
  assert.equal(served.body.openapi, '3.1.0');
  assert.deepEqual(served.body, JSON.parse(JSON.stringify(openApiDocument)));
  document = served.body;
  // The catalog holds the tokens' hashes only.
  const catalogBytes = await readFile(join(dir, 'catalog.sqlite'));
  assert.equal(catalogBytes.includes(token), false);
  assert.equal(catalogBytes.includes(readOnly), false);
});

test('run a job now: read-only refused, 202 then 409 while it works; runs, tasks, logs, VMs and points answer what the document says', async () => {
  document ??= (await call('GET', '/api/openapi.json', '/api/openapi.json', token)).body;
  const refused = await call('POST', '/api/jobs/one/run', '/api/jobs/{name}/run', readOnly);
  assert.deepEqual([refused.status, refused.body.code], [403, 'API_READ_ONLY']);
  const missing = await call('POST', '/api/jobs/nope/run', '/api/jobs/{name}/run', token);
  assert.deepEqual([missing.status, missing.body.code], [404, 'JOB_NOT_FOUND']);

  // The guest wrote, and the first read of it stalls for the job's ioTimeout (1 s) before it resumes: the run is at work meanwhile.
  await lab.write(VM, 2000, 0, randomBytes(256 * 1024));
  await lab.faults({ httpStall: { afterBytes: 64 * 1024, count: 1 } });
  const started = await call('POST', '/api/jobs/one/run', '/api/jobs/{name}/run', token);
  assert.equal(started.status, 202);
  const runId = started.body.runId as number;
  const again = await call('POST', '/api/jobs/one/run', '/api/jobs/{name}/run', token);
  assert.deepEqual([again.status, again.body.code], [409, 'JOB_RUNNING']);
  const live = readEvents(runId, readOnly);
  const jobsWhileRunning = await call('GET', '/api/jobs', '/api/jobs', readOnly);
  assert.equal((jobsWhileRunning.body.jobs as Array<{ runningRunId: number | null }>)[0]?.runningRunId, runId);

  let detail: { status: number; body: Record<string, unknown> };
  for (;;) {
    detail = await call('GET', `/api/runs/${runId}`, '/api/runs/{id}', readOnly);
    if ((detail.body.run as { status: string }).status !== 'running') break;
    await sleep(100);
  }
  const run = detail.body.run as { status: string; trigger: string; job: string };
  assert.deepEqual([run.job, run.trigger, run.status], ['one', 'api', 'success'], daemonLog);
  const [task] = detail.body.tasks as Array<{ vm: string; status: string; mode: string; pointId: string; bytesRead: number; reasonCodes: string[] }>;
  assert.deepEqual([task?.vm, task?.status, task?.mode], [VM, 'success', 'full']);
  assert.ok((task?.bytesRead ?? 0) >= 256 * 1024);

  // The live stream: state first, the VM's start, its disk's progress up to its total, its end with the point, the run's end last.
  const events = await live;
  assert.equal(events[0]?.event, 'state');
  assert.deepEqual(events.at(-1), { event: 'end', data: { status: 'success', endedAt: (detail.body.run as { endedAt: string }).endedAt, error: null } });
  assert.ok(events.some((e) => e.event === 'task-start' && e.data.vm === VM && e.data.attempt === 1), JSON.stringify(events.map((e) => e.event)));
  const progress = events.filter((e) => e.event === 'progress') as unknown as Array<{ data: { deviceKey: number; doneBytes: number; totalBytes: number } }>;
  assert.ok(progress.length > 0, 'progress events');
  const lastProgress = progress.at(-1)!.data;
  assert.equal(lastProgress.doneBytes, lastProgress.totalBytes, 'the disk reached 100 %');
  assert.ok(lastProgress.totalBytes >= 256 * 1024);
  const taskEnd = events.find((e) => e.event === 'task-end');
  assert.deepEqual([taskEnd?.data.vm, taskEnd?.data.result, taskEnd?.data.pointId], [VM, 'success', task?.pointId]);
  assert.ok(events.some((e) => e.event === 'log' && String(e.data.line).includes('committed')));
  // A finished run replays its final state and ends.
  const replay = await readEvents(runId, readOnly);
  assert.deepEqual(replay.map((e) => e.event), ['state', 'end']);
  assert.deepEqual((replay[0]?.data.vms as Array<{ vm: string; phase: string; result: string }>).map((v) => [v.vm, v.phase, v.result]), [[VM, 'done', 'success']]);

  const runs = await call('GET', '/api/runs?job=one&limit=10', '/api/runs', readOnly);
  assert.deepEqual((runs.body.runs as Array<{ id: number; host: string }>).map((r) => [r.id, r.host === 'elsewhere']), [[runId, false], [runId - 1, true]], 'newest first; the seeded run of the deleted VM before');
  const bad = await call('GET', '/api/runs?limit=0', '/api/runs', readOnly);
  assert.deepEqual([bad.status, bad.body.code], [400, 'API_BAD_REQUEST']);
  const logs = await call('GET', `/api/runs/${runId}/logs`, '/api/runs/{id}/logs', readOnly);
  assert.ok((logs.body.lines as Array<{ line: string }>).some((l) => l.line.includes(`restore point ${task?.pointId} committed`)), JSON.stringify(logs.body));
  const gone = await call('GET', '/api/runs/999999', '/api/runs/{id}', readOnly);
  assert.deepEqual([gone.status, gone.body.code], [404, 'API_NOT_FOUND']);

  type VmRow = { server: string; name: string; moref: string; inInventory: boolean | null; cbtEnabled: boolean | null; provisionedBytes: number | null; powerState: string | null; jobs: Array<{ job: string; rpoSeconds: number | null; breached: boolean | null; lastGood: { runId: number; pointId: string | null; ageSeconds: number } | null }>; lastGood: { job: string; runId: number; pointId: string; ageSeconds: number } | null };
  const vms = await call('GET', '/api/vms', '/api/vms', readOnly);
  const rows = vms.body.vms as VmRow[];
  // Every lab VM, with its inventory facts; the catalog's deleted VM marked gone.
  assert.deepEqual(rows.filter((r) => r.inInventory).map((r) => r.name).sort(), lab.info.vms.map((v) => v.name).sort());
  for (const labVm of lab.info.vms) {
    const row = rows.find((r) => r.moref === labVm.moref);
    assert.deepEqual([row?.server, row?.powerState, row?.provisionedBytes], ['lab', labVm.powerState, labVm.disks.reduce((sum, d) => sum + d.capacityBytes, 0)], labVm.name);
  }
  const deleted = rows.find((r) => r.moref === 'vm-9999');
  assert.deepEqual([deleted?.name, deleted?.inInventory, deleted?.jobs.map((j) => [j.job, j.breached])], ['deleted-vm', false, [['one', true]]]);
  const vm = rows.find((r) => r.name === VM);
  assert.equal(vm?.cbtEnabled, true, 'the job enabled CBT, or it was on');
  assert.deepEqual([vm?.lastGood?.job, vm?.lastGood?.runId, vm?.lastGood?.pointId], ['one', runId, task?.pointId]);
  assert.ok((vm?.lastGood?.ageSeconds ?? -1) >= 0);
  assert.deepEqual(vm?.jobs.map((j) => [j.job, j.rpoSeconds, j.breached, j.lastGood?.runId]), [['one', 3600, false, runId]]);
  // The nightly job covers the other DC0_H0 VMs: no good point yet, so its RPO (twice a day's interval) is breached.
  const covered = rows.filter((r) => r.inInventory && r.jobs.some((j) => j.job === 'nightly'));
  assert.deepEqual(covered.map((r) => r.name).sort(), lab.info.vms.map((v) => v.name).filter((n) => n.startsWith('DC0_H0_') && n !== VM).sort());
  for (const r of covered) assert.deepEqual(r.jobs.find((j) => j.job === 'nightly'), { job: 'nightly', lastGood: null, rpoSeconds: 2 * 86400, breached: true });
  const servers = vms.body.servers as Array<{ server: string; error: unknown; vmCount: number }>;
  assert.deepEqual(servers.map((x) => [x.server, x.error, x.vmCount]), [['lab', null, lab.info.vms.length]]);
  const vmsAgain = await call('GET', '/api/vms', '/api/vms', readOnly);
  assert.deepEqual((vmsAgain.body.servers as Array<{ readAt: string }>).map((x) => x.readAt), servers.map((x) => (x as unknown as { readAt: string }).readAt), 'the inventory is reused within daemon.inventoryCache');

  const vmPoints = await call('GET', `/api/vms/lab/${vm?.moref}/points`, '/api/vms/{server}/{moref}/points', readOnly);
  const [vmPoint] = vmPoints.body.points as Array<{ id: string; repository: string; mode: string; reasonCodes: string[]; bytesStored: number; runId: number; job: string }>;
  assert.deepEqual([vmPoint?.id, vmPoint?.repository, vmPoint?.mode, vmPoint?.reasonCodes, vmPoint?.runId, vmPoint?.job], [task?.pointId, 'main', 'full', task?.reasonCodes, runId, 'one']);
  assert.ok((vmPoint?.bytesStored ?? 0) > 0);
  const noVm = await call('GET', '/api/vms/lab/vm-424242/points', '/api/vms/{server}/{moref}/points', readOnly);
  assert.deepEqual([noVm.status, noVm.body.code], [404, 'API_NOT_FOUND']);

  const points = await call('GET', '/api/repositories/main/points', '/api/repositories/{name}/points', readOnly);
  assert.deepEqual((points.body.points as Array<{ id: string }>).map((p) => p.id), [task?.pointId]);
  const noRepo = await call('GET', '/api/repositories/other/points', '/api/repositories/{name}/points', readOnly);
  assert.deepEqual([noRepo.status, noRepo.body.code], [404, 'API_NOT_FOUND']);
  const jobs = await call('GET', '/api/jobs', '/api/jobs', readOnly);
  assert.deepEqual((jobs.body.jobs as Array<{ name: string; lastRun: { id: number } | null; lastGoodAt: string | null; runningRunId: null }>).map((j) => [j.name, j.lastRun?.id, j.runningRunId, j.lastGoodAt !== null]), [['one', runId, null, true], ['nightly', undefined, null, false]]);

  // No secret anywhere: not in answers, not in the daemon's log.
  for (const secret of [lab.info.password, token, readOnly]) {
    assert.equal(bodies.some((b) => b.includes(secret)), false, 'no secret in an answer');
    assert.equal(daemonLog.includes(secret), false, 'no secret in the log');
  }
  assert.match(daemonLog, /API POST \/api\/jobs\/one\/run 202 token 1/);
});

async function waitRun(runId: number): Promise<{ run: { status: string; job: string }; tasks: Array<{ vm: string; status: string; pointId: string | null; error: { code: string } | null }> }> {
  for (;;) {
    const detail = await call('GET', `/api/runs/${runId}`, '/api/runs/{id}', readOnly);
    if ((detail.body.run as { status: string }).status !== 'running') return detail.body as never;
    await sleep(100);
  }
}

test('VM actions: enable CBT (the inventory is read again), back one VM up now through the job that selects it', async () => {
  document ??= (await call('GET', '/api/openapi.json', '/api/openapi.json', token)).body;
  const other = lab.info.vms.find((v) => v.name === 'DC0_H0_VM0')!;
  const refused = await call('POST', `/api/vms/lab/${other.moref}/cbt/enable`, '/api/vms/{server}/{moref}/cbt/enable', readOnly);
  assert.deepEqual([refused.status, refused.body.code], [403, 'API_READ_ONLY']);
  const enabled = await call('POST', `/api/vms/lab/${other.moref}/cbt/enable`, '/api/vms/{server}/{moref}/cbt/enable', token);
  assert.deepEqual(enabled.body, { server: 'lab', name: other.name, moref: other.moref, cbtEnabled: true });
  const vms = await call('GET', '/api/vms', '/api/vms', readOnly);
  assert.equal((vms.body.vms as Array<{ moref: string; cbtEnabled: boolean }>).find((v) => v.moref === other.moref)?.cbtEnabled, true, 'the cached inventory was dropped');
  const unknown = await call('POST', '/api/vms/nowhere/vm-1/cbt/enable', '/api/vms/{server}/{moref}/cbt/enable', token);
  assert.deepEqual([unknown.status, unknown.body.code], [404, 'API_NOT_FOUND']);

  const wrongJob = await call('POST', `/api/vms/lab/${other.moref}/backup`, '/api/vms/{server}/{moref}/backup', token, { job: 'one' });
  assert.deepEqual([wrongJob.status, wrongJob.body.code], [404, 'JOB_NOT_FOUND']);
  const badBody = await call('POST', `/api/vms/lab/${other.moref}/backup`, '/api/vms/{server}/{moref}/backup', token, { job: 7 });
  assert.deepEqual([badBody.status, badBody.body.code], [400, 'API_BAD_REQUEST']);
  const started = await call('POST', `/api/vms/lab/${other.moref}/backup`, '/api/vms/{server}/{moref}/backup', token);
  assert.deepEqual([started.status, started.body.job], [202, 'nightly']);
  const done = await waitRun(started.body.runId as number);
  assert.deepEqual([done.run.job, done.run.status, done.tasks.map((t) => [t.vm, t.status])], ['nightly', 'success', [[other.name, 'success']]], daemonLog.slice(-3000));
});

test('repositories: figures and size history; verify, prune (dry run first) and restore as runs; restore only inside the restore directory; NBD export', async () => {
  document ??= (await call('GET', '/api/openapi.json', '/api/openapi.json', token)).body;
  const vm = lab.info.vms.find((v) => v.name === VM)!;
  // The tests before leave two restore points of VM; run alone, this test makes them itself.
  const pointsNow = async () => ((await call('GET', '/api/repositories', '/api/repositories', readOnly)).body.repositories as Array<{ points: number }>)[0]?.points ?? 0;
  for (let n = await pointsNow(); n < 2; n++) {
    await lab.write(VM, 2000, n * 512 * 1024, randomBytes(256 * 1024));
    const started = await call('POST', '/api/jobs/one/run', '/api/jobs/{name}/run', token);
    assert.equal(started.status, 202);
    assert.equal((await waitRun(started.body.runId as number)).run.status, 'success');
  }
  const listed = await call('GET', '/api/repositories', '/api/repositories', readOnly);
  const [main] = listed.body.repositories as Array<{ name: string; points: number; storedBytes: number; logicalBytes: number; chunks: number; reductionRatio: number; jobs: string[]; locks: unknown[] }>;
  assert.deepEqual([main?.name, main?.points, main?.jobs, main?.locks], ['main', 2, ['one', 'nightly'], []]);
  assert.ok((main?.storedBytes ?? 0) > 0 && (main?.chunks ?? 0) > 0 && (main?.reductionRatio ?? 0) > 0);
  // The daemon records a size sample after each backup run (just after the run's end is recorded).
  let history: Array<{ points: number; storedBytes: number }>;
  for (;;) {
    const one = await call('GET', '/api/repositories/main', '/api/repositories/{name}', readOnly);
    history = one.body.history as Array<{ points: number; storedBytes: number }>;
    if (history.length >= 2) break;
    await sleep(100);
  }
  assert.deepEqual(history.map((h) => h.points), [1, 2], 'a size sample after each run');
  assert.equal(history.at(-1)?.storedBytes, main?.storedBytes);

  const verify = await call('POST', '/api/repositories/main/verify', '/api/repositories/{name}/verify', token, { readData: true });
  assert.equal(verify.status, 202);
  const verified = await waitRun(verify.body.runId as number);
  assert.deepEqual([verified.run.job, verified.run.status], ['verify/main', 'success']);
  const sampled = await call('POST', '/api/repositories/main/verify', '/api/repositories/{name}/verify', token, { sample: 1 });
  assert.equal((await waitRun(sampled.body.runId as number)).run.status, 'success');
  const refusedVerify = await call('POST', '/api/repositories/main/verify', '/api/repositories/{name}/verify', readOnly, {});
  assert.deepEqual([refusedVerify.status, refusedVerify.body.code], [403, 'API_READ_ONLY']);

  const noPolicy = await call('POST', '/api/repositories/main/prune', '/api/repositories/{name}/prune', token, { dryRun: true });
  assert.deepEqual([noPolicy.status, noPolicy.body.code], [400, 'API_BAD_REQUEST']);
  const dry = await call('POST', '/api/repositories/main/prune', '/api/repositories/{name}/prune', token, { dryRun: true, policy: { keepLast: 1 } });
  // keepLast 1 keeps the newest point of each VM (two VMs after the tests before; one when run alone).
  const vmsWithPoints = new Set(((await call('GET', '/api/repositories/main/points', '/api/repositories/{name}/points', readOnly)).body.points as Array<{ vm: { id: string } }>).map((p) => p.vm.id)).size;
  assert.deepEqual([dry.status, (dry.body.remove as unknown[]).length, (dry.body.keep as unknown[]).length], [200, 2 - vmsWithPoints, vmsWithPoints]);
  const pruned = await call('POST', '/api/repositories/main/prune', '/api/repositories/{name}/prune', token, { policy: { keepLast: 1 } });
  assert.equal((await waitRun(pruned.body.runId as number)).run.status, 'success');
  const after = await call('GET', '/api/repositories/main', '/api/repositories/{name}', readOnly);
  assert.equal((after.body.lastPrune as { id: number }).id, pruned.body.runId);
  assert.equal((after.body.lastVerify as { id: number }).id, sampled.body.runId);

  const points = await call('GET', `/api/vms/lab/${vm.moref}/points`, '/api/vms/{server}/{moref}/points', readOnly);
  const [point] = points.body.points as Array<{ id: string; disks: Array<{ deviceKey: number }> }>;
  const key = point!.disks[0]!.deviceKey;
  const restorePath = `/api/repositories/main/points/${point!.id}/disks/${key}/restore`;
  const template = '/api/repositories/{name}/points/{id}/disks/{key}/restore';
  await mkdir(join(dir, 'restores'), { recursive: true });
  await symlink(dir, join(dir, 'restores', 'link'));
  for (const outside of ['../escape.raw', '/tmp/escape.raw', 'a/../../escape.raw', 'link/escape.raw']) {
    const refused = await call('POST', restorePath, template, token, { path: outside });
    assert.deepEqual([refused.status, refused.body.code], [400, 'RESTORE_PATH_REFUSED'], outside);
  }
  const restoring = await call('POST', restorePath, template, token, { path: 'vm1/disk.raw' });
  assert.equal(restoring.status, 202);
  const restored = await waitRun(restoring.body.runId as number);
  assert.deepEqual([restored.run.job, restored.run.status], ['restore/main', 'success']);
  const file = join(dir, 'restores', 'vm1', 'disk.raw');
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  const expected = await lab.sha256(VM, key);
  assert.equal(createHash('sha256').update(await readFile(file)).digest('hex'), expected.sha256);
  const replay = await readEvents(restoring.body.runId as number, readOnly);
  assert.deepEqual(replay.map((e) => e.event), ['state', 'end']);
  const exists = await call('POST', restorePath, template, token, { path: 'vm1/disk.raw' });
  assert.deepEqual([exists.status, exists.body.code], [409, 'RESTORE_TARGET_EXISTS']);

  const exported = await call('POST', `/api/repositories/main/points/${point!.id}/disks/${key}/export`, '/api/repositories/{name}/points/{id}/disks/{key}/export', token);
  assert.equal(exported.status, 201, JSON.stringify(exported.body));
  const uri = exported.body.uri as string;
  assert.match(uri, /^nbd:\/\/127\.0\.0\.1:\d+\//);
  assert.match((exported.body.commands as { qemuNbd: string }).qemuNbd, /^qemu-nbd --read-only --connect=\/dev\/nbd0 /);
  const copy = join(dir, 'copied.raw');
  await promisify(execFile)('nbdcopy', [uri, copy]);
  assert.equal(createHash('sha256').update(await readFile(copy)).digest('hex'), expected.sha256);
  const running = await call('GET', '/api/exports', '/api/exports', readOnly);
  assert.deepEqual((running.body.exports as Array<{ id: string }>).map((e) => e.id), [exported.body.id]);
  const stopped = await call('DELETE', `/api/exports/${exported.body.id as string}`, '/api/exports/{id}', token);
  assert.equal(stopped.status, 200);
  const again = await call('DELETE', `/api/exports/${exported.body.id as string}`, '/api/exports/{id}', token);
  assert.deepEqual([again.status, again.body.code], [404, 'API_NOT_FOUND']);
  for (const secret of [lab.info.password, token, readOnly]) assert.equal(bodies.some((b) => b.includes(secret)) || daemonLog.includes(secret), false);
});

/**
 * Every operation of the document was exercised by the tests of this file: checked after they
 * all ran (not when one test runs alone, `--test-name-pattern`), as the last thing before the
 * daemon stops.
 */
async function checkEveryOperationExercised(): Promise<void> {
  // The session (the console's) and the metrics (text, checked in their own tests): answered here too.
  const session = await call('GET', '/api/session', '/api/session', readOnly);
  assert.deepEqual([session.status, session.body.readOnly], [200, true]);
  const metrics = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${readOnly}` } });
  assert.deepEqual([metrics.status, (metrics.headers.get('content-type') ?? '').startsWith('text/plain')], [200, true]);
  bodies.push(await metrics.text());
  exercised.add('GET /metrics');
  const documented = Object.entries(openApiDocument.paths as Record<string, Record<string, unknown>>).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
  // File browsing needs libguestfs: exercised (and checked against the document) by the slow files suite (test/files).
  const elsewhere = documented.filter((op) => op.includes('/files'));
  assert.deepEqual(documented.filter((op) => !exercised.has(op) && !elsewhere.includes(op)), []);
}
