// The dashboard: VMs protected / unprotected / past the RPO of one of their jobs, the last 24 hours of runs by
// result, a chart of run durations, per repository stored vs logical bytes over time (the
// reduction ratio), and the next scheduled runs.
import { call } from '../api.ts';
import type { Vm } from '../api-types.ts';
import { TimeChart } from '../chart.tsx';
import { bytes, duration, time } from '../format.ts';
import { Loading, Page, Problem, Status, useApi } from '../ui.tsx';

/** A VM past the RPO of one of its jobs; else protected when it has a good point. */
export function protection(vm: Vm): 'protected' | 'unprotected' | 'breach' {
  if (vm.jobs.some((j) => j.breached === true)) return 'breach';
  return vm.lastGood ? 'protected' : 'unprotected';
}

export function Dashboard() {
  const vms = useApi(() => call('GET /api/vms'), [], 10_000);
  const jobs = useApi(() => call('GET /api/jobs'), [], 10_000);
  const runs = useApi(() => call('GET /api/runs', { query: { limit: 200 } }), [], 10_000);
  const repositories = useApi(async () => {
    const { repositories: list } = await call('GET /api/repositories');
    return Promise.all(list.map((r) => call('GET /api/repositories/{name}', { params: { name: r.name } })));
  }, [], 30_000);
  const dayAgoMs = Date.now() - 24 * 3600 * 1000;
  const recent = (runs.data?.runs ?? []).filter((r) => Date.parse(r.startedAt) >= dayAgoMs);
  const counts = { protected: 0, unprotected: 0, breach: 0 };
  for (const vm of vms.data?.vms ?? []) counts[protection(vm)]++;
  const ended = (runs.data?.runs ?? []).filter((r) => r.endedAt).reverse();
  const next = (jobs.data?.jobs ?? []).filter((j) => j.nextRun).sort((a, b) => Date.parse(a.nextRun as string) - Date.parse(b.nextRun as string));
  return (
    <Page title="Dashboard">
      <Problem error={vms.error ?? jobs.error ?? runs.error} />
      <div class="cards">
        <a class="card ok" href="#/vms">
          <span class="number">{vms.data ? counts.protected : '…'}</span> VMs protected
        </a>
        <a class="card warn" href="#/vms">
          <span class="number">{vms.data ? counts.unprotected : '…'}</span> unprotected
        </a>
        <a class="card bad" href="#/vms">
          <span class="number">{vms.data ? counts.breach : '…'}</span> past their RPO
        </a>
      </div>
      <h2>Last 24 hours of runs</h2>
      {runs.data ? (
        <ul class="inline-list" aria-label="runs of the last 24 hours by result">
          {(['success', 'warning', 'failed', 'running', 'interrupted'] as const).map((s) => (
            <li>
              <Status status={s} /> {recent.filter((r) => r.status === s).length}
            </li>
          ))}
        </ul>
      ) : (
        <Loading what="runs" />
      )}
      <TimeChart
        caption="Run durations"
        xs={ended.map((r) => Date.parse(r.startedAt) / 1000)}
        series={[{ label: 'duration', colour: '--chart-1', format: (v) => duration(v), values: ended.map((r) => (Date.parse(r.endedAt as string) - Date.parse(r.startedAt)) / 1000) }]}
      />
      <h2>Repositories</h2>
      <Problem error={repositories.error} />
      {(repositories.data ?? []).map((r) => (
        <div data-repository={r.name}>
          <p>
            <a href={`#/repository/${encodeURIComponent(r.name)}`}>{r.name}</a>: {bytes(r.storedBytes)} stored for {bytes(r.logicalBytes)} of disks ({r.reductionRatio.toFixed(1)}× reduction), {r.points} restore points
          </p>
          <TimeChart
            caption={`${r.name}: stored and logical bytes over time`}
            height={180}
            xs={r.history.map((h) => Date.parse(h.at) / 1000)}
            series={[
              { label: 'stored', colour: '--chart-1', format: (v) => bytes(v), values: r.history.map((h) => h.storedBytes) },
              { label: 'logical', colour: '--chart-2', format: (v) => bytes(v), values: r.history.map((h) => h.logicalBytes) },
            ]}
          />
        </div>
      ))}
      <h2>Next scheduled runs</h2>
      {jobs.data ? (
        next.length === 0 ? (
          <p class="muted">No job has a schedule.</p>
        ) : (
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">job</th>
                  <th scope="col">next run</th>
                  <th scope="col">schedule</th>
                </tr>
              </thead>
              <tbody>
                {next.map((j) => (
                  <tr>
                    <th scope="row">
                      <a href="#/jobs">{j.name}</a>
                    </th>
                    <td>{time(j.nextRun)}</td>
                    <td>
                      <code>{j.schedule}</code> {j.timezone ?? ''}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )
      ) : (
        <Loading what="jobs" />
      )}
    </Page>
  );
}
