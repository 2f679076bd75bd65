// Small shared pieces of the console's pages.
//
// Vocabulary
// - useApi: loads one answer (optionally again every `pollMs`), keeps the last good answer
//   while reloading, and the failure if any.
// - Problem: an API failure shown with its code, linked to the code's row of the errors page
//   (docs/errors.md, built into the console) that says what to do.
// - Confirm: a modal <dialog> (focus stays inside, Escape cancels) naming what an action
//   overwrites or starts; nothing happens until its confirm button is pressed.
import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useId, useRef, useState } from 'preact/hooks';
import { ApiFailure } from './api.ts';

export interface Loaded<T> {
  data: T | undefined;
  error: unknown;
  reload: () => void;
}

export function useApi<T>(load: () => Promise<T>, deps: unknown[], pollMs?: number): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [tick, setTick] = useState(0);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  useEffect(() => {
    let live = true;
    load().then(
      (d) => {
        if (!live) return;
        setData(d);
        setError(undefined);
      },
      (e: unknown) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  useEffect(() => {
    if (!pollMs) return;
    const timer = setInterval(reload, pollMs);
    return () => clearInterval(timer);
  }, [pollMs, reload]);
  return { data, error, reload };
}

export function Problem({ error }: { error: unknown }) {
  if (error === undefined || error === null) return null;
  if (error instanceof ApiFailure) {
    return (
      <div class="problem" role="alert">
        <ErrorCode code={error.code} /> {error.message}
      </div>
    );
  }
  return (
    <div class="problem" role="alert">
      {error instanceof Error ? error.message : String(error)}
    </div>
  );
}

export function ErrorCode({ code }: { code: string }) {
  return (
    <a class="code" href={`#/errors/${encodeURIComponent(code)}`} title="what it means and what to do">
      {code}
    </a>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="muted" role="status">
      Loading {what}…
    </p>
  );
}

const statusLabels: Record<string, string> = { success: 'success', warning: 'warning', failed: 'failed', running: 'running', interrupted: 'interrupted' };
export function Status({ status }: { status: string }) {
  return <span class={`badge badge-${status}`}>{statusLabels[status] ?? status}</span>;
}

export function Progress({ label, fraction, detail }: { label: string; fraction: number | null; detail?: string }) {
  const percent = fraction === null ? null : Math.round(Math.min(1, Math.max(0, fraction)) * 100);
  return (
    <div class="progress">
      <div class="progress-label">
        <span>{label}</span>
        <span>
          {detail ? `${detail} · ` : ''}
          {percent === null ? 'waiting' : `${percent} %`}
        </span>
      </div>
      <div class="bar" role="progressbar" aria-label={label} aria-valuemin={0} aria-valuemax={100} aria-valuenow={percent ?? undefined}>
        <div class="fill" style={{ width: `${percent ?? 0}%` }} />
      </div>
    </div>
  );
}

export function Confirm(props: { open: boolean; title: string; confirmLabel: string; danger?: boolean; onConfirm: () => void; onCancel: () => void; children: ComponentChildren }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  useEffect(() => {
    const d = dialog.current;
    if (!d) return;
    if (props.open && !d.open) d.showModal();
    if (!props.open && d.open) d.close();
  }, [props.open]);
  return (
    <dialog ref={dialog} aria-labelledby={titleId} onCancel={props.onCancel}>
      <h2 id={titleId}>{props.title}</h2>
      <div>{props.children}</div>
      <div class="actions">
        <button type="button" onClick={props.onCancel}>
          Cancel
        </button>
        <button type="button" class={props.danger ? 'danger' : 'primary'} onClick={props.onConfirm}>
          {props.confirmLabel}
        </button>
      </div>
    </dialog>
  );
}

export function Page({ title, children, actions }: { title: string; children: ComponentChildren; actions?: ComponentChildren }) {
  useEffect(() => {
    document.title = `${title} · vcbt`;
  }, [title]);
  return (
    <section aria-labelledby="page-title">
      <div class="page-head">
        <h1 id="page-title" tabIndex={-1}>
          {title}
        </h1>
        {actions ? <div class="actions">{actions}</div> : null}
      </div>
      {children}
    </section>
  );
}

/** The repository a job writes to, from its `target` ("repository NAME"); null for a replica job. */
export function repositoryOf(target: string): string | null {
  const match = /^repository (.+)$/.exec(target);
  return match ? (match[1] as string) : null;
}
