// Notifications against real receivers: a local HTTP server (webhooks, JSON and the
// Slack/Teams `{"text"}` form) and a local SMTP server (python3-aiosmtpd, STARTTLS with a
// certificate the client verifies, AUTH with a password from a file). The case: a VM
// with an injected CreateSnapshot_Task fault fails alone after its retries, the run ends
// warning / exit 3, and every notifier for warnings names the VM and the reason; a notifier
// that fails (HTTP 500, a refused SMTP login) is logged and recorded, and never changes the run.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLab, type Lab } from '../lab/lab.ts';
import { runCli } from '../helpers/cli-runner.ts';
import { startHttpReceiver, startSmtpReceiver } from '../helpers/receivers.ts';
import { makeTestCert } from '../vsphere/test-cert.ts';
import { openSqliteCatalog } from '../../src/service/catalog/sqlite.ts';
import type { RunNotification } from '../../src/service/notify.ts';
import type { JobRunResult } from '../../src/service/run.ts';

const SMTP_PASSWORD = 'smtp-Secret-9d1c';
const HOOK_SECRET = 'T000/B000/hook-Secret-77aa';
let lab: Lab;
let dir: string;
let http: Awaited<ReturnType<typeof startHttpReceiver>>;
let smtp: Awaited<ReturnType<typeof startSmtpReceiver>>;

before(async () => {
  const cert = makeTestCert();
  [lab, http, smtp] = await Promise.all([
    startLab({ otherDiskBytes: 1024 * 1024, diskSizes: [1024 * 1024] }),
    startHttpReceiver((path) => (path === '/broken' ? 500 : 204)),
    startSmtpReceiver(cert, 'vcbt', SMTP_PASSWORD),
  ]);
  dir = await mkdtemp(join(tmpdir(), 'vcbt-notify-'));
  assert.equal((await runCli(['init', '--repo', join(dir, 'repo')])).code, 0);
  await writeFile(join(dir, 'lab.password'), lab.info.password, { mode: 0o600 });
  await writeFile(join(dir, 'smtp.password'), `${SMTP_PASSWORD}\n`, { mode: 0o600 });
  await writeFile(join(dir, 'wrong.password'), 'not-the-password\n', { mode: 0o600 });
  await writeFile(join(dir, 'hook.url'), `${http.url}/hook/${HOOK_SECRET}\n`, { mode: 0o600 });
  await writeFile(join(dir, 'smtp-ca.pem'), cert.cert);
});

after(async () => {
  await Promise.all([lab?.stop(), http?.close(), smtp?.stop()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function writeConfig(name: string, smtpPasswordFile: string, mailOn: string): Promise<string> {
  const file = join(dir, `${name}.yaml`);
  await writeFile(
    file,
    `servers:
  lab: { url: "${lab.info.sdk}", user: "${lab.info.username}", passwordFile: lab.password, thumbprint: "${lab.info.thumbprintSha1}" }
repositories:
  main: { path: repo }
catalog: { path: ${name}.sqlite }
notifiers:
  hook: { type: webhook, urlFile: hook.url }
  chat: { type: webhook, url: "${http.url}/chat", format: text }
  broken: { type: webhook, url: "${http.url}/broken" }
  mail:
    type: email
    from: "vcbt <vcbt@example.test>"
    to: [ops@example.test, oncall@example.test]
    smtp: { host: 127.0.0.1, port: ${smtp.port}, tls: starttls, caFile: smtp-ca.pem, user: vcbt, passwordFile: ${smtpPasswordFile} }
    timeout: 20s
jobs:
  nightly:
    type: backup
    server: lab
    repository: main
    vms: { include: ["DC0_H0_*"] }
    limits: { total: 1 }
    retries: { count: 2, delay: 0.01, factor: 2 }
    waitBusy: 0
    notify:
      - hook
      - { notifier: chat, on: [failed, warning, success] }
      - { notifier: mail, on: [${mailOn}] }
      - { notifier: broken, on: [failed, warning, success] }
`,
  );
  return file;
}

async function runLogs(catalogFile: string, runId: number): Promise<string[]> {
  const catalog = openSqliteCatalog(catalogFile);
  try {
    return (await catalog.logs(runId)).map((l) => l.line);
  } finally {
    await catalog.close();
  }
}

test('a VM whose snapshot creation keeps failing fails alone after its retries; the run ends warning (exit 3) and the webhooks and the mail name it with the reason', async () => {
  const configFile = await writeConfig('fault', 'smtp.password', 'warning, failed');
  // One VM at a time in name order: DC0_H0_VM0 meets every fault (1 attempt + 2 retries).
  await lab.faults({ methods: { CreateSnapshot_Task: { fault: 'SnapshotFault', count: 3 } } });
  const run = await runCli(['job', 'run', 'nightly', '--config', configFile, '--json']);
  assert.equal(run.code, 3, run.stderr);
  const doc = JSON.parse(run.stdout) as JobRunResult;
  assert.deepEqual(doc.vms.map((v) => [v.name, v.result, v.attempts, v.error?.code ?? null]), [
    ['DC0_H0_VM0', 'failed', 3, 'VSPHERE_FAULT'],
    ['DC0_H0_VM1', 'success', 1, null],
  ]);
  const runId = Number(/job nightly: run (\d+)/.exec(run.stderr)?.[1]);

  // The JSON webhook (its URL from a file): the run summary document.
  const hook = http.requests.filter((r) => r.path === `/hook/${HOOK_SECRET}`);
  assert.equal(hook.length, 1);
  assert.match(hook[0]!.contentType ?? '', /^application\/json/);
  const n = JSON.parse(hook[0]!.body) as RunNotification;
  assert.deepEqual([n.type, n.version, n.job, n.jobType, n.runId, n.status, n.protectedVms, n.error], ['run-notification', 1, 'nightly', 'backup', runId, 'warning', 1, null]);
  const failed = n.vms.find((v) => v.name === 'DC0_H0_VM0')!;
  assert.deepEqual([failed.result, failed.attempts, failed.error?.code], ['failed', 3, 'VSPHERE_FAULT']);
  assert.match(failed.error?.message ?? '', /SnapshotFault/);
  assert.deepEqual(n.vms.find((v) => v.name === 'DC0_H0_VM1')!.error, null);

  // The Slack/Teams form: {"text"} naming the VM, its code and reason.
  const chat = http.requests.filter((r) => r.path === '/chat');
  assert.equal(chat.length, 1);
  const { text } = JSON.parse(chat[0]!.body) as { text: string };
  assert.deepEqual(Object.keys(JSON.parse(chat[0]!.body) as object), ['text']);
  assert.match(text, /^\[vcbt\] job nightly: warning \(1 of 2 VMs protected\)$/m);
  assert.match(text, /^failed {2}DC0_H0_VM0: VSPHERE_FAULT: .*SnapshotFault.* \(3 attempts\)$/m);
  assert.match(text, /^success DC0_H0_VM1: full, /m);

  // The mail: through STARTTLS (the server's certificate verified against smtp.caFile), logged in.
  const mails = await smtp.messages();
  assert.equal(mails.length, 1);
  const [mail] = mails;
  assert.deepEqual([mail!.from, mail!.to, mail!.tls, mail!.user], ['vcbt@example.test', ['ops@example.test', 'oncall@example.test'], true, 'vcbt']);
  assert.match(mail!.data, /^Subject: \[vcbt\] job nightly: warning \(1 of 2 VMs protected\)/m);
  const body = mail!.data.replaceAll('=\r\n', ''); // quoted-printable soft line breaks
  assert.match(body, /failed {2}DC0_H0_VM0: VSPHERE_FAULT: .*SnapshotFault.* \(3 attempts\)/);

  // The broken receiver: logged and recorded, the run's result untouched.
  const expected = 'notification to broken failed: NOTIFY_FAILED: notifier broken: the webhook answered HTTP 500';
  assert.ok(run.stderr.includes(expected), run.stderr);
  const logs = await runLogs(join(dir, 'fault.sqlite'), runId);
  assert.ok(logs.includes(expected), logs.join('\n'));
  for (const name of ['hook', 'chat', 'mail']) assert.ok(logs.includes(`notification sent to ${name} (warning)`), logs.join('\n'));
  // The secrets (the SMTP password, the webhook URL kept in a file) appear nowhere.
  for (const secret of [SMTP_PASSWORD, HOOK_SECRET]) {
    assert.ok(!run.stderr.includes(secret) && !run.stdout.includes(secret) && !logs.join('\n').includes(secret), `${secret} leaked`);
  }
  assert.deepEqual(await lab.faultsArmed(), {});
});

test('a successful run notifies only the rules that ask for success; a refused SMTP login is a recorded NOTIFY_FAILED, the run stays success', async () => {
  const configFile = await writeConfig('success', 'wrong.password', 'success');
  const before = { hook: http.requests.filter((r) => r.path.startsWith('/hook/')).length, chat: http.requests.filter((r) => r.path === '/chat').length, mails: (await smtp.messages()).length };
  const run = await runCli(['job', 'run', 'nightly', '--config', configFile, '--vm', 'DC0_H0_VM1']);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(http.requests.filter((r) => r.path.startsWith('/hook/')).length, before.hook, 'hook notifies failed and warning only (the default)');
  const chat = http.requests.filter((r) => r.path === '/chat');
  assert.equal(chat.length, before.chat + 1);
  assert.match((JSON.parse(chat.at(-1)!.body) as { text: string }).text, /^\[vcbt\] job nightly: success \(1 of 1 VMs protected\)$/m);
  assert.equal((await smtp.messages()).length, before.mails, 'no mail: the login was refused');
  const line = /^.*notification to mail failed: NOTIFY_FAILED: notifier mail: .*SMTP 535.*$/m.exec(run.stderr)?.[0];
  assert.ok(line, run.stderr);
  const runId = Number(/job nightly: run (\d+)/.exec(run.stderr)?.[1]);
  const logs = await runLogs(join(dir, 'success.sqlite'), runId);
  assert.ok(logs.some((l) => /^notification to mail failed: NOTIFY_FAILED: .*SMTP 535/.test(l)), logs.join('\n'));
  assert.ok(!run.stderr.includes('not-the-password'));
});
