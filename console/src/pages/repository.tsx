// A repository: stored and logical bytes, their ratio (deduplication, zero chunks and
// compression together), chunks, points, locks held; stored vs logical bytes over time and the
// ratio as charts (samples the daemon records after each run and prune); the verify and prune
// runs. Actions: verify (every point, reading the data back) and prune with a dry run first:
// the dry run lists what would go and what stays, and only then can the prune be confirmed,
// naming how many points it deletes.
import { useState } from 'preact/hooks';
import { call } from '../api.ts';
import type { Bodies, Endpoints, Run } from '../api-types.ts';
import { TimeChart } from '../chart.tsx';
import { bytes, duration, secondsBetween, time } from '../format.ts';
import { Confirm, Loading, Page, Problem, Status, useApi } from '../ui.tsx';

type Policy = Bodies['POST /api/repositories/{name}/prune']['policy'];
type DryRun = Extract<Endpoints['POST /api/repositories/{name}/prune'], { dryRun: boolean }>;

function RunsTable({ runs, caption }: { runs: Run[]; caption: string }) {
  if (runs.length === 0) return <p class="muted">None yet.</p>;
  return (
    <div class="table-wrap">
      <table>
        <caption class="visually-hidden">{caption}</caption>
        <thead>
          <tr>
            <th scope="col">run</th>
            <th scope="col">result</th>
            <th scope="col">started</th>
            <th scope="col">duration</th>
          </tr>
        </thead>
        <tbody>
          {runs.map((r) => (
            <tr>
              <th scope="row">
                <a href={`#/runs/${r.id}`}>run {r.id}</a>
              </th>
              <td>
                <Status status={r.status} /> {r.error ? r.error.code : ''}
              </td>
              <td>{time(r.startedAt)}</td>
              <td>{duration(secondsBetween(r.startedAt, r.endedAt))}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function RepositoryPage({ name, canAct }: { name?: string; canAct: boolean }) {
  const list = useApi(() => call('GET /api/repositories'), []);
  const current = name ?? list.data?.repositories[0]?.name;
  const repo = useApi(async () => (current ? call('GET /api/repositories/{name}', { params: { name: current } }) : undefined), [current], 10_000);
  const [policy, setPolicy] = useState<Policy>({ keepLast: 7 });
  const [dryRun, setDryRun] = useState<DryRun | null>(null);
  const [confirm, setConfirm] = useState<'verify' | 'prune' | null>(null);
  const [error, setError] = useState<unknown>(undefined);
  const r = repo.data;
  const start = async (what: 'verify' | 'prune' | 'dry-run') => {
    setConfirm(null);
    setError(undefined);
    try {
      if (!current) return;
      if (what === 'verify') {
        const { runId } = await call('POST /api/repositories/{name}/verify', { params: { name: current }, body: { readData: true } });
        location.hash = `#/runs/${runId}`;
      } else {
        const answer = await call('POST /api/repositories/{name}/prune', { params: { name: current }, body: { policy, dryRun: what === 'dry-run' } });
        if ('runId' in answer) location.hash = `#/runs/${answer.runId}`;
        else setDryRun(answer);
      }
    } catch (e) {
      setError(e);
    }
  };
  const setKeep = (key: keyof Policy, value: string) => {
    setDryRun(null);
    const n = Number(value);
    setPolicy({ ...policy, [key]: value === '' || !Number.isFinite(n) ? undefined : n });
  };
  const history = r?.history ?? [];
  return (
    <Page
      title={current ? `Repository ${current}` : 'Repository'}
      actions={
        canAct && r ? (
          <button type="button" onClick={() => setConfirm('verify')}>
            Verify {current}
          </button>
        ) : null
      }
    >
      <Problem error={error ?? list.error ?? repo.error} />
      {list.data && list.data.repositories.length > 1 ? (
        <nav aria-label="repositories" class="inline-list">
          {list.data.repositories.map((x) => (
            <a href={`#/repository/${encodeURIComponent(x.name)}`} aria-current={x.name === current ? 'page' : undefined}>
              {x.name}
            </a>
          ))}
        </nav>
      ) : null}
      {!r ? (
        <Loading what="the repository" />
      ) : (
        <>
          <div class="cards">
            <div class="card">
              <span class="number">{bytes(r.storedBytes)}</span> stored
            </div>
            <div class="card">
              <span class="number">{bytes(r.logicalBytes)}</span> logical (disk capacities of the points)
            </div>
            <div class="card">
              <span class="number">{r.reductionRatio.toFixed(1)}×</span> reduction
            </div>
          </div>
          <dl class="facts">
            <dt>restore points</dt>
            <dd>{r.points}</dd>
            <dt>chunks / indexes</dt>
            <dd>
              {r.chunks} / {r.indexes}
            </dd>
            <dt>jobs writing to it</dt>
            <dd>{r.jobs.join(', ') || 'none'}</dd>
            <dt>locks held</dt>
            <dd>
              {r.locks.length === 0
                ? 'none'
                : r.locks.map((l) => (
                    <div>
                      {l.kind ?? 'lock'} for {l.purpose ?? '?'} by {l.host ?? '?'} pid {l.pid ?? '?'} since {time(l.since)} {l.stale ? <span class="badge badge-warning">stale</span> : null}
                    </div>
                  ))}
            </dd>
          </dl>
          <TimeChart
            caption="Stored and logical bytes over time"
            xs={history.map((h) => Date.parse(h.at) / 1000)}
            series={[
              { label: 'stored', colour: '--chart-1', format: (v) => bytes(v), values: history.map((h) => h.storedBytes) },
              { label: 'logical', colour: '--chart-2', format: (v) => bytes(v), values: history.map((h) => h.logicalBytes) },
            ]}
          />
          <TimeChart caption="Reduction ratio over time (logical / stored)" xs={history.map((h) => Date.parse(h.at) / 1000)} series={[{ label: 'ratio', colour: '--chart-1', format: (v) => `${v.toFixed(1)}×`, values: history.map((h) => (h.storedBytes > 0 ? h.logicalBytes / h.storedBytes : null)) }]} />
          <h2>Verify runs</h2>
          <RunsTable runs={r.verifyRuns} caption="verify runs, newest first" />
          <h2>Prune</h2>
          {canAct ? (
            <form
              class="prune"
              onSubmit={(e) => {
                e.preventDefault();
                void start('dry-run');
              }}
            >
              <p>Keep, per VM (as vcbt prune):</p>
              <div class="inline-list">
                {(['keepLast', 'keepDaily', 'keepWeekly', 'keepMonthly'] as const).map((k) => (
                  <div>
                    <label for={`prune-${k}`}>{k}</label>
                    <input id={`prune-${k}`} type="number" min={0} step={1} size={4} value={policy[k] ?? ''} onInput={(e) => setKeep(k, e.currentTarget.value)} />
                  </div>
                ))}
              </div>
              <div class="actions">
                <button type="submit">Dry run: show what would go</button>
                <button type="button" class="danger" disabled={!dryRun || dryRun.remove.length === 0} onClick={() => setConfirm('prune')}>
                  {dryRun ? `Prune ${dryRun.remove.length} point${dryRun.remove.length === 1 ? '' : 's'}` : 'Prune (dry run first)'}
                </button>
              </div>
            </form>
          ) : null}
          {dryRun ? (
            <section aria-label="what the prune would do" class="dry-run">
              <p>
                <strong>{dryRun.remove.length}</strong> restore points would go, {dryRun.keep.length} stay{dryRun.damaged.length ? `, ${dryRun.damaged.length} damaged` : ''}.
              </p>
              <div class="table-wrap">
                <table>
                  <caption class="visually-hidden">restore points and what the prune does with them</caption>
                  <thead>
                    <tr>
                      <th scope="col">restore point</th>
                      <th scope="col">made</th>
                      <th scope="col">prune</th>
                    </tr>
                  </thead>
                  <tbody>
                    {dryRun.remove.map((p) => (
                      <tr data-remove={p.id}>
                        <th scope="row">
                          <code>{p.id}</code>
                        </th>
                        <td>{time(p.createdAt)}</td>
                        <td>
                          <span class="badge badge-failed">deleted</span>
                        </td>
                      </tr>
                    ))}
                    {dryRun.keep.map((p) => (
                      <tr data-keep={p.id}>
                        <th scope="row">
                          <code>{p.id}</code>
                        </th>
                        <td>{time(p.createdAt)}</td>
                        <td>
                          <span class="badge badge-success">kept</span> {p.reasons.join(', ')}
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            </section>
          ) : null}
          <h3>Prune runs</h3>
          <RunsTable runs={r.pruneRuns} caption="prune runs, newest first" />
        </>
      )}
      {canAct ? (
        <Confirm
          open={confirm !== null}
          title={confirm === 'prune' ? `Delete ${dryRun?.remove.length ?? 0} restore point${dryRun?.remove.length === 1 ? '' : 's'} from ${current}?` : `Verify ${current}?`}
          confirmLabel={confirm === 'prune' ? 'Delete them' : 'Verify'}
          danger={confirm === 'prune'}
          onConfirm={() => confirm && void start(confirm)}
          onCancel={() => setConfirm(null)}
        >
          {confirm === 'prune' ? (
            <p>
              This deletes the {dryRun?.remove.length} restore points the dry run listed ({dryRun?.remove.map((p) => p.id).join(', ')}) and the chunks only they use. It cannot be undone.
            </p>
          ) : (
            <p>This reads every restore point's chunks back and checks them. Nothing is written.</p>
          )}
        </Confirm>
      ) : null}
    </Page>
  );
}
