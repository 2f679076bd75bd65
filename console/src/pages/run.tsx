// One run: its result, a progress bar for the run and one per VM (and per disk while the
// daemon streams progress), each VM's mode, bytes, restore point and error (its code links to
// what to do), and the run's log. While the run works the page follows it: per-disk bytes from
// the run's Server-Sent Events (run-events.ts), the run, its VMs and its log reloaded every
// second.
import { useEffect, useState } from 'preact/hooks';
import { call } from '../api.ts';
import type { Task } from '../api-types.ts';
import { bytes, duration, secondsBetween, time } from '../format.ts';
import { errorDoc } from '../errors-doc.ts';
import { vmHref } from './vms.tsx';
import { useRunEvents, vmFraction, type LiveVm } from '../run-events.ts';
import { ErrorCode, Loading, Page, Problem, Progress, Status, useApi } from '../ui.tsx';

function taskFraction(task: Task, live: LiveVm | undefined): number | null {
  if (task.status !== 'running') return 1;
  // All bytes copied is not done yet (the point is committed, the snapshot removed): 99 % at most until the VM ends.
  const fraction = live ? vmFraction(live) : null;
  return fraction === null ? null : Math.min(0.99, fraction);
}

export function RunPage({ id }: { id: number }) {
  const [running, setRunning] = useState(true);
  const run = useApi(() => call('GET /api/runs/{id}', { params: { id } }), [id], running ? 1_000 : 0);
  const jobs = useApi(() => call('GET /api/jobs'), []);
  const live = useRunEvents(id);
  const logs = useApi(() => call('GET /api/runs/{id}/logs', { params: { id } }), [id], running ? 1_000 : 0);
  useEffect(() => {
    if (run.data) setRunning(run.data.run.status === 'running');
  }, [run.data?.run.status]);
  if (run.error && !run.data) return <Problem error={run.error} />;
  if (!run.data) return <Loading what={`run ${id}`} />;
  const { run: r, tasks } = run.data;
  const server = jobs.data?.jobs.find((j) => j.name === r.job)?.server;
  const done = tasks.filter((t) => t.status !== 'running').length;
  // Live: VMs at work count by the bytes they copied so far.
  const partial = tasks.filter((t) => t.status === 'running').reduce((n, t) => n + (taskFraction(t, live.vms.get(t.moref)) ?? 0), 0);
  const overall = r.status !== 'running' ? 1 : tasks.length === 0 ? null : (done + partial) / tasks.length;
  return (
    <Page title={`Run ${r.id} of ${r.job}`}>
      <dl class="facts">
        <dt>result</dt>
        <dd>
          <Status status={r.status} />
          {r.error ? (
            <>
              {' '}
              <ErrorCode code={r.error.code} /> {r.error.message}
            </>
          ) : null}
        </dd>
        <dt>started</dt>
        <dd>
          {time(r.startedAt)} ({r.trigger})
        </dd>
        <dt>duration</dt>
        <dd>{r.endedAt ? duration(secondsBetween(r.startedAt, r.endedAt)) : 'running'}</dd>
      </dl>
      <Progress label={`run ${r.id}`} fraction={overall} detail={`${done} of ${tasks.length} VMs done`} />
      <h2>VMs</h2>
      {tasks.length === 0 ? <p class="muted">No VM started yet.</p> : null}
      <ul class="tasks">
        {tasks.map((t) => {
          const doc = t.error ? errorDoc(t.error.code) : undefined;
          return (
            <li data-vm={t.vm} class={`task task-${t.status}`}>
              <div class="task-head">
                {server ? <a href={vmHref({ server, moref: t.moref })}>{t.vm}</a> : <strong>{t.vm}</strong>} <Status status={t.status} /> {t.mode ?? ''}
                {t.reasonCodes.length ? <span class="muted"> ({t.reasonCodes.join(', ')})</span> : null}
                {t.attempts > 1 ? <span class="muted"> · {t.attempts} attempts</span> : null}
              </div>
              <Progress label={t.vm} fraction={taskFraction(t, live.vms.get(t.moref))} detail={t.status === 'running' ? (live.vms.get(t.moref)?.phase ?? 'working') : `read ${bytes(t.bytesRead)}, stored ${bytes(t.bytesStored)}`} />
              {t.status === 'running'
                ? (live.vms.get(t.moref)?.disks ?? []).map((d) => (
                    <div class="disk-progress">
                      <Progress label={`${t.vm} disk ${d.deviceKey}`} fraction={d.totalBytes > 0 ? d.doneBytes / d.totalBytes : null} detail={`${bytes(d.doneBytes)} of ${bytes(d.totalBytes)}`} />
                    </div>
                  ))
                : null}
              {t.pointId ? (
                <div class="muted">
                  restore point <code>{t.pointId}</code>
                </div>
              ) : null}
              {t.error ? (
                <div class="problem" role="alert">
                  <ErrorCode code={t.error.code} /> {t.error.message}
                  {doc ? <div class="todo">What to do: {doc.todo}</div> : null}
                </div>
              ) : null}
              {t.warnings.map((w) => (
                <div class="warning-line">{w}</div>
              ))}
            </li>
          );
        })}
      </ul>
      <h2>Log</h2>
      <Problem error={logs.error} />
      <pre class="log" tabIndex={0} aria-label={`log of run ${r.id}`}>
        {(logs.data?.lines ?? []).map((l) => `${l.at} ${l.vm ? `[${l.vm}] ` : ''}${l.line}\n`).join('')}
      </pre>
    </Page>
  );
}
