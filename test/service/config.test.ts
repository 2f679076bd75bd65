// The service configuration: the minimal file works as written; every problem of a
// file is reported at once with file:line:column and its key path; secrets are never inline;
// `vcbt config check` exits 0 (valid, warnings for what this machine lacks) or 2 (invalid)
// without touching anything.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, DEFAULT_WAIT_BUSY_MS, defaultLimits, defaultRetries, parseConfig, type ConfigProblem } from '../../src/service/config.ts';
import { nextRun, rpoOf } from '../../src/service/schedule.ts';
import { runCli } from '../helpers/cli-runner.ts';

export const minimalConfig = `servers:
  lab:
    url: https://127.0.0.1:8989/sdk
    user: administrator@vsphere.local
    passwordFile: /etc/vcbt/lab.password
    thumbprint: "2C:11:ED:D7:13:87:7D:B5:74:18:B8:1C:42:C2:56:1F:0D:B9:5B:B9"
repositories:
  main:
    path: /backups/main
jobs:
  nightly:
    type: backup
    server: lab
    repository: main
    vms:
      include: ["DC0_*"]
      exclude: ["DC0_H0_VM1"]
    schedule: "0 2 * * *"
    retention:
      keepLast: 7
`;

function problemsOf(text: string): ConfigProblem[] {
  try {
    parseConfig(text, 'svc.yaml');
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    assert.equal(error.code, 'CONFIG_INVALID');
    return error.context.problems as ConfigProblem[];
  }
  assert.fail('the configuration was accepted');
}

test("the issue's minimal file works as written, with the documented defaults", () => {
  const config = parseConfig(minimalConfig, '/etc/vcbt/vcbt.yaml');
  const server = config.servers.get('lab');
  assert.deepEqual(server, { name: 'lab', url: 'https://127.0.0.1:8989/sdk', user: 'administrator@vsphere.local', password: { file: '/etc/vcbt/lab.password' }, thumbprint: '2C:11:ED:D7:13:87:7D:B5:74:18:B8:1C:42:C2:56:1F:0D:B9:5B:B9' });
  assert.deepEqual(config.repositories.get('main'), { name: 'main', path: '/backups/main', passphrase: undefined });
  const job = config.jobs.get('nightly')!;
  assert.equal(job.type, 'backup');
  assert.equal(job.server, 'lab');
  assert.equal(job.repository, 'main');
  assert.deepEqual(job.vms.include.map((r) => [r.kind, r.pattern]), [['name', 'DC0_*']]);
  assert.deepEqual(job.vms.exclude.map((r) => [r.kind, r.pattern]), [['name', 'DC0_H0_VM1']]);
  assert.deepEqual(job.schedule, { cron: '0 2 * * *', timezone: undefined });
  assert.deepEqual(job.retention, { keepLast: 7, keepDaily: 0, keepWeekly: 0, keepMonthly: 0 });
  assert.deepEqual(job.retries, defaultRetries);
  assert.deepEqual(job.limits, defaultLimits);
  assert.equal(job.cbt, 'enable');
  assert.equal(job.waitBusyMs, DEFAULT_WAIT_BUSY_MS);
  assert.equal(job.transport.type, 'http');
  assert.equal(config.catalog.path, '/var/lib/vcbt/catalog.sqlite');
  // No rpo: twice the schedule's interval (nightly: 48 h); an explicit rpo wins; no schedule, no objective.
  assert.equal(job.rpoMs, undefined);
  assert.equal(rpoOf(job, new Date('2026-06-01T12:00:00Z')), 2 * 86_400_000);
  assert.equal(rpoOf({ ...job, rpoMs: 3_600_000 }, new Date()), 3_600_000);
  assert.equal(rpoOf({ ...job, schedule: undefined }, new Date()), null);
  assert.equal(parseConfig(minimalConfig.replace('retention:', 'rpo: 36h\n    retention:'), '/etc/vcbt/vcbt.yaml').jobs.get('nightly')?.rpoMs, 36 * 3_600_000);
});

test('every problem at once, each at its line and column with its key path', () => {
  const text = `servers:
  lab:
    url: https://vc/sdk
    user: u
    password: hunter2
repositories:
  main:
    path: /b
jobs:
  nightly:
    type: backupp
    server: nolab
    repository: main
    vms:
      include: ["DC0_*", "attribute:nope"]
    schedule: "61 2 * * *"
    retention:
      keepLast: -1
    limits:
      perHost: 0
    retries: { count: 2, delay: soon }
`;
  const problems = problemsOf(text);
  const at = problems.map((p) => `${p.line}:${p.column} ${p.path}`);
  assert.deepEqual(at, [
    '5:5 servers.lab.password',
    '11:11 jobs.nightly.type',
    '12:13 jobs.nightly.server',
    '15:26 jobs.nightly.vms.include[1]',
    '16:15 jobs.nightly.schedule',
    '18:17 jobs.nightly.retention.keepLast',
    '20:16 jobs.nightly.limits.perHost',
    '21:33 jobs.nightly.retries.delay',
  ]);
  assert.match(problems[0].message, /never written in the configuration; use passwordFile .* or passwordEnv/);
  assert.match(problems[2].message, /no server "nolab" under servers \(there: lab\)/);
  assert.equal(problems[0].file, 'svc.yaml');
});

test('a YAML syntax error and a duplicate key point at their position', () => {
  const broken = problemsOf('servers:\n  lab: {url: x\njobs: {}\n');
  assert.equal(broken[0].path, '');
  assert.match(broken[0].message, /^YAML: /);
  assert.ok(broken[0].line >= 2, JSON.stringify(broken[0]));
  const duplicate = problemsOf('servers:\n  lab:\n    url: a\n    user: b\n    url: c\n');
  assert.deepEqual([duplicate[0].line, duplicate[0].column], [5, 5]);
  assert.match(duplicate[0].message, /unique|duplicate/i);
});

test('secrets come from files or environment variables only; relative paths are the config file\'s', () => {
  const config = parseConfig(
    `servers:
  vc: { url: https://vc/sdk, user: u, passwordEnv: VC_PASSWORD }
  esx: { url: https://esx/sdk, user: root }
repositories:
  enc: { path: repo, passphraseFile: secrets/pass }
catalog: { path: state/catalog.sqlite }
jobs: {}
`,
    '/etc/vcbt/vcbt.yaml',
  );
  assert.deepEqual(config.servers.get('vc')?.password, { env: 'VC_PASSWORD' });
  assert.deepEqual(config.servers.get('esx')?.password, { env: 'VCBT_PASSWORD' });
  assert.deepEqual(config.repositories.get('enc'), { name: 'enc', path: '/etc/vcbt/repo', passphrase: { file: '/etc/vcbt/secrets/pass' } });
  assert.equal(config.catalog.path, '/etc/vcbt/state/catalog.sqlite');
  const inline = problemsOf('servers:\n  vc: { url: https://vc/sdk, user: u, passwordEnv: "s3cr3t!" }\n');
  assert.deepEqual([inline[0].path, inline[0].line], ['servers.vc.passwordEnv', 2]);
  assert.match(inline[0].message, /environment variable name/);
  const repoSecret = problemsOf('servers:\n  vc: { url: https://vc/sdk, user: u }\nrepositories:\n  r: { path: /r, passphrase: x }\n');
  assert.equal(repoSecret[0].path, 'repositories.r.passphrase');
});

test('selection rules, replicate targets, schedules with a time zone', () => {
  const config = parseConfig(
    `servers:
  vc: { url: https://vc/sdk, user: u }
jobs:
  dr:
    type: replicate
    server: vc
    replica: { target: "/replicas/{vm}/{disk}.raw" }
    vms:
      include: ["folder:DC0/vm", "cluster:DC0_C0", "attribute:Backup=gold*", "moref:vm-57"]
      exclude: ["pool:Test*"]
      excludeDisks: [{ vm: "DB*", disks: [2001, 2002] }]
    schedule: { cron: "30 1 * * 1-5", timezone: Europe/Berlin }
    limits: { total: 8, perHost: 3, perDatastore: 2 }
    retries: { count: 0 }
    cbt: report
    waitBusy: 0
`,
    '/etc/vcbt/vcbt.yaml',
  );
  const job = config.jobs.get('dr')!;
  assert.deepEqual(job.replica, { target: '/replicas/{vm}/{disk}.raw', stateDir: undefined });
  assert.deepEqual(job.vms.include.map((r) => [r.kind, r.pattern, r.attribute]), [
    ['folder', 'DC0/vm', undefined],
    ['cluster', 'DC0_C0', undefined],
    ['attribute', 'gold*', 'Backup'],
    ['moref', 'vm-57', undefined],
  ]);
  assert.deepEqual(job.vms.excludeDisks, [{ vm: 'DB*', diskKeys: [2001, 2002] }]);
  assert.deepEqual(job.limits, { total: 8, perHost: 3, perDatastore: 2 });
  assert.equal(job.retries.count, 0);
  assert.equal(job.cbt, 'report');
  assert.equal(job.waitBusyMs, 0);
  // 01:30 in Berlin on a winter Monday is 00:30 UTC.
  assert.equal(nextRun(job.schedule!, new Date('2025-01-05T12:00:00Z'))?.toISOString(), '2025-01-06T00:30:00.000Z');
  const badZone = problemsOf('servers:\n  vc: { url: https://vc/sdk, user: u }\njobs:\n  j:\n    type: replicate\n    server: vc\n    replica: { target: "/r/{vm}.raw" }\n    vms: { include: [x] }\n    schedule: { cron: "0 1 * * *", timezone: Mars/Olympus }\n');
  assert.deepEqual(badZone.map((p) => p.path), ['jobs.j.replica.target', 'jobs.j.schedule']);
  assert.match(badZone[1].message, /unknown time zone "Mars\/Olympus"/);
});

test('vcbt config check: 0 for a valid file (warnings for what this machine lacks), 2 with every problem for an invalid one', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vcbt-config-'));
  try {
    const good = join(dir, 'good.yaml');
    await writeFile(good, minimalConfig);
    const ok = await runCli(['config', 'check', good]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /valid: 1 servers, 1 repositories, 1 jobs \(nightly\)/);
    assert.match(ok.stderr, /warning: servers\.lab password: \/etc\/vcbt\/lab\.password is not readable here/);
    const json = await runCli(['config', 'check', good, '--json']);
    const document = JSON.parse(json.stdout) as { type: string; valid: boolean; jobs: string[] };
    assert.deepEqual([document.type, document.valid, document.jobs], ['config-check', true, ['nightly']]);

    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, minimalConfig.replace('keepLast: 7', 'keepLast: seven').replace('server: lab', 'server: lab2'));
    const invalid = await runCli(['config', 'check', bad]);
    assert.equal(invalid.code, 2);
    assert.match(invalid.stderr, new RegExp(`CONFIG_INVALID: ${bad.replace(/[.]/g, '\\.')}:13:13: jobs\\.nightly\\.server: no server "lab2"`));
    assert.match(invalid.stderr, /:20:17: jobs\.nightly\.retention\.keepLast: must be a whole number/);
    const invalidJson = JSON.parse((await runCli(['config', 'check', bad, '--json'])).stdout) as { valid: boolean; problems: ConfigProblem[] };
    assert.deepEqual(invalidJson.problems.map((p) => [p.line, p.column]), [[13, 13], [20, 17]]);

    const missing = await runCli(['config', 'check', join(dir, 'none.yaml')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /CONFIG_UNREADABLE: cannot read the configuration file .*none\.yaml \(ENOENT\)/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('daemon and catalog keys: listen address, stop timeout, history retention; bad values named at their position', () => {
  const base = `servers:
  lab: { url: "https://127.0.0.1:8989/sdk", user: u, passwordEnv: P }
`;
  const defaults = parseConfig(base, '/etc/vcbt/vcbt.yaml');
  assert.deepEqual(defaults.daemon, { listen: { host: '127.0.0.1', port: 8420 }, stopTimeoutMs: 300_000, inventoryCacheMs: 30_000, restoreDirectory: undefined, tls: undefined });
  assert.equal(defaults.catalog.keepHistoryMs, 90 * 86_400_000);
  const set = parseConfig(`${base}daemon: { listen: "[::1]:0", stopTimeout: 30s, inventoryCache: 0, restoreDirectory: restores }\ncatalog: { keepHistory: 2d }\n`, '/etc/vcbt/vcbt.yaml');
  assert.deepEqual(set.daemon, { listen: { host: '::1', port: 0 }, stopTimeoutMs: 30_000, inventoryCacheMs: 0, restoreDirectory: '/etc/vcbt/restores', tls: undefined });
  assert.equal(set.catalog.keepHistoryMs, 2 * 86_400_000);
  assert.throws(
    () => parseConfig(`${base}daemon: { listen: "localhost", stopTimeout: soon }\ncatalog: { keepHistory: 0 }\n`, '/etc/vcbt/vcbt.yaml'),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual((error.context.problems as ConfigProblem[]).map((p) => [p.line, p.path]), [[3, 'daemon.listen'], [3, 'daemon.stopTimeout'], [4, 'catalog.keepHistory']]);
      return true;
    },
  );
});

test('notifiers, a job\'s notify rules, its verify schedule and daemon.tls; secrets only by file or variable; problems at their position', () => {
  const base = `servers:
  lab: { url: "https://127.0.0.1:8989/sdk", user: u, passwordEnv: P }
repositories:
  main: { path: /backups/main }
`;
  const config = parseConfig(
    `${base}daemon: { tls: { certificateFile: tls/cert.pem, keyFile: /etc/vcbt/tls/key.pem } }
notifiers:
  chat: { type: webhook, urlFile: chat.url, format: text }
  hook: { type: webhook, url: "https://hooks.example.test/vcbt", timeout: 5s }
  mail:
    type: email
    from: vcbt@example.test
    to: ops@example.test
    smtp: { host: smtp.example.test, user: vcbt, passwordEnv: SMTP_PASSWORD }
jobs:
  nightly:
    type: backup
    server: lab
    repository: main
    vms: { include: ["*"] }
    verify: { schedule: { cron: "0 6 * * 0", timezone: UTC }, points: 3 }
    notify: [mail, { notifier: chat, on: [failed, warning, success] }, { notifier: hook, on: failed }]
`,
    '/etc/vcbt/vcbt.yaml',
  );
  assert.deepEqual(config.daemon.tls, { certificateFile: '/etc/vcbt/tls/cert.pem', keyFile: '/etc/vcbt/tls/key.pem' });
  assert.deepEqual(config.notifiers.get('chat'), { name: 'chat', type: 'webhook', url: { file: '/etc/vcbt/chat.url' }, format: 'text', timeoutMs: 30_000 });
  assert.deepEqual(config.notifiers.get('hook'), { name: 'hook', type: 'webhook', url: { text: 'https://hooks.example.test/vcbt' }, format: 'json', timeoutMs: 5_000 });
  assert.deepEqual(config.notifiers.get('mail'), {
    name: 'mail',
    type: 'email',
    from: 'vcbt@example.test',
    to: ['ops@example.test'],
    smtp: { host: 'smtp.example.test', port: 587, tls: 'starttls', caFile: undefined, user: 'vcbt', password: { env: 'SMTP_PASSWORD' } },
    timeoutMs: 30_000,
  });
  const job = config.jobs.get('nightly')!;
  assert.deepEqual(job.notify, [
    { notifier: 'mail', on: ['failed', 'warning'] },
    { notifier: 'chat', on: ['failed', 'warning', 'success'] },
    { notifier: 'hook', on: ['failed'] },
  ]);
  assert.deepEqual(job.verify, { schedule: { cron: '0 6 * * 0', timezone: 'UTC' }, points: { random: 3 }, readData: true });
  assert.equal(parseConfig(`${base}jobs: { j: { type: backup, server: lab, repository: main, vms: { include: [x] } } }\n`, '/x.yaml').jobs.get('j')!.verify, undefined);

  const bad = problemsOf(
    `${base}daemon: { tls: { certificateFile: c.pem } }
notifiers:
  chat: { type: webhook, url: "ftp://x" }
  mail: { type: email, from: nobody, to: [ops], smtp: { host: h, tls: maybe, password: hunter2 } }
  other: { type: pager }
jobs:
  nightly:
    type: backup
    server: lab
    repository: main
    vms: { include: ["*"] }
    verify: { schedule: "not cron", points: some }
    notify: [pager, { notifier: chat, on: [always] }]
`,
  );
  assert.deepEqual(
    bad.map((p) => [p.line, p.path]),
    [
      [5, 'daemon.tls.keyFile'],
      [7, 'notifiers.chat.url'],
      [8, 'notifiers.mail.from'],
      [8, 'notifiers.mail.to[0]'],
      [8, 'notifiers.mail.smtp.tls'],
      [8, 'notifiers.mail.smtp.password'],
      [9, 'notifiers.other.type'],
      [16, 'jobs.nightly.verify.schedule'],
      [16, 'jobs.nightly.verify.points'],
      [17, 'jobs.nightly.notify[0]'],
      [17, 'jobs.nightly.notify[1].on'],
    ],
  );
  assert.match(bad.find((p) => p.path === 'notifiers.mail.smtp.password')!.message, /never written in the configuration/);
});
