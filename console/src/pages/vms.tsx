// The VMs page: every VM of every server with its power and CBT state, the jobs that cover
// it, its protection, last task and last good point, searchable (name, moref, server, job,
// host, folder) and sortable by any column (the header buttons; aria-sort says the order).
import { useState } from 'preact/hooks';
import { call } from '../api.ts';
import type { Vm } from '../api-types.ts';
import { age, bytes } from '../format.ts';
import { ErrorCode, Loading, Page, Problem, Status, useApi } from '../ui.tsx';
import { protection } from './dashboard.tsx';

export function vmHref(vm: { server: string; moref: string }): string {
  return `#/vms/${encodeURIComponent(vm.server)}/${encodeURIComponent(vm.moref)}`;
}

export function cbtLabel(vm: Vm): string {
  return vm.cbtEnabled === null ? 'unknown' : vm.cbtEnabled ? 'on' : 'off';
}

type Column = { key: string; label: string; value: (vm: Vm) => string | number };
const columns: Column[] = [
  { key: 'name', label: 'VM', value: (vm) => vm.name },
  { key: 'power', label: 'power', value: (vm) => vm.powerState ?? '' },
  { key: 'cbt', label: 'CBT', value: (vm) => cbtLabel(vm) },
  { key: 'jobs', label: 'jobs', value: (vm) => vm.jobs.map((j) => j.job).join(', ') },
  { key: 'protection', label: 'protection', value: (vm) => protection(vm) },
  { key: 'last', label: 'last task', value: (vm) => vm.lastTask?.status ?? '' },
  { key: 'good', label: 'last good point', value: (vm) => vm.lastGood?.ageSeconds ?? Number.MAX_SAFE_INTEGER },
  { key: 'size', label: 'size', value: (vm) => vm.provisionedBytes ?? -1 },
];

export function VmsPage() {
  const vms = useApi(() => call('GET /api/vms'), [], 10_000);
  const [query, setQuery] = useState('');
  const [sort, setSort] = useState<{ key: string; ascending: boolean }>({ key: 'name', ascending: true });
  const q = query.trim().toLowerCase();
  const column = columns.find((c) => c.key === sort.key) as Column;
  const rows = (vms.data?.vms ?? [])
    .filter((vm) => !q || [vm.name, vm.moref, vm.server, vm.host ?? '', vm.folder ?? '', ...vm.jobs.map((j) => j.job)].some((t) => t.toLowerCase().includes(q)))
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
      <input id="vm-search" type="search" placeholder="name, moref, server, host, folder or job" value={query} onInput={(e) => setQuery(e.currentTarget.value)} />
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
                    <a href={vmHref(vm)}>{vm.name}</a>{' '}
                    <span class="muted">
                      {vm.server}/{vm.moref}
                      {vm.inInventory === false ? ' · gone from the inventory' : ''}
                    </span>
                  </th>
                  <td>{vm.powerState ?? '—'}</td>
                  <td data-cbt={cbtLabel(vm)}>
                    <span class={`badge badge-cbt-${cbtLabel(vm)}`}>CBT {cbtLabel(vm)}</span>
                  </td>
                  <td>{vm.jobs.length ? vm.jobs.map((j) => j.job).join(', ') : <span class="muted">none</span>}</td>
                  <td>
                    <span class={`badge badge-${protection(vm)}`}>{protection(vm)}</span>
                  </td>
                  <td>
                    {vm.lastTask ? <Status status={vm.lastTask.status} /> : <span class="muted">never</span>} {vm.lastTask?.error ? <ErrorCode code={vm.lastTask.error.code} /> : null}
                  </td>
                  <td>{vm.lastGood ? age(vm.lastGood.ageSeconds) : 'none'}</td>
                  <td>{bytes(vm.provisionedBytes)}</td>
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
