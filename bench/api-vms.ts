// The API's VM list with a few thousand VMs in the catalog: latency of GET /api/vms.
//
// Seeds a catalog with VMS VMs, each backed up by RUNS runs of one job (one task per VM and
// run, half of the last ones failed), starts the daemon's API in this process with a server
// that cannot be reached (its inventory read fails at once and is cached, so what is measured
// is the catalog and the protection computation, the part that grows with the estate), and
// times REQUESTS sequential requests. Usage: node bench/api-vms.ts [VMS] [RUNS] [REQUESTS]
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startApiServer } from '../src/api/server.ts';
import { openSqliteCatalog } from '../src/service/catalog/sqlite.ts';
import { loadConfig } from '../src/service/config.ts';
import { Daemon } from '../src/service/daemon.ts';
import { createToken } from '../src/service/tokens.ts';

const vms = Number(process.argv[2] ?? 3000);
const runs = Number(process.argv[3] ?? 10);
const requests = Number(process.argv[4] ?? 20);
const dir = await mkdtemp(join(tmpdir(), 'vcbt-bench-api-'));
try {
  const file = join(dir, 'vcbt.yaml');
  await writeFile(
    file,
    `servers:
  down: { url: "https://127.0.0.1:1/sdk", user: u, passwordEnv: BENCH_PW }
repositories:
  main: { path: repo }
catalog: { path: catalog.sqlite }
daemon: { listen: "127.0.0.1:0" }
jobs:
  nightly: { type: backup, server: down, repository: main, vms: { include: ["*"] }, schedule: "0 2 * * *" }
`,
  );
  const config = await loadConfig(file);
  const catalog = openSqliteCatalog(config.catalog.path);
  const seedStart = performance.now();
  for (let r = 0; r < runs; r++) {
    const at = new Date(Date.now() - (runs - r) * 86_400_000).toISOString();
    const runId = await catalog.startRun({ job: 'nightly', jobType: 'backup', trigger: 'schedule', startedAt: at, host: 'bench', pid: 1 });
    for (let v = 0; v < vms; v++) {
      const task = await catalog.startTask(runId, { vm: `vm-${v}`, moref: `vm-${1000 + v}`, host: 'esx', startedAt: at });
      const failed = r === runs - 1 && v % 2 === 0;
      await catalog.endTask(task, { status: failed ? 'failed' : 'success', endedAt: at, attempts: 1, mode: 'incremental', reasonCodes: ['CBT'], bytesRead: 1, bytesStored: 1, pointId: failed ? null : `p-${r}-${v}`, error: failed ? { code: 'VSPHERE_FAULT', message: 'x' } : null, warnings: [] });
    }
    await catalog.endRun(runId, { status: 'warning', endedAt: at, error: null });
  }
  const seedSeconds = (performance.now() - seedStart) / 1000;
  const { token } = await createToken(catalog, { readOnly: true, note: 'bench' });
  const daemon = new Daemon({ config, catalog, env: { BENCH_PW: 'x' }, log: () => {} });
  const api = await startApiServer({ config, catalog, daemon, log: () => {}, env: { BENCH_PW: 'x' } });
  try {
    const times: number[] = [];
    let count = 0;
    for (let i = 0; i < requests; i++) {
      const start = performance.now();
      const response = await fetch(`${api.url}/api/vms`, { headers: { authorization: `Bearer ${token}` } });
      const body = (await response.json()) as { vms: unknown[] };
      times.push(performance.now() - start);
      count = body.vms.length;
    }
    const sorted = [...times].sort((a, b) => a - b);
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!.toFixed(1);
    console.log(JSON.stringify({ vms, runs, tasks: vms * runs, seedSeconds: Number(seedSeconds.toFixed(1)), answeredVms: count, requests, firstMs: Number(times[0]!.toFixed(1)), medianMs: Number(at(0.5)), p95Ms: Number(at(0.95)), rssMiB: Math.round(process.memoryUsage().rss / 1048576) }));
  } finally {
    await api.close();
    await catalog.close();
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
