// A job run: every VM a job selects, each through the same backup/replicate job a single
// command runs (src/jobs), within the job's limits, with retries, then the job's retention.
//
// Vocabulary
// - run: one execution of a job; its *result* is `success` (every VM succeeded at once),
//   `failed` (no VM succeeded) or `warning` (anything between); exit codes 0 / 1 / 3.
// - VM result: `success`; `warning` when the VM was protected but something needs a look
//   (it took retries, a disk of a replication failed while the others completed, or the
//   job's retention could not run); `failed` when it was not protected. One VM's failure
//   never stops the others.
// - transient failure: one worth another attempt (a task fault such as SnapshotFault, a
//   network error, a lost snapshot, a locked repository); anything else (no CBT, a missing
//   disk, a wrong passphrase) fails the VM at once. A VM keeps its limit slots while it
//   waits for its retry, so the limits hold for retries too.
// - CBT: a VM whose CBT is off gets it switched on by the job (its first backup is then a
//   full), unless the job says `cbt: report`: then the VM is left untouched and fails.
// - one VM, one run at a time: across jobs, processes and hosts this is the snapshot
//   ownership rule of src/jobs/snapshot-owner.ts; a run waits up to the job's `waitBusy`
//   for a VM another run owns, then fails it with VM_BUSY (not retried: it already waited).
import { setTimeout as sleep } from 'node:timers/promises';
import { VcbtError, type ErrorCode } from '../errors.ts';
import { backup } from '../jobs/backup.ts';
import { replicate } from '../jobs/replicate.ts';
import { prune, Repository } from '../jobs/repository-admin.ts';
import { changeCbt, listVmPlacements, openVsphereSession } from '../jobs/vsphere-admin.ts';
import type { TransportOptions } from '../jobs/snapshot-source.ts';
import type { VmPlacement, VsphereSession } from '../vsphere/vsphere.ts';
import type { JobConfig, ServiceConfig } from './config.ts';
import { runWithLimits } from './limits.ts';
import { readSecret } from './secrets.ts';
import { globMatch, selectVms, type SelectedVm, type SelectionResult } from './selection.ts';

export type RunResult = 'success' | 'warning' | 'failed';

/** What happened to one VM in a run. */
export interface VmRunResult {
  name: string;
  moref: string;
  host: string | null;
  result: RunResult;
  attempts: number;
  /** The job switched CBT on before the first attempt. */
  cbtEnabledByJob: boolean;
  /** full, incremental, or mixed (disks differ); null when nothing was copied. */
  mode: 'full' | 'incremental' | 'mixed' | null;
  /** The disks' reason codes (copy-reason.ts), in disk order. */
  reasonCodes: string[];
  bytesRead: number;
  /** Bytes stored in the repository (backup) or written to targets (replicate). */
  bytesWritten: number;
  /** backup: the restore point made. */
  pointId: string | null;
  error: { code: ErrorCode; message: string } | null;
  warnings: string[];
  startedAt: string;
  endedAt: string;
}

export interface RetentionOutcome {
  removed: string[];
  kept: number;
  error: { code: ErrorCode; message: string } | null;
}

export interface JobRunResult {
  job: string;
  /** backup or replicate. */
  jobType: JobConfig['type'];
  result: RunResult;
  startedAt: string;
  endedAt: string;
  vms: VmRunResult[];
  /** VMs an include rule matched that the job left out, and why. */
  excluded: SelectionResult['excluded'];
  retention: RetentionOutcome | null;
}

/** What a run reports while it works (logs, the catalog, tests). */
export type JobEvent =
  | { type: 'log'; vm: string | null; line: string }
  | { type: 'vm-start'; vm: string; moref: string; host: string | null; datastores: readonly string[]; attempt: number }
  | { type: 'vm-end'; vm: string; moref: string; host: string | null; datastores: readonly string[]; attempt: number; error: { code: ErrorCode; message: string } | null }
  /** A VM is done (every attempt); retention may still turn a success into a warning (the run's result has the last word). */
  | { type: 'vm-result'; result: VmRunResult }
  /** Bytes of a disk copied so far in this attempt, of the bytes it has to copy (the snapshot job's progress). */
  | { type: 'progress'; vm: string; moref: string; deviceKey: number; doneBytes: number; totalBytes: number };

export interface RunJobOptions {
  config: ServiceConfig;
  job: JobConfig;
  env: NodeJS.ProcessEnv;
  /** Only these VMs of the selection (names or patterns); they must still be selected by the job. */
  onlyVms?: readonly string[];
  signal?: AbortSignal;
  /**
   * Once aborted, no further VM starts and no retry is attempted; VMs already working go on
   * (`signal` aborts those). A VM never started fails with INTERRUPTED. The daemon's
   * graceful stop.
   */
  drain?: AbortSignal;
  onEvent?: (event: JobEvent) => void;
}

/** Codes: JOB_NO_VMS. */
export class JobRunError extends VcbtError {}

/** Failures another attempt may cure. */
const transientCodes: ReadonlySet<string> = new Set([
  'VSPHERE_FAULT',
  'VSPHERE_UNREACHABLE',
  'VSPHERE_TIMEOUT',
  'VSPHERE_HTTP',
  'VSPHERE_NOT_AUTHENTICATED',
  'SNAPSHOT_LOST',
  'SNAPSHOT_REMOVE_FAILED',
  'HTTP_CUT',
  'HTTP_STALLED',
  'HTTP_STATUS',
  'HTTP_RESUME_EXHAUSTED',
  'NBD_TIMEOUT',
  'NBD_DISCONNECTED',
  'NBD_CONNECT',
  'DISK_SHORT_READ',
  'VDDK_START_FAILED',
  'REPO_LOCKED',
]);

export function isTransient(code: string): boolean {
  return transientCodes.has(code);
}

function errorOf(error: unknown): { code: ErrorCode; message: string } {
  if (error instanceof VcbtError) return { code: error.code, message: error.message };
  return { code: 'INTERNAL', message: error instanceof Error ? error.message : String(error) };
}

/** Logs in to the job's server with its secret; the caller logs out. */
export async function openJobSession(config: ServiceConfig, job: JobConfig, env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<VsphereSession> {
  if (!config.servers.has(job.server)) throw new VcbtError('CONFIG_INVALID', `job ${job.name}: no server "${job.server}"`, { job: job.name });
  return openServerSession(config, job.server, env, signal);
}

/** Logs in to a server of the configuration with its secret; the caller logs out. */
export async function openServerSession(config: ServiceConfig, name: string, env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<VsphereSession> {
  const server = config.servers.get(name);
  if (!server) throw new VcbtError('CONFIG_INVALID', `no server "${name}" in the configuration`, { server: name });
  const password = await readSecret(server.password, env, `servers.${server.name} password`);
  return openVsphereSession({ server: server.url, username: server.user, password, thumbprint: server.thumbprint, signal });
}

/** The job's selection against the inventory as it is now. */
export async function resolveSelection(session: VsphereSession, job: JobConfig, onlyVms?: readonly string[]): Promise<SelectionResult> {
  const selection = selectVms(await listVmPlacements(session), job.vms);
  if (!onlyVms || onlyVms.length === 0) return selection;
  return { selected: selection.selected.filter((s) => onlyVms.some((p) => globMatch(p, s.placement.vm.name))), excluded: selection.excluded };
}

async function openJobRepository(config: ServiceConfig, job: JobConfig, env: NodeJS.ProcessEnv): Promise<Repository | undefined> {
  if (job.type !== 'backup' || job.repository === undefined) return undefined;
  if (!config.repositories.has(job.repository)) throw new VcbtError('CONFIG_INVALID', `job ${job.name}: no repository "${job.repository}"`, { job: job.name });
  return openConfiguredRepository(config, job.repository, env, job.immutableDays);
}

/** Opens a repository of the configuration with its passphrase; the caller closes it. */
export async function openConfiguredRepository(config: ServiceConfig, name: string, env: NodeJS.ProcessEnv, immutableDays?: number): Promise<Repository> {
  const repo = config.repositories.get(name);
  if (!repo) throw new VcbtError('CONFIG_INVALID', `no repository "${name}" in the configuration`, { repository: name });
  const passphrase = repo.passphrase ? await readSecret(repo.passphrase, env, `repositories.${repo.name} passphrase`) : env.VCBT_PASSPHRASE || undefined;
  const s3 = repo.s3 && {
    endpoint: repo.s3.endpoint,
    region: repo.s3.region,
    pathStyle: repo.s3.pathStyle,
    caFile: repo.s3.caFile,
    profile: repo.s3.profile,
    credentials: repo.s3.accessKeyId && repo.s3.secretAccessKey ? { accessKeyId: repo.s3.accessKeyId, secretAccessKey: await readSecret(repo.s3.secretAccessKey, env, `repositories.${repo.name} s3 secretAccessKey`) } : undefined,
  };
  // undefined settings fall through to the environment (s3SettingsFrom).
  const entry = s3 && Object.fromEntries(Object.entries(s3).filter(([, v]) => v !== undefined));
  return Repository.open(repo.path, { passphrase, env, ...(entry ? { s3: entry } : {}), ...(immutableDays !== undefined ? { immutableDays } : {}) });
}

function transportFor(config: ServiceConfig, job: JobConfig, password: () => Promise<string>): Promise<TransportOptions> {
  const t = job.transport;
  const options: TransportOptions = { transport: t.type, nbdUriTemplate: t.nbdUri, datastoreDirs: t.datastoreDirs, ioTimeoutMs: t.ioTimeoutMs };
  if (t.type !== 'vddk' || !t.vddk) return Promise.resolve(options);
  const vddk = t.vddk;
  return password().then((pw) => ({ ...options, vddk: { libdir: vddk.libdir, user: config.servers.get(job.server)?.user ?? '', password: pw, transports: vddk.transports, nbdkitPath: vddk.nbdkit } }));
}

function expandTarget(template: string, vm: { name: string; moref: string }, diskKey: number): string {
  return template.replaceAll('{vm}', vm.name).replaceAll('{moref}', vm.moref).replaceAll('{disk}', String(diskKey));
}

function modeOf(modes: ReadonlyArray<'full' | 'incremental'>): VmRunResult['mode'] {
  if (modes.length === 0) return null;
  return modes.every((m) => m === modes[0]) ? (modes[0] as 'full' | 'incremental') : 'mixed';
}

/** Runs a job once over its selected VMs. JOB_NO_VMS when the selection is empty. */
export async function runJob(options: RunJobOptions): Promise<JobRunResult> {
  const { config, job, env, signal } = options;
  const emit = options.onEvent ?? (() => {});
  const startedAt = new Date().toISOString();
  const session = await openJobSession(config, job, env, signal);
  try {
    const selection = await resolveSelection(session, job, options.onlyVms);
    for (const x of selection.excluded) emit({ type: 'log', vm: x.name, line: `VM "${x.name}" not processed: ${x.reason}` });
    if (selection.selected.length === 0) {
      throw new JobRunError('JOB_NO_VMS', `job ${job.name} selects no VM${options.onlyVms?.length ? ` among --vm ${options.onlyVms.join(', ')}` : ''} (include: ${job.vms.include.map((r) => r.text).join(', ')})`, { job: job.name });
    }
    const repository = await openJobRepository(config, job, env);
    try {
      const server = config.servers.get(job.server);
      const transport = await transportFor(config, job, () => readSecret(server!.password, env, `servers.${job.server} password`));
      const items = selection.selected.map((s) => ({ selected: s, host: s.placement.host, datastores: s.placement.datastores }));
      emit({ type: 'log', vm: null, line: `job ${job.name}: ${items.length} VMs selected (${items.map((i) => i.selected.placement.vm.name).join(', ')}); limits: ${job.limits.total} at once, ${job.limits.perHost} per host, ${job.limits.perDatastore} per datastore` });
      const vms = await runWithLimits(items, job.limits, async (item) => {
        const done = await processVm({ ...options, session, repository, transport, emit }, item.selected);
        const { vmId: _, ...vmResult } = done;
        emit({ type: 'vm-result', result: { ...vmResult, warnings: [...vmResult.warnings], reasonCodes: [...vmResult.reasonCodes] } });
        return done;
      });
      let retention: RetentionOutcome | null = null;
      if (repository && job.retention) {
        const vmIds = new Set(vms.flatMap((v) => (v.result === 'failed' ? [] : [v.vmId])));
        retention = await applyRetention(repository, job, vmIds, emit);
        if (retention.error) for (const v of vms) if (v.result === 'success') v.result = 'warning';
        for (const v of vms) if (retention.error && v.result !== 'failed') v.warnings.push(`retention not applied: ${retention.error.code}: ${retention.error.message}`);
      }
      const results = vms.map(({ vmId: _, ...rest }) => rest);
      return { job: job.name, jobType: job.type, result: overall(results), startedAt, endedAt: new Date().toISOString(), vms: results, excluded: selection.excluded, retention };
    } finally {
      await repository?.close();
    }
  } finally {
    await session.logout().catch(() => undefined);
  }
}

export function overall(vms: readonly Pick<VmRunResult, 'result'>[]): RunResult {
  if (vms.length > 0 && vms.every((v) => v.result === 'success')) return 'success';
  if (vms.every((v) => v.result === 'failed')) return 'failed';
  return 'warning';
}

async function applyRetention(repository: Repository, job: JobConfig, vmIds: ReadonlySet<string>, emit: (e: JobEvent) => void): Promise<RetentionOutcome> {
  if (vmIds.size === 0) return { removed: [], kept: 0, error: null };
  try {
    const report = await prune(repository, job.retention!, { vmIds });
    emit({ type: 'log', vm: null, line: `retention: ${report.remove.length} restore points removed, ${report.keep.length} kept` });
    return { removed: report.remove.map((p) => p.id), kept: report.keep.length, error: null };
  } catch (error) {
    const e = errorOf(error);
    emit({ type: 'log', vm: null, line: `retention not applied: ${e.code}: ${e.message}` });
    return { removed: [], kept: 0, error: e };
  }
}

interface VmWork extends RunJobOptions {
  session: VsphereSession;
  repository: Repository | undefined;
  transport: TransportOptions;
  emit: (event: JobEvent) => void;
}

async function processVm(work: VmWork, selected: SelectedVm): Promise<VmRunResult & { vmId: string }> {
  const { job, session, emit, signal } = work;
  const placement: VmPlacement = selected.placement;
  const vm = { name: placement.vm.name, moref: placement.vm.moref.value };
  const log = (line: string) => emit({ type: 'log', vm: vm.name, line });
  const base = { name: vm.name, moref: vm.moref, host: placement.host ?? null, startedAt: new Date().toISOString() };
  const result: VmRunResult & { vmId: string } = {
    ...base,
    result: 'failed',
    attempts: 0,
    cbtEnabledByJob: false,
    mode: null,
    reasonCodes: [],
    bytesRead: 0,
    bytesWritten: 0,
    pointId: null,
    error: null,
    warnings: [],
    endedAt: '',
    vmId: '',
  };
  const where = { vm: vm.name, moref: vm.moref, host: placement.host ?? null, datastores: placement.datastores };
  const finish = () => {
    result.endedAt = new Date().toISOString();
    return result;
  };
  const stopped = () => signal?.aborted === true || work.drain?.aborted === true;
  if (stopped()) {
    result.error = { code: 'INTERRUPTED', message: `VM "${vm.name}" not started: the run is stopping` };
    log(result.error.message);
    return finish();
  }
  if (!placement.vm.cbtEnabled && job.cbt === 'report') {
    result.error = { code: 'CBT_NOT_ENABLED', message: `Changed Block Tracking is off on VM "${vm.name}" and the job is set to report it (cbt: report); enable it with: vcbt cbt enable --vm ${vm.moref}` };
    log(result.error.message);
    return finish();
  }
  for (let attempt = 1; ; attempt++) {
    result.attempts = attempt;
    emit({ type: 'vm-start', ...where, attempt });
    try {
      // Switching CBT on is part of the attempt: on a powered-on VM it takes a stun cycle
      // (a snapshot), which can fail transiently like the backup's own snapshot.
      if (!placement.vm.cbtEnabled && !result.cbtEnabledByJob) {
        await changeCbt(session, { moref: vm.moref }, 'enable');
        result.cbtEnabledByJob = true;
        log(`CBT was off on VM "${vm.name}": enabled by the job (its first backup is a full)`);
      }
      await copyVm(work, selected, result, log);
      emit({ type: 'vm-end', ...where, attempt, error: null });
      result.error = null;
      result.result = attempt > 1 || result.warnings.length > 0 ? 'warning' : 'success';
      if (attempt > 1) result.warnings.push(`succeeded on attempt ${attempt}`);
      return finish();
    } catch (error) {
      const e = errorOf(error);
      emit({ type: 'vm-end', ...where, attempt, error: e });
      result.error = e;
      const retriesLeft = attempt <= job.retries.count;
      if (stopped() || !retriesLeft || !isTransient(e.code)) {
        log(`failed (attempt ${attempt}): ${e.code}: ${e.message}`);
        return finish();
      }
      const delayMs = Math.round(job.retries.delayMs * job.retries.factor ** (attempt - 1));
      log(`attempt ${attempt} failed (${e.code}: ${e.message}); retrying in ${delayMs} ms`);
      try {
        await sleep(delayMs, undefined, { signal });
      } catch {
        return finish();
      }
    }
  }
}

/** One attempt: the backup or replicate job for the VM; fills the result's figures. */
async function copyVm(work: VmWork, selected: SelectedVm, result: VmRunResult & { vmId: string }, log: (line: string) => void): Promise<void> {
  const { job, session, repository, transport, signal } = work;
  const common = {
    session,
    vm: { moref: selected.placement.vm.moref.value },
    transport,
    quiesce: job.quiesce,
    waitBusyMs: job.waitBusyMs,
    resetCbtOnResize: job.resetCbtOnResize,
    signal,
    onEvent: log,
    onProgress: (deviceKey: number, doneBytes: number, totalBytes: number) =>
      work.emit({ type: 'progress', vm: selected.placement.vm.name, moref: selected.placement.vm.moref.value, deviceKey, doneBytes, totalBytes }),
  };
  if (job.type === 'backup') {
    const done = await backup({ ...common, repository: repository!, diskKeys: selected.diskKeys });
    result.vmId = done.vm.id;
    result.pointId = done.pointId;
    result.mode = modeOf(done.disks.map((d) => d.mode));
    result.reasonCodes = done.disks.map((d) => d.reasonCode);
    result.bytesRead = done.bytesRead;
    result.bytesWritten = done.bytesStored;
    return;
  }
  const replica = job.replica!;
  const vmRef = { name: selected.placement.vm.name, moref: selected.placement.vm.moref.value };
  const done = await replicate({
    ...common,
    env: work.env,
    stateDir: replica.stateDir,
    targets: (disks) => new Map(disks.filter((d) => !selected.diskKeys || selected.diskKeys.includes(d.key)).map((d) => [d.key, expandTarget(replica.target, vmRef, d.key)])),
  });
  result.vmId = vmRef.moref;
  result.mode = modeOf(done.disks.map((d) => d.mode));
  result.reasonCodes = done.disks.map((d) => d.reasonCode);
  result.bytesRead = done.disks.reduce((sum, d) => sum + d.bytesCopied, 0);
  result.bytesWritten = done.disks.reduce((sum, d) => sum + d.bytesCopied + d.bytesZeroed, 0);
  for (const f of done.failedDisks) result.warnings.push(`disk ${f.deviceKey} failed: ${f.code}: ${f.message}`);
}
