// One VM: power, CBT, size, where it runs, its jobs with their RPO, its last task (mode and the
// reasons of a full), the timeline of its restore points across repositories (newest first:
// full / incremental / mixed with the reasons, bytes stored, each linking to Restore) and its
// replicas. Actions (each after a confirmation): back up this VM now (with the job that covers
// it, chosen when several do), enable CBT when it is off.
import { useState } from 'preact/hooks';
import { call } from '../api.ts';
import type { Point, VmPoint } from '../api-types.ts';
import { age, bytes, duration, time } from '../format.ts';
import { Confirm, ErrorCode, Loading, Page, Problem, Status, useApi } from '../ui.tsx';
import { protection } from './dashboard.tsx';
import { cbtLabel } from './vms.tsx';

export function pointMode(point: Point | VmPoint): 'full' | 'incremental' | 'mixed' {
  if ('mode' in point) return point.mode;
  const modes = new Set(point.disks.map((d) => d.mode));
  return modes.size > 1 ? 'mixed' : modes.has('full') ? 'full' : 'incremental';
}

export function VmPage({ server, moref, canAct }: { server: string; moref: string; canAct: boolean }) {
  const vms = useApi(() => call('GET /api/vms'), [], 5_000);
  const vm = vms.data?.vms.find((v) => v.server === server && v.moref === moref);
  const history = useApi(() => call('GET /api/vms/{server}/{moref}/points', { params: { server, moref } }), [server, moref, vm?.lastTask?.id]);
  const [confirming, setConfirming] = useState<'backup' | 'cbt' | null>(null);
  const [actionError, setActionError] = useState<unknown>(undefined);
  const [chosenJob, setChosenJob] = useState<string>('');
  const jobNames = vm?.jobs.map((j) => j.job) ?? [];
  const jobName = chosenJob || jobNames[0];
  const backUpNow = async () => {
    setConfirming(null);
    setActionError(undefined);
    try {
      const { runId } = await call('POST /api/vms/{server}/{moref}/backup', { params: { server, moref }, body: jobName ? { job: jobName } : {} });
      location.hash = `#/runs/${runId}`;
    } catch (e) {
      setActionError(e);
    }
  };
  const enableCbt = async () => {
    setConfirming(null);
    setActionError(undefined);
    try {
      await call('POST /api/vms/{server}/{moref}/cbt/enable', { params: { server, moref } });
      vms.reload();
    } catch (e) {
      setActionError(e);
    }
  };
  if (vms.error && !vms.data) return <Problem error={vms.error} />;
  if (!vms.data) return <Loading what="the VM" />;
  if (!vm) return <p>No VM {moref} on server {server}.</p>;
  const points = [...(history.data?.points ?? [])].reverse();
  return (
    <Page
      title={vm.name}
      actions={
        canAct ? (
          <>
            {vm.cbtEnabled === false ? (
              <button type="button" onClick={() => setConfirming('cbt')}>
                Enable CBT
              </button>
            ) : null}
            {jobNames.length > 0 ? (
              <button type="button" class="primary" onClick={() => setConfirming('backup')}>
                Back up now
              </button>
            ) : null}
          </>
        ) : null
      }
    >
      <Problem error={actionError} />
      <dl class="facts">
        <dt>server / moref</dt>
        <dd>
          {vm.server} / {vm.moref}
          {vm.inInventory === false ? ' (gone from the inventory)' : ''}
        </dd>
        <dt>power</dt>
        <dd>{vm.powerState ?? '—'}</dd>
        <dt>CBT</dt>
        <dd>
          <span class={`badge badge-cbt-${cbtLabel(vm)}`}>CBT {cbtLabel(vm)}</span>
        </dd>
        <dt>size</dt>
        <dd>{bytes(vm.provisionedBytes)}</dd>
        <dt>host / folder</dt>
        <dd>
          {vm.host ?? '—'} / {vm.folder ?? '—'}
        </dd>
        <dt>protection</dt>
        <dd>
          <span class={`badge badge-${protection(vm)}`}>{protection(vm)}</span> {vm.lastGood ? `last good point ${time(vm.lastGood.endedAt)} (${age(vm.lastGood.ageSeconds)})` : 'no good point'}
        </dd>
        <dt>jobs</dt>
        <dd>
          {vm.jobs.length === 0
            ? 'none covers it'
            : vm.jobs.map((j) => (
                <div>
                  {j.job}: RPO {j.rpoSeconds === null ? 'none' : duration(j.rpoSeconds)}
                  {j.breached ? <span class="badge badge-breach">breached</span> : null}
                </div>
              ))}
        </dd>
        <dt>last task</dt>
        <dd>
          {vm.lastTask ? (
            <>
              <Status status={vm.lastTask.status} /> <a href={`#/runs/${vm.lastTask.runId}`}>run {vm.lastTask.runId}</a> of {vm.lastTask.job} {vm.lastTask.mode ?? ''}
              {vm.lastTask.reasonCodes.length ? ` (${vm.lastTask.reasonCodes.join(', ')})` : ''} · read {bytes(vm.lastTask.bytesRead)}, stored {bytes(vm.lastTask.bytesStored)}
              {vm.lastTask.error ? (
                <>
                  {' '}
                  <ErrorCode code={vm.lastTask.error.code} /> {vm.lastTask.error.message}
                </>
              ) : null}
            </>
          ) : (
            'never backed up'
          )}
        </dd>
      </dl>
      <h2>Restore points</h2>
      <Problem error={history.error} />
      {history.data ? (
        points.length === 0 ? (
          <p class="muted">No restore point yet.</p>
        ) : (
          <ol class="timeline" aria-label={`restore points of ${vm.name}, newest first`}>
            {points.map((p) => (
              <li data-point={p.id}>
                <span class={`dot dot-${p.mode}`} aria-hidden="true" />
                <div>
                  <strong>{time(p.createdAt)}</strong> <span class={`badge badge-${p.mode}`}>{p.mode}</span>
                  {p.damaged ? <span class="badge badge-failed">damaged</span> : null} <code>{p.id}</code>
                  <div class="muted">
                    {p.repository}
                    {p.job ? ` · job ${p.job}` : ''}
                    {p.runId !== null ? ' · ' : ''}
                    {p.runId !== null ? <a href={`#/runs/${p.runId}`}>run {p.runId}</a> : null} · stored {bytes(p.bytesStored)}
                    {p.reasonCodes.length ? ` · ${p.reasonCodes.join(', ')}` : ''}
                  </div>
                  <div class="muted">{p.disks.map((d) => `${d.label} ${bytes(d.capacityBytes)} ${d.mode}, stored ${bytes(d.bytesStored)}`).join(' · ')}</div>
                  <a href={`#/restore/${encodeURIComponent(p.repository)}/${encodeURIComponent(p.id)}`}>Restore or verify…</a>
                </div>
              </li>
            ))}
          </ol>
        )
      ) : (
        <Loading what="restore points" />
      )}
      {history.data && history.data.replicas.length > 0 ? (
        <>
          <h2>Replicas</h2>
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">run</th>
                  <th scope="col">job</th>
                  <th scope="col">ended</th>
                  <th scope="col">mode</th>
                  <th scope="col">written</th>
                </tr>
              </thead>
              <tbody>
                {history.data.replicas.map((r) => (
                  <tr>
                    <th scope="row">
                      <a href={`#/runs/${r.runId}`}>run {r.runId}</a>
                    </th>
                    <td>{r.job}</td>
                    <td>{time(r.endedAt)}</td>
                    <td>
                      {r.mode ?? '—'} {r.reasonCodes.join(', ')}
                    </td>
                    <td>{bytes(r.bytesWritten)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      ) : null}
      {canAct ? (
        <>
          <Confirm open={confirming === 'backup'} title={`Back up ${vm.name} now?`} confirmLabel="Start the backup" onConfirm={() => void backUpNow()} onCancel={() => setConfirming(null)}>
            <p>
              This backs up <strong>{vm.name}</strong> alone now with job <strong>{jobName}</strong>: it takes a snapshot, copies what changed and adds a restore point. It overwrites nothing.
            </p>
            {jobNames.length > 1 ? (
              <>
                <label for="backup-job">Job</label>
                <select id="backup-job" value={jobName} onChange={(e) => setChosenJob(e.currentTarget.value)}>
                  {jobNames.map((j) => (
                    <option value={j}>{j}</option>
                  ))}
                </select>
              </>
            ) : null}
          </Confirm>
          <Confirm open={confirming === 'cbt'} title={`Enable CBT on ${vm.name}?`} confirmLabel="Enable CBT" onConfirm={() => void enableCbt()} onCancel={() => setConfirming(null)}>
            <p>
              This switches Changed Block Tracking on for <strong>{vm.name}</strong> ({vm.server}/{vm.moref}). {vm.powerState === 'poweredOn' ? 'The VM is powered on: vSphere applies it with a snapshot created and removed at once. ' : ''}
              Its next backup is a full copy; the later ones copy only what changed.
            </p>
          </Confirm>
        </>
      ) : null}
    </Page>
  );
}
