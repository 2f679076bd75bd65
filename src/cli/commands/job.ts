// `vcbt job list|run|status|verify`: the jobs of a service configuration (docs/service.md). `list`
// shows each job's schedule and next run (and with --vms the VMs it selects now); `run` runs
// one job over its VMs, records it in the catalog and exits 0 (success), 3 (warning: some VMs
// failed or needed retries) or 1 (failed: no VM protected); `status` reads the catalog;
// `verify` verifies the job's restore points now as its verify schedule would.
import { UsageError } from '../../errors.ts';
import { jobByName, loadConfig } from '../../service/config.ts';
import { summarizeJob } from '../../service/schedule.ts';
import { openJobSession, resolveSelection, type JobEvent } from '../../service/run.ts';
import { openCatalog } from '../../service/catalog/open.ts';
import { recoverCatalog, runRecorded } from '../../service/catalog/record.ts';
import { jobStatus } from '../../service/catalog/status.ts';
import { runVerification } from '../../service/verify.ts';
import { ExitCode, type Command, type CommandIo } from '../command.ts';
import { parseFlags } from '../flags.ts';
import { writeJsonDocument } from '../json-output.ts';
import { documentHeader, type JobListDocument, type JobStatusDocument } from '../json-documents.ts';

const usage = `usage: vcbt job list --config FILE [--vms] [--json]
       vcbt job run NAME --config FILE [--vm NAME ...] [--json]
       vcbt job status --config FILE [--job NAME] [--runs N] [--json]
       vcbt job verify NAME --config FILE [--json]

  list    the jobs: type, server, target, schedule and next run; --vms also logs in to each
          job's server and lists the VMs it selects now (and those it excludes, and why)
  run     runs job NAME once over the VMs it selects (--vm: only these of them; names or
          patterns), within its limits, with its retries and retention; per VM and overall
          success / warning / failed. Exit codes: 0 success, 3 warning, 1 failed. The run,
          its VMs and its log lines are recorded in the catalog (catalog.path).
  status  per job its latest runs (--runs N, default 5) from the catalog, the VMs of the
          newest one, and when the job last protected its VMs; runs whose process died are
          shown (and recorded) as interrupted
  verify  verifies the restore points backup job NAME made, now, as its verify schedule
          does (its verify.points and verify.readData; without a verify key: the newest
          point of each VM, every chunk read); recorded in the catalog. Exit 0 clean, 1 a
          problem found (the damaged restore points are listed)

  --config FILE   the service configuration (docs/service.md; check it with vcbt config check)
  --json          machine-readable document on stdout (docs/json.md)`;

async function status(values: { config: string; job?: string; runs: number; json: boolean }, io: CommandIo): Promise<ExitCode> {
  const config = await loadConfig(values.config);
  if (values.job !== undefined) jobByName(config, values.job);
  const catalog = openCatalog(config.catalog);
  try {
    await recoverCatalog(catalog, config.catalog.keepHistoryMs);
    const jobs = await jobStatus(config, catalog, { runs: values.runs, job: values.job });
    if (values.json) {
      const document: JobStatusDocument = { ...documentHeader('job-status'), file: config.file, catalog: config.catalog.path, jobs };
      writeJsonDocument(io, document);
      return ExitCode.ok;
    }
    for (const j of jobs) {
      io.stdout.write(`${j.name}  ${j.type}; last protected ${j.lastGoodAt ?? 'never'}\n`);
      const v = j.lastVerification;
      if (v) io.stdout.write(`  verified ${v.endedAt ?? '(running)'}  ${v.status}: ${v.pointsChecked} restore points, ${v.chunksChecked} chunks${v.error ? `; ${v.error.code}: ${v.error.message}` : ''}\n`);
      for (const r of j.runs) {
        io.stdout.write(`  run ${r.id}  ${r.status.padEnd(11)} ${r.startedAt} .. ${r.endedAt ?? '(running)'}  ${r.trigger}${r.error ? `  ${r.error.code}: ${r.error.message}` : ''}\n`);
      }
      for (const t of j.lastRunTasks) {
        const figures = t.error ? `${t.error.code}: ${t.error.message}` : `${t.mode ?? '-'}, ${t.bytesRead} bytes read, ${t.bytesStored} bytes stored${t.pointId ? `, restore point ${t.pointId}` : ''}`;
        io.stdout.write(`    ${t.status.padEnd(11)} ${t.vm}  ${figures}\n`);
      }
    }
    return ExitCode.ok;
  } finally {
    await catalog.close();
  }
}

const resultExit = { success: ExitCode.ok, warning: ExitCode.partial, failed: ExitCode.failure } as const;

function eventLine(event: JobEvent): string | undefined {
  const at = new Date().toISOString();
  if (event.type === 'log') return `${at} ${event.vm ? `[${event.vm}] ` : ''}${event.line}`;
  if (event.type === 'vm-start') return `${at} [${event.vm}] start (attempt ${event.attempt}, host ${event.host ?? '?'})`;
  return undefined;
}

async function list(values: { config?: string; vms: boolean; json: boolean }, io: CommandIo): Promise<ExitCode> {
  const config = await loadConfig(values.config as string);
  const now = new Date();
  const document: JobListDocument = { ...documentHeader('job-list'), file: config.file, jobs: [] };
  for (const job of config.jobs.values()) {
    const entry: JobListDocument['jobs'][number] = {
      ...summarizeJob(job, now),
      selected: null,
      excluded: null,
    };
    if (values.vms) {
      const session = await openJobSession(config, job, io.env, io.signal);
      try {
        const selection = await resolveSelection(session, job);
        entry.selected = selection.selected.map((s) => ({ name: s.placement.vm.name, moref: s.placement.vm.moref.value, host: s.placement.host ?? null, excludedDiskKeys: s.excludedDiskKeys }));
        entry.excluded = selection.excluded;
      } finally {
        await session.logout().catch(() => undefined);
      }
    }
    document.jobs.push(entry);
  }
  if (values.json) {
    writeJsonDocument(io, document);
    return ExitCode.ok;
  }
  for (const j of document.jobs) {
    const when = j.schedule ? `"${j.schedule}"${j.timezone ? ` ${j.timezone}` : ''}, next ${j.nextRun ?? 'never'}` : 'no schedule';
    io.stdout.write(`${j.name}  ${j.type} from ${j.server} to ${j.target}; ${when}\n`);
    for (const vm of j.selected ?? []) io.stdout.write(`  selects  ${vm.name} (${vm.moref}, host ${vm.host ?? '?'})${vm.excludedDiskKeys.length ? `, without disks ${vm.excludedDiskKeys.join(', ')}` : ''}\n`);
    for (const vm of j.excluded ?? []) io.stdout.write(`  excludes ${vm.name} (${vm.moref}): ${vm.reason}\n`);
  }
  return ExitCode.ok;
}

async function verifyNow(values: { config: string; name: string; json: boolean }, io: CommandIo): Promise<ExitCode> {
  const config = await loadConfig(values.config);
  const job = jobByName(config, values.name);
  if (job.type !== 'backup') throw new UsageError(`job ${job.name} is a replicate job; only backup jobs have restore points to verify`);
  const catalog = openCatalog(config.catalog);
  try {
    await recoverCatalog(catalog, config.catalog.keepHistoryMs);
    const record = await runVerification({
      config,
      job,
      catalog,
      env: io.env,
      trigger: 'manual',
      log: (line) => io.stderr.write(`${new Date().toISOString()} ${line}\n`),
      verify: job.verify ?? { schedule: { cron: '@daily', timezone: undefined }, points: 'latest', readData: true },
    });
    if (values.json) writeJsonDocument(io, { ...documentHeader('job-verify'), ...record });
    else io.stdout.write(`${record.status}: job ${job.name}, ${record.pointsChecked} restore points, ${record.chunksChecked} chunks${record.readData ? ' read' : ' present'}${record.error ? `; ${record.error.code}: ${record.error.message}` : ''}\n`);
    return record.status === 'success' ? ExitCode.ok : ExitCode.failure;
  } finally {
    await catalog.close();
  }
}

export const jobCommand: Command = {
  name: 'job',
  summary: 'list, run and verify the protection jobs of a service configuration',
  usage,
  async run(args, io) {
    const { values, positionals } = parseFlags({
      args,
      strict: true,
      allowPositionals: true,
      options: {
        config: { type: 'string' },
        vm: { type: 'string', multiple: true },
        vms: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        job: { type: 'string' },
        runs: { type: 'string' },
      },
    });
    const [action, name, ...extra] = positionals;
    if (!values.config) throw new UsageError(`job needs --config FILE\n\n${usage}`);
    if (action === 'list') {
      if (name !== undefined) throw new UsageError(`job list takes no job name\n\n${usage}`);
      return list({ config: values.config, vms: values.vms, json: values.json }, io);
    }
    if (action === 'status') {
      if (name !== undefined) throw new UsageError(`job status takes no job name (use --job NAME)\n\n${usage}`);
      const runs = values.runs === undefined ? 5 : Number(values.runs);
      if (!Number.isSafeInteger(runs) || runs < 1) throw new UsageError(`--runs wants a whole number, at least 1\n\n${usage}`);
      return status({ config: values.config, job: values.job, runs, json: values.json }, io);
    }
    if (action === 'verify') {
      if (name === undefined || extra.length > 0) throw new UsageError(`job verify wants one job NAME\n\n${usage}`);
      return verifyNow({ config: values.config, name, json: values.json }, io);
    }
    if (action !== 'run') throw new UsageError(`job wants an action: list, run, status or verify\n\n${usage}`);
    if (name === undefined || extra.length > 0) throw new UsageError(`job run wants one job NAME\n\n${usage}`);
    const config = await loadConfig(values.config);
    const job = jobByName(config, name);
    const catalog = openCatalog(config.catalog);
    let result;
    try {
      await recoverCatalog(catalog, config.catalog.keepHistoryMs);
      ({ result } = await runRecorded({
        catalog,
        trigger: 'manual',
        config,
        job,
        env: io.env,
        onlyVms: values.vm,
        signal: io.signal,
        onRunId: (runId) => io.stderr.write(`${new Date().toISOString()} job ${job.name}: run ${runId}\n`),
        onEvent: (event) => {
          const line = eventLine(event);
          if (line !== undefined) io.stderr.write(`${line}\n`);
        },
      }));
    } finally {
      await catalog.close();
    }
    if (values.json) {
      writeJsonDocument(io, { ...documentHeader('job-run'), ...result });
    } else {
      for (const vm of result.vms) {
        const figures = vm.result === 'failed' ? `${vm.error?.code}: ${vm.error?.message}` : `${vm.mode}, ${vm.bytesRead} bytes read, ${vm.bytesWritten} bytes written${vm.pointId ? `, restore point ${vm.pointId}` : ''}`;
        io.stdout.write(`${vm.result.padEnd(7)}  ${vm.name}  ${figures}${vm.attempts > 1 ? ` (${vm.attempts} attempts)` : ''}${vm.warnings.length ? `; ${vm.warnings.join('; ')}` : ''}\n`);
      }
      if (result.retention) io.stdout.write(`retention: ${result.retention.error ? `not applied (${result.retention.error.code})` : `${result.retention.removed.length} restore points removed, ${result.retention.kept} kept`}\n`);
      io.stdout.write(`job ${result.job}: ${result.result} (${result.vms.filter((v) => v.result !== 'failed').length} of ${result.vms.length} VMs protected)\n`);
    }
    return resultExit[result.result];
  },
};
