// The web console's shell: login with an API token, the navigation, the theme (light, dark or
// the system's), and the page of the URL's fragment (`#/vms`, `#/runs/12`, ...). Pages are in
// pages/; docs/console.md says what each shows.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiFailure, call, setUnauthorizedHandler, storeToken, storedToken } from './api.ts';
import type { Session } from './api-types.ts';
import { Dashboard } from './pages/dashboard.tsx';
import { ErrorsPage } from './pages/errors.tsx';
import { JobsPage } from './pages/jobs.tsx';
import { RepositoryPage } from './pages/repository.tsx';
import { RestorePage } from './pages/restore.tsx';
import { RunPage } from './pages/run.tsx';
import { VmPage } from './pages/vm.tsx';
import { VmsPage } from './pages/vms.tsx';
import './style.css';

type Theme = 'auto' | 'light' | 'dark';
const THEME_KEY = 'vcbt.theme';

function applyTheme(theme: Theme): void {
  if (theme === 'auto') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  dispatchEvent(new Event('vcbt-theme'));
}

function useHash(): string[] {
  const parse = () => location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  const [parts, setParts] = useState(parse);
  useEffect(() => {
    const update = () => {
      setParts(parse());
      // Move focus to the new page's heading so keyboard and screen-reader users land there.
      requestAnimationFrame(() => document.getElementById('page-title')?.focus());
    };
    addEventListener('hashchange', update);
    return () => removeEventListener('hashchange', update);
  }, []);
  return parts;
}

function Login({ onSession }: { onSession: (s: Session) => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const session = await call('GET /api/session', { token: token.trim() });
      storeToken(token.trim());
      onSession(session);
    } catch (failure) {
      setError(failure instanceof ApiFailure && failure.status === 401 ? 'This token is not known to the daemon (vcbt token create makes one).' : failure instanceof Error ? failure.message : String(failure));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main id="main" class="login">
      <form onSubmit={(e) => void submit(e)} aria-labelledby="login-title">
        <h1 id="login-title">vcbt console</h1>
        <p>Log in with an API token made by <code>vcbt token create</code>. It is kept in this tab only.</p>
        <label for="token">API token</label>
        <input id="token" name="token" type="password" autoComplete="off" spellcheck={false} required value={token} onInput={(e) => setToken(e.currentTarget.value)} />
        {error ? (
          <p class="problem" role="alert">
            {error}
          </p>
        ) : null}
        <button type="submit" class="primary" disabled={busy}>
          Log in
        </button>
      </form>
    </main>
  );
}

const nav: Array<[string, string]> = [
  ['#/', 'Dashboard'],
  ['#/vms', 'VMs'],
  ['#/jobs', 'Jobs and runs'],
  ['#/repository', 'Repository'],
];

function App() {
  const [session, setSession] = useState<Session | null>(null);
  const [checked, setChecked] = useState(false);
  const [theme, setTheme] = useState<Theme>(() => (localStorage.getItem(THEME_KEY) as Theme | null) ?? 'auto');
  const parts = useHash();
  useEffect(() => {
    setUnauthorizedHandler(() => {
      storeToken(null);
      setSession(null);
    });
    if (!storedToken()) {
      setChecked(true);
      return;
    }
    call('GET /api/session').then(
      (s) => {
        setSession(s);
        setChecked(true);
      },
      () => setChecked(true),
    );
  }, []);
  useEffect(() => {
    localStorage.setItem(THEME_KEY, theme);
    applyTheme(theme);
  }, [theme]);
  if (!checked) return null;
  if (!session) return <Login onSession={setSession} />;
  const [first = '', ...rest] = parts;
  const canAct = !session.readOnly;
  let page;
  if (first === '') page = <Dashboard />;
  else if (first === 'vms' && rest.length >= 2) page = <VmPage server={rest[0] as string} moref={rest[1] as string} canAct={canAct} />;
  else if (first === 'vms') page = <VmsPage />;
  else if (first === 'jobs') page = <JobsPage canAct={canAct} />;
  else if (first === 'runs' && rest[0]) page = <RunPage id={Number(rest[0])} />;
  else if (first === 'restore' && rest[1]) page = <RestorePage repository={rest[0] as string} pointId={rest[1]} canAct={canAct} />;
  else if (first === 'repository') page = <RepositoryPage name={rest[0]} canAct={canAct} />;
  else if (first === 'errors') page = <ErrorsPage code={rest[0]} />;
  else page = <p>No page here. Go to the <a href="#/">dashboard</a>.</p>;
  const current = `#/${first}`;
  return (
    <>
      <a class="skip" href="#main" onClick={(e) => (e.preventDefault(), document.getElementById('page-title')?.focus())}>
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href="#/">
          vcbt
        </a>
        <nav aria-label="main">
          <ul>
            {nav.map(([href, label]) => (
              <li>
                <a href={href} aria-current={(href === '#/' ? current === '#/' : current.startsWith(href)) ? 'page' : undefined}>
                  {label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div class="who">
          <span class={`badge ${session.readOnly ? 'badge-warning' : 'badge-success'}`} title={session.note || `token ${session.tokenId}`}>
            {session.readOnly ? 'read-only' : 'operator'}
          </span>
          <label class="visually-hidden" for="theme">
            Theme
          </label>
          <select id="theme" value={theme} onChange={(e) => setTheme(e.currentTarget.value as Theme)}>
            <option value="auto">Theme: system</option>
            <option value="light">Theme: light</option>
            <option value="dark">Theme: dark</option>
          </select>
          <button
            type="button"
            onClick={() => {
              storeToken(null);
              setSession(null);
            }}
          >
            Log out
          </button>
        </div>
      </header>
      <main id="main">{page}</main>
    </>
  );
}

render(<App />, document.getElementById('app') as HTMLElement);
