// One VM: its protection, its last task (mode and the reasons of a full), and the timeline of
// its restore points in its job's repository (newest first: full or incremental per disk,
// each with a link to restore from it). Action: back up now (runs the VM's job).
import { useState } from 'preact/hooks';
import { ApiFailure, call } from '../api.ts';
import type { Point } from '../api-types.ts';
import { age, bytes, time } from '../format.ts';
import { Confirm, ErrorCode, Loading, Page, Problem, Status, repositoryOf, useApi } from '../ui.tsx';
import { protection } from './dashboard.tsx';

export function pointMode(point: Point): 'full' | 'incremental' | 'mixed' {
  const modes = new Set(point.disks.map((d) => d.mode));
  return modes.size > 1 ? 'mixed' : modes.has('full') ? 'full' : 'incremental';
}

export function VmPage({ moref, canAct }: { moref: string; canAct: boolean }) {
  const vms = useApi(() => call('GET /api/vms'), [], 5_000);
  const jobs = useApi(() => call('GET /api/jobs'), []);
  const vm = vms.data?.vms.find((v) => v.moref === moref);
  const jobName = vm?.lastGood?.job ?? vm?.lastTask.job;
  const job = jobs.data?.jobs.find((j) => j.name === jobName);
  const repository = job ? repositoryOf(job.target) : null;
  const points = useApi(async () => (repository ? (await call('GET /api/repositories/{name}/points', { params: { name: repository } })).points : []), [repository, vm?.lastTask.id], 0);
  // A point names its VM by instance UUID (vm.id): the one of the VM's last good point, else its name.
  const vmId = points.data?.find((p) => p.id === vm?.lastGood?.pointId)?.vm.id;
  const mine = (points.data ?? []).filter((p) => (vmId ? p.vm.id === vmId : p.vm.name === vm?.name)).reverse();
  const [confirming, setConfirming] = useState(false);
  const [actionError, setActionError] = useState<unknown>(undefined);
  const backUpNow = async () => {
    setConfirming(false);
    try {
      const { runId } = await call('POST /api/jobs/{name}/run', { params: { name: jobName as string } });
      location.hash = `#/runs/${runId}`;
    } catch (e) {
      setActionError(e);
    }
  };
  if (vms.error) return <Problem error={vms.error} />;
  if (!vms.data) return <Loading what="the VM" />;
  if (!vm) return <p>No VM {moref} in the catalog.</p>;
  return (
    <Page
      title={vm.name}
      actions={
        canAct && jobName ? (
          <button type="button" class="primary" onClick={() => setConfirming(true)}>
            Back up now
          </button>
        ) : null
      }
    >
      <Problem error={actionError instanceof ApiFailure ? actionError : actionError} />
      <dl class="facts">
        <dt>moref</dt>
        <dd>{vm.moref}</dd>
        <dt>protection</dt>
        <dd>
          <span class={`badge badge-${protection(vm)}`}>{protection(vm)}</span>
        </dd>
        <dt>job</dt>
        <dd>{jobName}</dd>
        <dt>last good point</dt>
        <dd>{vm.lastGood ? `${time(vm.lastGood.endedAt)} (${age(vm.lastGood.ageSeconds)})` : 'none'}</dd>
        <dt>last task</dt>
        <dd>
          <Status status={vm.lastTask.status} /> <a href={`#/runs/${vm.lastTask.runId}`}>run {vm.lastTask.runId}</a> {vm.lastTask.mode ?? ''}
          {vm.lastTask.reasonCodes.length ? ` (${vm.lastTask.reasonCodes.join(', ')})` : ''} · read {bytes(vm.lastTask.bytesRead)}, stored {bytes(vm.lastTask.bytesStored)}
          {vm.lastTask.error ? (
            <>
              {' '}
              <ErrorCode code={vm.lastTask.error.code} /> {vm.lastTask.error.message}
            </>
          ) : null}
        </dd>
      </dl>
      <h2>Restore points{repository ? ` in ${repository}` : ''}</h2>
      <Problem error={points.error} />
      {points.data ? (
        mine.length === 0 ? (
          <p class="muted">No restore point yet.</p>
        ) : (
          <ol class="timeline" aria-label={`restore points of ${vm.name}, newest first`}>
            {mine.map((p) => (
              <li data-point={p.id}>
                <span class={`dot dot-${pointMode(p)}`} aria-hidden="true" />
                <div>
                  <strong>{time(p.createdAt)}</strong> <span class={`badge badge-${pointMode(p)}`}>{pointMode(p)}</span> <code>{p.id}</code>
                  <div class="muted">
                    {p.disks.map((d) => `${d.label} ${bytes(d.capacityBytes)} ${d.mode}`).join(' · ')}
                  </div>
                  <a href={`#/restore/${encodeURIComponent(repository as string)}/${encodeURIComponent(p.id)}`}>Restore or verify…</a>
                </div>
              </li>
            ))}
          </ol>
        )
      ) : (
        <Loading what="restore points" />
      )}
      {canAct ? (
      <Confirm open={confirming} title={`Back up ${vm.name} now?`} confirmLabel="Start the run" onConfirm={() => void backUpNow()} onCancel={() => setConfirming(false)}>
        <p>
          This starts a run of job <strong>{jobName}</strong> now, which backs up every VM the job selects. It overwrites nothing: it adds restore points.
        </p>
      </Confirm>
      ) : null}
    </Page>
  );
}
