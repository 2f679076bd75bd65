// Notifications: when a job run ends, each notifier its `notify` rules name for that result
// gets a summary of the run: a webhook (JSON POST) or an e-mail over SMTP (nodemailer).
//
// Vocabulary
// - run notification: the summary of one run (RunNotification): job, run id, status
//   (`success`, `warning`, `failed`, or `interrupted`), the run's own error (a run that could not
//   start) and per VM its result, attempts and, when it failed, the error code and reason.
//   Its text form (`notificationText`) is the e-mail body and the Slack/Teams `{"text"}` body.
// - notify rule: `{notifier, on}` of a job; `on` lists run results; an interrupted run counts
//   as `failed`.
// - a notification never fails a run: each send is bounded by the notifier's timeout and its
//   outcome (sent, or NOTIFY_FAILED with the reason) is reported to the caller, which logs it
//   and records it in the catalog. Secrets (an SMTP password, a webhook URL kept in a file)
//   are read when sending and never appear in an outcome.
import { hostname } from 'node:os';
import { readFile } from 'node:fs/promises';
import nodemailer from 'nodemailer';
import { VcbtError, type ErrorCode } from '../errors.ts';
import type { EmailNotifierConfig, JobConfig, NotifierConfig, NotifyOn, ServiceConfig, WebhookNotifierConfig } from './config.ts';
import type { JobRunResult } from './run.ts';
import { readSecret } from './secrets.ts';

export type NotifiedStatus = 'success' | 'warning' | 'failed' | 'interrupted';

/** The JSON a webhook of format `json` receives (docs/json/run-notification.schema.json). */
export interface RunNotification {
  version: 1;
  type: 'run-notification';
  job: string;
  jobType: JobConfig['type'];
  runId: number;
  /** The host name of the machine that ran it. */
  host: string;
  status: NotifiedStatus;
  startedAt: string;
  endedAt: string;
  /** The run's own failure (JOB_NO_VMS, a server that cannot be reached, INTERRUPTED), null otherwise. */
  error: { code: ErrorCode; message: string } | null;
  /** VMs protected (result success or warning). */
  protectedVms: number;
  vms: Array<{
    name: string;
    moref: string;
    result: 'success' | 'warning' | 'failed';
    attempts: number;
    mode: 'full' | 'incremental' | 'mixed' | null;
    bytesStored: number;
    pointId: string | null;
    /** Why it failed: the error code and its message; null when it did not fail. */
    error: { code: ErrorCode; message: string } | null;
    warnings: string[];
  }>;
  /** The same summary as text (the e-mail body). */
  text: string;
}

export interface NotifyOutcome {
  notifier: string;
  sent: boolean;
  error: { code: ErrorCode; message: string } | null;
}

/** Codes: NOTIFY_FAILED (context `notifier`). */
export class NotifyError extends VcbtError {}

/** The summary of a run that ended (`result`) or could not start / was stopped (`error`). */
export function runNotification(run: {
  job: JobConfig;
  runId: number;
  status: NotifiedStatus;
  startedAt: string;
  endedAt: string;
  error: RunNotification['error'];
  result: JobRunResult | undefined;
}): RunNotification {
  const vms = (run.result?.vms ?? []).map((v) => ({
    name: v.name,
    moref: v.moref,
    result: v.result,
    attempts: v.attempts,
    mode: v.mode,
    bytesStored: v.bytesWritten,
    pointId: v.pointId,
    error: v.result === 'failed' ? v.error : null,
    warnings: v.warnings,
  }));
  const n: RunNotification = {
    version: 1,
    type: 'run-notification',
    job: run.job.name,
    jobType: run.job.type,
    runId: run.runId,
    host: hostname(),
    status: run.status,
    startedAt: run.startedAt,
    endedAt: run.endedAt,
    error: run.error,
    protectedVms: vms.filter((v) => v.result !== 'failed').length,
    vms,
    text: '',
  };
  n.text = notificationText(n);
  return n;
}

export function notificationSubject(n: RunNotification): string {
  return `[vcbt] job ${n.job}: ${n.status}${n.vms.length ? ` (${n.protectedVms} of ${n.vms.length} VMs protected)` : ''}`;
}

function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

/** The run summary as text: a head line, the run's error, then one line per VM (failed first). */
export function notificationText(n: Omit<RunNotification, 'text'>): string {
  const lines = [`${notificationSubject({ ...n, text: '' })}`, `${n.jobType} run ${n.runId} on ${n.host}, ${n.startedAt} to ${n.endedAt}`];
  if (n.error) lines.push(`run error: ${n.error.code}: ${n.error.message}`);
  const order = { failed: 0, warning: 1, success: 2 } as const;
  const vms = [...n.vms].sort((a, b) => order[a.result] - order[b.result] || a.name.localeCompare(b.name));
  if (vms.length) lines.push('');
  for (const v of vms) {
    const attempts = v.attempts > 1 ? ` (${v.attempts} attempts)` : '';
    if (v.error) lines.push(`${v.result.padEnd(7)} ${v.name}: ${v.error.code}: ${v.error.message}${attempts}`);
    else lines.push(`${v.result.padEnd(7)} ${v.name}: ${v.mode ?? 'nothing copied'}, ${size(v.bytesStored)} stored${attempts}${v.warnings.length ? `; ${v.warnings.join('; ')}` : ''}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The notifiers a job's rules name for this status (an interrupted run counts as failed), each once. */
export function notifiersFor(config: ServiceConfig, job: JobConfig, status: NotifiedStatus): NotifierConfig[] {
  const on: NotifyOn = status === 'interrupted' ? 'failed' : status;
  const names = new Set(job.notify.filter((rule) => rule.on.includes(on)).map((rule) => rule.notifier));
  return [...names].flatMap((name) => {
    const notifier = config.notifiers.get(name);
    return notifier ? [notifier] : [];
  });
}

/** Sends the notification to every notifier the job's rules name for its status; never throws. */
export async function notifyRun(config: ServiceConfig, job: JobConfig, n: RunNotification, env: NodeJS.ProcessEnv): Promise<NotifyOutcome[]> {
  return Promise.all(
    notifiersFor(config, job, n.status).map(async (notifier): Promise<NotifyOutcome> => {
      try {
        await send(notifier, n, env);
        return { notifier: notifier.name, sent: true, error: null };
      } catch (error) {
        const e = error instanceof VcbtError ? error : new NotifyError('NOTIFY_FAILED', `notifier ${notifier.name}: ${error instanceof Error ? error.message : String(error)}`, { notifier: notifier.name });
        return { notifier: notifier.name, sent: false, error: { code: e.code, message: e.message } };
      }
    }),
  );
}

export function send(notifier: NotifierConfig, n: RunNotification, env: NodeJS.ProcessEnv): Promise<void> {
  return notifier.type === 'webhook' ? sendWebhook(notifier, n, env) : sendEmail(notifier, n, env);
}

async function sendWebhook(notifier: WebhookNotifierConfig, n: RunNotification, env: NodeJS.ProcessEnv): Promise<void> {
  const url = 'text' in notifier.url ? notifier.url.text : await readSecret(notifier.url, env, `notifiers.${notifier.name} url`);
  const body = notifier.format === 'text' ? JSON.stringify({ text: n.text }) : JSON.stringify(n);
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json; charset=utf-8', 'user-agent': 'vcbt' },
      body,
      redirect: 'error',
      signal: AbortSignal.timeout(notifier.timeoutMs),
    });
  } catch (error) {
    // The URL may hold a secret (chat webhooks): the message names the notifier, never the URL.
    const cause = error instanceof Error ? ((error.cause as NodeJS.ErrnoException | undefined)?.code ?? error.name) : String(error);
    throw new NotifyError('NOTIFY_FAILED', `notifier ${notifier.name}: the webhook could not be reached (${cause})`, { notifier: notifier.name, cause }, { cause: error });
  }
  await response.body?.cancel().catch(() => undefined);
  if (!response.ok) throw new NotifyError('NOTIFY_FAILED', `notifier ${notifier.name}: the webhook answered HTTP ${response.status}`, { notifier: notifier.name, status: response.status });
}

async function sendEmail(notifier: EmailNotifierConfig, n: RunNotification, env: NodeJS.ProcessEnv): Promise<void> {
  const { smtp } = notifier;
  const pass = smtp.password ? await readSecret(smtp.password, env, `notifiers.${notifier.name} smtp password`) : undefined;
  let ca: Buffer | undefined;
  if (smtp.caFile) {
    try {
      ca = await readFile(smtp.caFile);
    } catch (error) {
      throw new NotifyError('NOTIFY_FAILED', `notifier ${notifier.name}: cannot read smtp.caFile ${smtp.caFile} (${(error as NodeJS.ErrnoException).code})`, { notifier: notifier.name, file: smtp.caFile }, { cause: error });
    }
  }
  const transport = nodemailer.createTransport({
    host: smtp.host,
    port: smtp.port,
    secure: smtp.tls === 'tls',
    requireTLS: smtp.tls === 'starttls',
    ignoreTLS: smtp.tls === 'none',
    auth: smtp.user !== undefined && pass !== undefined ? { user: smtp.user, pass } : undefined,
    tls: { ca, rejectUnauthorized: true, minVersion: 'TLSv1.2' },
    connectionTimeout: notifier.timeoutMs,
    greetingTimeout: notifier.timeoutMs,
    socketTimeout: notifier.timeoutMs,
    logger: false,
  });
  try {
    await transport.sendMail({ from: notifier.from, to: notifier.to, subject: notificationSubject(n), text: n.text });
  } catch (error) {
    const e = error as Error & { code?: string; responseCode?: number };
    const detail = [e.code, e.responseCode ? `SMTP ${e.responseCode}` : undefined].filter(Boolean).join(', ');
    throw new NotifyError('NOTIFY_FAILED', `notifier ${notifier.name}: the mail to ${notifier.to.join(', ')} via ${smtp.host}:${smtp.port} was not sent (${detail || e.message})`, { notifier: notifier.name, host: smtp.host, port: smtp.port, cause: e.code ?? null }, { cause: error });
  } finally {
    transport.close();
  }
}
