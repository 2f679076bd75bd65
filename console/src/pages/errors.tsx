// The errors page: every code of docs/errors.md with what happened and what to do; a code in
// the URL (`#/errors/CODE`, where every error shown by the console links) is highlighted and
// scrolled to.
import { useEffect, useState } from 'preact/hooks';
import { errorDocs } from '../errors-doc.ts';
import { Page } from '../ui.tsx';

export function ErrorsPage({ code }: { code?: string }) {
  const [filter, setFilter] = useState('');
  useEffect(() => {
    if (code) document.getElementById(`error-${code}`)?.scrollIntoView({ block: 'center' });
  }, [code]);
  const q = filter.trim().toLowerCase();
  const rows = errorDocs.filter((d) => !q || d.code.toLowerCase().includes(q) || d.what.toLowerCase().includes(q));
  return (
    <Page title="Error codes">
      <p>
        Every error carries a stable code. This is the table of <code>docs/errors.md</code>, built into the console.
      </p>
      <label for="error-filter">Filter codes</label>
      <input id="error-filter" type="search" value={filter} onInput={(e) => setFilter(e.currentTarget.value)} />
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">code</th>
              <th scope="col">what happened</th>
              <th scope="col">what to do</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((d) => (
              <tr id={`error-${d.code}`} class={d.code === code ? 'highlight' : undefined} aria-current={d.code === code ? 'true' : undefined}>
                <th scope="row">
                  <code>{d.code}</code>
                </th>
                <td>{d.what}</td>
                <td>{d.todo}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </Page>
  );
}
