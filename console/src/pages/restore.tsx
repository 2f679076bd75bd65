// Restore from one restore point: its disks, and per disk "restore to a file" (a path under
// the daemon's restore directory; overwriting an existing file is asked for explicitly and
// named in the confirmation) and "export over NBD" (the URI and the commands to attach or copy
// it; running exports of the point listed with a Stop button); "verify this point" (reads
// every chunk back). Each action runs after a confirmation; restores and verifies open their
// run page, which follows their progress.
import { useState } from 'preact/hooks';
import { call } from '../api.ts';
import type { Export } from '../api-types.ts';
import { bytes, time } from '../format.ts';
import { Confirm, Loading, Page, Problem, useApi } from '../ui.tsx';
import { pointMode } from './vm.tsx';

type Pending = { kind: 'restore'; deviceKey: number; label: string; path: string; overwrite: boolean } | { kind: 'export'; deviceKey: number; label: string } | { kind: 'stop'; exported: Export } | { kind: 'verify' };

export function RestorePage({ repository, pointId, canAct }: { repository: string; pointId: string; canAct: boolean }) {
  const points = useApi(() => call('GET /api/repositories/{name}/points', { params: { name: repository } }), [repository]);
  const exports = useApi(() => call('GET /api/exports'), [], 5_000);
  const point = points.data?.points.find((p) => p.id === pointId);
  const [paths, setPaths] = useState<Record<number, string>>({});
  const [overwrite, setOverwrite] = useState<Record<number, boolean>>({});
  const [pending, setPending] = useState<Pending | null>(null);
  const [error, setError] = useState<unknown>(undefined);
  const [started, setStarted] = useState<Export | null>(null);
  if (points.error) return <Problem error={points.error} />;
  if (!points.data) return <Loading what="the restore point" />;
  if (!point) return <p>No restore point {pointId} in {repository}.</p>;
  const defaultPath = (deviceKey: number) => `${point.vm.name}-${point.id}-${deviceKey}.raw`;
  const mine = (exports.data?.exports ?? []).filter((e) => e.repository === repository && e.pointId === pointId);
  const act = async (p: Pending) => {
    setPending(null);
    setError(undefined);
    try {
      const params = { name: repository, id: pointId };
      if (p.kind === 'restore') {
        const { runId } = await call('POST /api/repositories/{name}/points/{id}/disks/{key}/restore', { params: { ...params, key: p.deviceKey }, body: { path: p.path, overwrite: p.overwrite } });
        location.hash = `#/runs/${runId}`;
      } else if (p.kind === 'export') {
        setStarted(await call('POST /api/repositories/{name}/points/{id}/disks/{key}/export', { params: { ...params, key: p.deviceKey } }));
        exports.reload();
      } else if (p.kind === 'stop') {
        await call('DELETE /api/exports/{id}', { params: { id: p.exported.id } });
        if (started?.id === p.exported.id) setStarted(null);
        exports.reload();
      } else {
        const { runId } = await call('POST /api/repositories/{name}/verify', { params: { name: repository }, body: { points: [pointId], readData: true } });
        location.hash = `#/runs/${runId}`;
      }
    } catch (e) {
      setError(e);
    }
  };
  return (
    <Page
      title={`Restore ${point.vm.name}`}
      actions={
        canAct ? (
          <button type="button" onClick={() => setPending({ kind: 'verify' })}>
            Verify this point
          </button>
        ) : null
      }
    >
      <Problem error={error} />
      <dl class="facts">
        <dt>restore point</dt>
        <dd>
          <code>{point.id}</code> <span class={`badge badge-${pointMode(point)}`}>{pointMode(point)}</span>
        </dd>
        <dt>made</dt>
        <dd>{time(point.createdAt)}</dd>
        <dt>repository</dt>
        <dd>
          <a href={`#/repository/${encodeURIComponent(repository)}`}>{repository}</a>
        </dd>
      </dl>
      <h2>Disks</h2>
      <ul class="tasks">
        {point.disks.map((d) => {
          const path = paths[d.deviceKey] ?? defaultPath(d.deviceKey);
          const id = `restore-path-${d.deviceKey}`;
          return (
            <li class="task" data-disk={d.deviceKey}>
              <div class="task-head">
                <strong>{d.label}</strong> <span class="muted">device key {d.deviceKey} · {bytes(d.capacityBytes)} · {d.mode}</span>
              </div>
              {canAct ? (
                <form
                  class="inline-form"
                  onSubmit={(e) => {
                    e.preventDefault();
                    setPending({ kind: 'restore', deviceKey: d.deviceKey, label: d.label, path, overwrite: overwrite[d.deviceKey] ?? false });
                  }}
                >
                  <label for={id}>File for {d.label}, under the daemon's restore directory</label>
                  <input id={id} type="text" required value={path} onInput={(e) => setPaths({ ...paths, [d.deviceKey]: e.currentTarget.value })} />
                  <label class="check">
                    <input type="checkbox" checked={overwrite[d.deviceKey] ?? false} onChange={(e) => setOverwrite({ ...overwrite, [d.deviceKey]: e.currentTarget.checked })} /> overwrite the file if it exists
                  </label>
                  <div class="actions">
                    <button type="submit" class="primary">
                      Restore {d.label} to a file
                    </button>
                    <button type="button" onClick={() => setPending({ kind: 'export', deviceKey: d.deviceKey, label: d.label })}>
                      Export {d.label} over NBD
                    </button>
                  </div>
                </form>
              ) : null}
            </li>
          );
        })}
      </ul>
      {started ? <ExportCard exported={started} /> : null}
      <h2>NBD exports of this point</h2>
      {mine.length === 0 ? (
        <p class="muted">None running.</p>
      ) : (
        <ul class="tasks">
          {mine.map((e) => (
            <li class="task" data-export={e.id}>
              <div class="task-head">
                <strong>{e.label}</strong> <code>{e.uri}</code> <span class="muted">since {time(e.startedAt)}</span>
              </div>
              {canAct ? (
                <button type="button" class="danger" onClick={() => setPending({ kind: 'stop', exported: e })}>
                  Stop the export of {e.label}
                </button>
              ) : null}
            </li>
          ))}
        </ul>
      )}
      {canAct ? (
        <Confirm
          open={pending !== null}
          title={pending?.kind === 'restore' ? `Restore ${pending.label} to a file?` : pending?.kind === 'export' ? `Export ${pending.label} over NBD?` : pending?.kind === 'stop' ? `Stop the export of ${pending.exported.label}?` : 'Verify this point?'}
          confirmLabel={pending?.kind === 'restore' ? (pending.overwrite ? 'Restore and overwrite' : 'Restore') : pending?.kind === 'export' ? 'Start the export' : pending?.kind === 'stop' ? 'Stop the export' : 'Verify'}
          danger={pending?.kind === 'stop' || (pending?.kind === 'restore' && pending.overwrite)}
          onConfirm={() => pending && void act(pending)}
          onCancel={() => setPending(null)}
        >
          {pending?.kind === 'restore' ? (
            <p>
              This writes {pending.label} ({point.vm.name}, point <code>{point.id}</code>) to the file <code>{pending.path}</code> in the daemon's restore directory.{' '}
              {pending.overwrite ? (
                <strong>If that file exists, it is overwritten.</strong>
              ) : (
                'If that file exists, nothing is written and the restore fails with RESTORE_TARGET_EXISTS.'
              )}
            </p>
          ) : pending?.kind === 'export' ? (
            <p>This serves {pending.label} of this point read-only over NBD until you stop it. Nothing is overwritten.</p>
          ) : pending?.kind === 'stop' ? (
            <p>
              This stops serving <code>{pending.exported.uri}</code>; clients still connected are disconnected.
            </p>
          ) : (
            <p>This reads every chunk of this point back and checks it (verify --read-data). Nothing is written.</p>
          )}
        </Confirm>
      ) : (
        <p class="muted">This token is read-only: restores, exports and verifies are not offered.</p>
      )}
    </Page>
  );
}

function ExportCard({ exported }: { exported: Export }) {
  return (
    <section class="export" aria-label={`NBD export of ${exported.label}`}>
      <h2>Exported over NBD</h2>
      <dl class="facts">
        <dt>URI</dt>
        <dd>
          <code data-uri>{exported.uri}</code>
        </dd>
        <dt>copy to a file</dt>
        <dd>
          <code>{exported.commands.nbdcopy}</code>
        </dd>
        <dt>convert</dt>
        <dd>
          <code>{exported.commands.qemuImg}</code>
        </dd>
        <dt>attach as a block device</dt>
        <dd>
          <code>{exported.commands.qemuNbd}</code>
        </dd>
      </dl>
    </section>
  );
}
