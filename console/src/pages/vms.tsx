// The VMs page: every VM with its protection, searchable (name, moref, job) and sortable by
// any column (the header buttons; aria-sort says the order).
import { useState } from 'preact/hooks';
import { call } from '../api.ts';
import type { Vm } from '../api-types.ts';
import { age, bytes } from '../format.ts';
import { ErrorCode, Loading, Page, Problem, Status, useApi } from '../ui.tsx';
import { protection } from './dashboard.tsx';

type Column = { key: string; label: string; value: (vm: Vm) => string | number };
const columns: Column[] = [
  { key: 'name', label: 'VM', value: (vm) => vm.name },
  { key: 'protection', label: 'protection', value: (vm) => protection(vm) },
  { key: 'job', label: 'job', value: (vm) => vm.lastTask.job },
  { key: 'last', label: 'last task', value: (vm) => vm.lastTask.status },
  { key: 'good', label: 'last good point', value: (vm) => vm.lastGood?.ageSeconds ?? Number.MAX_SAFE_INTEGER },
  { key: 'stored', label: 'stored by last task', value: (vm) => vm.lastTask.bytesStored },
];

export function VmsPage() {
  const vms = useApi(() => call('GET /api/vms'), [], 10_000);
  const [query, setQuery] = useState('');
  const [sort, setSort] = useState<{ key: string; ascending: boolean }>({ key: 'name', ascending: true });
  const q = query.trim().toLowerCase();
  const column = columns.find((c) => c.key === sort.key) as Column;
  const rows = (vms.data?.vms ?? [])
    .filter((vm) => !q || vm.name.toLowerCase().includes(q) || vm.moref.toLowerCase().includes(q) || vm.lastTask.job.toLowerCase().includes(q))
    .sort((a, b) => {
      const x = column.value(a);
      const y = column.value(b);
      const order = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
      return sort.ascending ? order : -order;
    });
  return (
    <Page title="VMs">
      <Problem error={vms.error} />
      <label for="vm-search">Search VMs</label>
      <input id="vm-search" type="search" placeholder="name, moref or job" value={query} onInput={(e) => setQuery(e.currentTarget.value)} />
      {vms.data ? (
        <div class="table-wrap">
          <table class="vms">
            <caption class="visually-hidden">VMs, sorted by {column.label}</caption>
            <thead>
              <tr>
                {columns.map((c) => (
                  <th scope="col" aria-sort={sort.key === c.key ? (sort.ascending ? 'ascending' : 'descending') : undefined}>
                    <button type="button" class="sort" onClick={() => setSort({ key: c.key, ascending: sort.key === c.key ? !sort.ascending : true })}>
                      {c.label}
                      <span aria-hidden="true">{sort.key === c.key ? (sort.ascending ? ' ▲' : ' ▼') : ''}</span>
                    </button>
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {rows.map((vm) => (
                <tr data-vm={vm.name}>
                  <th scope="row">
                    <a href={`#/vms/${encodeURIComponent(vm.moref)}`}>{vm.name}</a> <span class="muted">{vm.moref}</span>
                  </th>
                  <td>
                    <span class={`badge badge-${protection(vm)}`}>{protection(vm)}</span>
                  </td>
                  <td>{vm.lastTask.job}</td>
                  <td>
                    <Status status={vm.lastTask.status} /> {vm.lastTask.error ? <ErrorCode code={vm.lastTask.error.code} /> : null}
                  </td>
                  <td>{vm.lastGood ? age(vm.lastGood.ageSeconds) : 'none'}</td>
                  <td>{bytes(vm.lastTask.bytesStored)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {rows.length === 0 ? <p class="muted">No VM matches.</p> : null}
        </div>
      ) : (
        <Loading what="VMs" />
      )}
    </Page>
  );
}
