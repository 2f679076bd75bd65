// The service part of `npm run demo`: vcbt as a daemon on the built-in lab. A configuration
// file with one backup job, `vcbt config check`, an API token, `vcbt serve`, a run started
// through the HTTP API, its VMs and the Prometheus metrics read back, then SIGTERM.
// `npm run demo -- --serve` keeps the lab and the daemon up (the API URL and a fresh token
// printed) until Ctrl-C.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Lab } from '../test/lab/lab.ts';

const vcbtBin = join(import.meta.dirname, '..', 'bin', 'vcbt.ts');

export interface DemoIo {
  say(line: string): void;
  check(ok: boolean, what: string): void;
  /** Runs a vcbt command as its own process (printed first); answers its stdout. */
  vcbt(args: string[], show?: boolean): Promise<string>;
}

interface Service {
  configFile: string;
  token: string;
}

async function prepare(lab: Lab, dir: string, io: DemoIo, schedule: string | null): Promise<Service> {
  await writeFile(join(dir, 'lab.password'), lab.info.password, { mode: 0o600 });
  const configFile = join(dir, 'vcbt.yaml');
  const yaml = `servers:
  lab:
    url: ${lab.info.sdk}
    user: ${lab.info.username}
    passwordFile: lab.password
    thumbprint: "${lab.info.thumbprintSha1}"
repositories:
  main:
    path: service-repository
catalog:
  path: catalog.sqlite
daemon:
  listen: 127.0.0.1:0
  stopTimeout: 30s
jobs:
  nightly:
    type: backup
    server: lab
    repository: main
    vms:
      include: ["DC0_H0_*"]
      exclude: ["DC0_H0_VM0-restored"]${schedule ? `\n    schedule: "${schedule}"` : ''}
    limits: { total: 2, perHost: 2 }
    retention: { keepLast: 3 }
    verify: { schedule: "0 12 * * 6", points: latest }
`;
  await writeFile(configFile, yaml);
  io.say(`\nThe service: one file declares the server, the repository and a job (${configFile}):\n${yaml.replace(/^/gm, '  ')}`);
  await io.vcbt(['init', '--repo', join(dir, 'service-repository')]);
  await io.vcbt(['config', 'check', configFile]);
  const token = (await io.vcbt(['token', 'create', '--config', configFile, '--note', 'demo'], false)).trim();
  io.say(`\n$ vcbt token create --config ${configFile} --note demo\n  ${token.slice(0, 9)}... (shown once; the catalog keeps its SHA-256)`);
  return { configFile, token };
}

function serve(configFile: string, onLine: (line: string) => void): { child: ChildProcess; url: Promise<string>; exit: Promise<number | null> } {
  // Its own process group: Ctrl-C reaches the demo only, which sends the daemon one SIGTERM
  // (a second signal would make it exit without cleaning up).
  const child = spawn(process.execPath, [vcbtBin, 'serve', '--config', configFile], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let pending = '';
  let resolveUrl!: (url: string) => void;
  let rejectUrl!: (error: Error) => void;
  const url = new Promise<string>((resolve, reject) => {
    resolveUrl = resolve;
    rejectUrl = reject;
  });
  child.stderr!.on('data', (d: Buffer) => {
    pending += d.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      onLine(line);
      const match = /API listening on (https?:\/\/\S+)/.exec(line);
      if (match) resolveUrl(match[1] as string);
    }
  });
  const exit = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      rejectUrl(new Error(`vcbt serve exited with ${code}`));
      resolve(code);
    }),
  );
  return { child, url, exit };
}

async function api(url: string, token: string, method: string, path: string): Promise<{ status: number; body: string }> {
  const response = await fetch(`${url}${path}`, { method, headers: { authorization: `Bearer ${token}` } });
  return { status: response.status, body: await response.text() };
}

/** The default demo's service part: one run through the daemon's API, checked. */
export async function serviceStory(lab: Lab, dir: string, io: DemoIo): Promise<void> {
  const { configFile, token } = await prepare(lab, dir, io, null);
  io.say(`\n$ vcbt serve --config ${configFile}`);
  // The daemon's log without its request lines (the demo polls the run).
  const daemon = serve(configFile, (line) => /^\S+ API GET /.test(line) || io.say(`  | ${line.replace(/^\S+ /, '')}`));
  try {
    const url = await daemon.url;
    io.say(`\n$ curl -X POST -H "Authorization: Bearer ..." ${url}/api/jobs/nightly/run`);
    const started = await api(url, token, 'POST', '/api/jobs/nightly/run');
    io.say(`  ${started.status} ${started.body}`);
    io.check(started.status === 202, 'the API started a run of the job');
    const { runId } = JSON.parse(started.body) as { runId: number };
    let answer: { run: { status: string }; tasks: Array<{ vm: string; status: string; mode: string | null; bytesStored: number; pointId: string | null }> };
    const giveUpAt = Date.now() + 600_000;
    for (;;) {
      answer = JSON.parse((await api(url, token, 'GET', `/api/runs/${runId}`)).body) as typeof answer;
      if (answer.run.status !== 'running' || Date.now() > giveUpAt) break;
      await sleep(200);
    }
    io.say(`\n$ curl -H "Authorization: Bearer ..." ${url}/api/runs/${runId}`);
    for (const t of answer.tasks) io.say(`  ${t.vm}: ${t.status}, ${t.mode}, ${t.bytesStored} bytes stored, restore point ${t.pointId}`);
    io.check(answer.run.status === 'success' && answer.tasks.length > 0 && answer.tasks.every((t) => t.pointId), `run ${runId} ended success with a restore point per VM`);
    const metrics = (await api(url, token, 'GET', '/metrics')).body;
    io.say(`\n$ curl -H "Authorization: Bearer ..." ${url}/metrics   (some of it)`);
    for (const line of metrics.split('\n').filter((l) => /^vcbt_(job_last_success|vm_last_success|vm_results_total|repository_size)/.test(l))) io.say(`  ${line}`);
    io.check(/^vcbt_job_last_success_timestamp_seconds\{job="nightly"\} \d/m.test(metrics), 'the metrics show when the job last succeeded');
  } finally {
    daemon.child.kill('SIGTERM');
  }
  io.check((await daemon.exit) === 0, 'vcbt serve stopped cleanly on SIGTERM');
  for (const vm of lab.info.vms.filter((v) => v.name.startsWith('DC0_H0_'))) io.check((await lab.snapshots(vm.name)).length === 0, `no snapshot left on ${vm.name}`);
  await io.vcbt(['job', 'status', '--config', configFile]);
}

/** `npm run demo -- --serve`: the lab and the daemon until Ctrl-C; answers the daemon's exit code. */
export async function serveUntilInterrupted(lab: Lab, dir: string, io: DemoIo): Promise<number> {
  const { configFile, token } = await prepare(lab, dir, io, '*/10 * * * *');
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const daemon = serve(configFile, (line) => io.say(`  | ${line}`));
  try {
    const url = await daemon.url;
    await api(url, token, 'POST', '/api/jobs/nightly/run');
    io.say(`
vcbt serve runs on the lab (the job "nightly" also runs every 10 minutes; one run started now).

  API        ${url}   (OpenAPI document: ${url}/api/openapi.json)
  token      ${token}
  config     ${configFile}

  curl -H "Authorization: Bearer ${token}" ${url}/api/jobs
  curl -H "Authorization: Bearer ${token}" ${url}/api/runs
  curl -H "Authorization: Bearer ${token}" ${url}/metrics
  curl -X POST -H "Authorization: Bearer ${token}" ${url}/api/jobs/nightly/run
  npm run vcbt -- job status --config ${configFile}

Ctrl-C stops the daemon (gracefully) and the lab.
`);
    await Promise.race([new Promise((resolve) => stop.signal.addEventListener('abort', resolve, { once: true })), daemon.exit]);
  } finally {
    if (daemon.child.exitCode === null) daemon.child.kill('SIGTERM');
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return (await daemon.exit) ?? 1;
}
