// Repositories: per repository of the jobs, its restore points (per VM, full or incremental)
// and their count over time as a chart. Points name their VM by instance UUID (`vm.id`).
import { call } from '../api.ts';
import { TimeChart } from '../chart.tsx';
import { time } from '../format.ts';
import { Loading, Page, Problem, repositoryOf, useApi } from '../ui.tsx';
import { pointMode } from './vm.tsx';

export function RepositoryPage({ name, canAct }: { name?: string; canAct: boolean }) {
  const jobs = useApi(() => call('GET /api/jobs'), []);
  const names = [...new Set((jobs.data?.jobs ?? []).map((j) => repositoryOf(j.target)).filter((n): n is string => n !== null))].sort();
  const current = name ?? names[0];
  const points = useApi(async () => (current ? (await call('GET /api/repositories/{name}/points', { params: { name: current } })).points : []), [current], 10_000);
  const list = points.data ?? [];
  const perVm = new Map<string, { name: string; count: number; newest: string }>();
  for (const p of list) {
    const e = perVm.get(p.vm.id) ?? { name: p.vm.name, count: 0, newest: p.createdAt };
    e.count++;
    e.newest = p.createdAt > e.newest ? p.createdAt : e.newest;
    perVm.set(p.vm.id, e);
  }
  void canAct;
  return (
    <Page title={current ? `Repository ${current}` : 'Repository'}>
      <Problem error={jobs.error ?? points.error} />
      {names.length > 1 ? (
        <nav aria-label="repositories">
          {names.map((n) => (
            <a href={`#/repository/${encodeURIComponent(n)}`} aria-current={n === current ? 'page' : undefined}>
              {n}{' '}
            </a>
          ))}
        </nav>
      ) : null}
      {!points.data ? (
        <Loading what="restore points" />
      ) : (
        <>
          <dl class="facts">
            <dt>restore points</dt>
            <dd>{list.length}</dd>
            <dt>full / incremental</dt>
            <dd>
              {list.filter((p) => pointMode(p) === 'full').length} / {list.filter((p) => pointMode(p) !== 'full').length}
            </dd>
            <dt>VMs</dt>
            <dd>{perVm.size}</dd>
          </dl>
          <TimeChart caption="Restore points over time" xs={list.map((p) => Date.parse(p.createdAt) / 1000)} series={[{ label: 'restore points', colour: '--chart-2', format: (v) => String(Math.round(v)), values: list.map((_, i) => i + 1) }]} />
          <h2>Per VM</h2>
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">VM</th>
                  <th scope="col">restore points</th>
                  <th scope="col">newest</th>
                </tr>
              </thead>
              <tbody>
                {[...perVm].map(([id, e]) => (
                  <tr data-vm-id={id}>
                    <th scope="row">{e.name}</th>
                    <td>{e.count}</td>
                    <td>{time(e.newest)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </Page>
  );
}
