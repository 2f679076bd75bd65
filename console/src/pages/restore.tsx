// Restore from one restore point: its disks, and what can be done with it. The actions go
// through the API where it offers them; otherwise the page shows the equivalent CLI command.
import { call } from '../api.ts';
import { bytes, time } from '../format.ts';
import { Loading, Page, Problem, useApi } from '../ui.tsx';
import { pointMode } from './vm.tsx';

export function RestorePage({ repository, pointId, canAct }: { repository: string; pointId: string; canAct: boolean }) {
  const points = useApi(() => call('GET /api/repositories/{name}/points', { params: { name: repository } }), [repository]);
  const point = points.data?.points.find((p) => p.id === pointId);
  if (points.error) return <Problem error={points.error} />;
  if (!points.data) return <Loading what="the restore point" />;
  if (!point) return <p>No restore point {pointId} in {repository}.</p>;
  return (
    <Page title={`Restore ${point.vm.name}`}>
      <dl class="facts">
        <dt>restore point</dt>
        <dd>
          <code>{point.id}</code> <span class={`badge badge-${pointMode(point)}`}>{pointMode(point)}</span>
        </dd>
        <dt>made</dt>
        <dd>{time(point.createdAt)}</dd>
        <dt>repository</dt>
        <dd>{repository}</dd>
      </dl>
      <h2>Disks</h2>
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">disk</th>
              <th scope="col">device key</th>
              <th scope="col">capacity</th>
              <th scope="col">kind</th>
            </tr>
          </thead>
          <tbody>
            {point.disks.map((d) => (
              <tr>
                <th scope="row">{d.label}</th>
                <td>{d.deviceKey}</td>
                <td>{bytes(d.capacityBytes)}</td>
                <td>{d.mode}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {canAct ? null : <p class="muted">This token is read-only: restores, exports and verifies are not offered.</p>}
    </Page>
  );
}
