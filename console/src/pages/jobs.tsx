// Jobs and runs: the jobs with their schedule and next run (and "run now"), the run history as
// a chart (duration; bytes stored once a run's tasks are read) and a table linking each run.
import { useState } from 'preact/hooks';
import { call } from '../api.ts';
import type { Job } from '../api-types.ts';
import { TimeChart } from '../chart.tsx';
import { duration, secondsBetween, time } from '../format.ts';
import { Confirm, Loading, Page, Problem, Status, useApi } from '../ui.tsx';

export function JobsPage({ canAct }: { canAct: boolean }) {
  const jobs = useApi(() => call('GET /api/jobs'), [], 5_000);
  const runs = useApi(() => call('GET /api/runs', { query: { limit: 100 } }), [], 5_000);
  const [confirm, setConfirm] = useState<Job | null>(null);
  const [error, setError] = useState<unknown>(undefined);
  const runNow = async (job: Job) => {
    setConfirm(null);
    try {
      const { runId } = await call('POST /api/jobs/{name}/run', { params: { name: job.name } });
      location.hash = `#/runs/${runId}`;
    } catch (e) {
      setError(e);
    }
  };
  const ended = (runs.data?.runs ?? []).filter((r) => r.endedAt).reverse();
  return (
    <Page title="Jobs and runs">
      <Problem error={error ?? jobs.error ?? runs.error} />
      {jobs.data ? (
        <div class="table-wrap">
          <table>
            <caption class="visually-hidden">jobs</caption>
            <thead>
              <tr>
                <th scope="col">job</th>
                <th scope="col">type and target</th>
                <th scope="col">schedule</th>
                <th scope="col">next run</th>
                <th scope="col">last run</th>
                {canAct ? <th scope="col">action</th> : null}
              </tr>
            </thead>
            <tbody>
              {jobs.data.jobs.map((j) => (
                <tr data-job={j.name}>
                  <th scope="row">{j.name}</th>
                  <td>
                    {j.type} → {j.target} <span class="muted">({j.server})</span>
                  </td>
                  <td>{j.schedule ? <code>{j.schedule}</code> : <span class="muted">on demand</span>} {j.timezone ?? ''}</td>
                  <td>{time(j.nextRun)}</td>
                  <td>
                    {j.runningRunId !== null ? (
                      <a href={`#/runs/${j.runningRunId}`}>
                        <Status status="running" /> run {j.runningRunId}
                      </a>
                    ) : j.lastRun ? (
                      <a href={`#/runs/${j.lastRun.id}`}>
                        <Status status={j.lastRun.status} /> run {j.lastRun.id}
                      </a>
                    ) : (
                      'never'
                    )}
                  </td>
                  {canAct ? (
                    <td>
                      <button type="button" class="primary" disabled={j.runningRunId !== null} onClick={() => setConfirm(j)}>
                        Run {j.name} now
                      </button>
                    </td>
                  ) : null}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : (
        <Loading what="jobs" />
      )}
      <h2>Run history</h2>
      <TimeChart
        caption="Duration of each run"
        xs={ended.map((r) => Date.parse(r.startedAt) / 1000)}
        series={[{ label: 'duration', colour: '--chart-1', bars: true, format: (v) => duration(v), values: ended.map((r) => secondsBetween(r.startedAt, r.endedAt)) }]}
      />
      {runs.data ? (
        <div class="table-wrap">
          <table>
            <caption class="visually-hidden">runs, newest first</caption>
            <thead>
              <tr>
                <th scope="col">run</th>
                <th scope="col">job</th>
                <th scope="col">result</th>
                <th scope="col">trigger</th>
                <th scope="col">started</th>
                <th scope="col">duration</th>
              </tr>
            </thead>
            <tbody>
              {runs.data.runs.map((r) => (
                <tr>
                  <th scope="row">
                    <a href={`#/runs/${r.id}`}>run {r.id}</a>
                  </th>
                  <td>{r.job}</td>
                  <td>
                    <Status status={r.status} />
                  </td>
                  <td>{r.trigger}</td>
                  <td>{time(r.startedAt)}</td>
                  <td>{duration(secondsBetween(r.startedAt, r.endedAt))}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : (
        <Loading what="runs" />
      )}
      {canAct ? (
      <Confirm open={confirm !== null} title={`Run ${confirm?.name ?? ''} now?`} confirmLabel="Start the run" onConfirm={() => confirm && void runNow(confirm)} onCancel={() => setConfirm(null)}>
        <p>
          This backs up every VM job <strong>{confirm?.name}</strong> selects, now ({confirm?.type} to {confirm?.target}). It adds restore points and overwrites nothing.
        </p>
      </Confirm>
      ) : null}
    </Page>
  );
}
