// The web console end to end: `vcbt serve` (a child process) on the lab, driven in Debian's
// chromium by playwright-core (npm run test:e2e; scripts/install-system-packages.sh installs
// chromium). Logs in with a token; sees every lab VM with its power and CBT state; enables CBT;
// runs a job from the Jobs page and watches its run reach 100 %; backs one VM up and finds the
// new restore point on its timeline; exports a disk over NBD, restores it to a file whose
// sha256 matches the lab's disk, verifies the point and dry-runs a prune; sees a VM failed by
// an injected snapshot fault with its error code (linked to what to do); a read-only token
// sees no action. Every page passes axe-core with no serious or critical
// violation, raises no Content-Security-Policy violation, and is photographed into
// docs/screenshots/ (the README shows them).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startLab, type Lab } from '../lab/lab.ts';
import { runCli } from '../helpers/cli-runner.ts';
import { checkSchema } from '../api/schema-check.ts';
import { openApiDocument } from '../../src/api/openapi.ts';

const root = join(import.meta.dirname, '../..');
const bin = join(root, 'bin/vcbt.ts');
const shots = join(root, 'docs/screenshots');
const FAILING_VM = 'DC0_C0_RP0_VM1';
const WAIT_MS = 120_000;
let lab: Lab;
let dir: string;
let daemon: ChildProcess;
let daemonLog = '';
let base: string;
let token: string;
let readOnly: string;
let browser: Browser;
const cspViolations: string[] = [];

before(async () => {
  lab = await startLab({ otherDiskBytes: 2 * 1024 * 1024, diskSizes: [3 * 1024 * 1024, 1024 * 1024] });
  dir = await mkdtemp(join(tmpdir(), 'vcbt-console-'));
  assert.equal((await runCli(['init', '--repo', join(dir, 'repo')])).code, 0);
  await writeFile(join(dir, 'lab.password'), lab.info.password, { mode: 0o600 });
  await mkdir(join(dir, 'restores'));
  const configFile = join(dir, 'vcbt.yaml');
  await writeFile(
    configFile,
    `servers:
  lab: { url: "${lab.info.sdk}", user: "${lab.info.username}", passwordFile: lab.password, thumbprint: "${lab.info.thumbprintSha1}" }
repositories:
  main: { path: repo }
catalog: { path: catalog.sqlite }
daemon: { listen: "127.0.0.1:0", stopTimeout: 5s, inventoryCache: 0, restoreDirectory: restores }
jobs:
  nightly:
    type: backup
    server: lab
    repository: main
    vms: { include: ["DC0_*"], exclude: ["${FAILING_VM}"] }
    schedule: "0 2 * * *"
    transport: { ioTimeout: 1s }
    retries: { count: 0 }
    waitBusy: 0
  edge:
    type: backup
    server: lab
    repository: main
    vms: { include: ["${FAILING_VM}"] }
    retries: { count: 0 }
    waitBusy: 0
`,
  );
  const created = await runCli(['token', 'create', '--config', configFile, '--note', 'e2e operator']);
  assert.equal(created.code, 0, created.stderr);
  token = created.stdout.trim();
  const ro = await runCli(['token', 'create', '--config', configFile, '--read-only', '--note', 'e2e viewer']);
  assert.equal(ro.code, 0, ro.stderr);
  readOnly = ro.stdout.trim();
  daemon = spawn(process.execPath, [bin, 'serve', '--config', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  daemon.stderr!.on('data', (d: Buffer) => (daemonLog += d.toString()));
  for (;;) {
    const match = /API listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(daemonLog);
    if (match) {
      base = match[1] as string;
      break;
    }
    assert.equal(daemon.exitCode, null, daemonLog);
    await sleep(20);
  }
  // Guest data on every disk, so that runs read and store bytes and restores have something to compare.
  for (const vm of lab.info.vms) for (const disk of vm.disks) await lab.write(vm.name, disk.key, 64 * 1024, randomBytes(256 * 1024));
  await mkdir(shots, { recursive: true });
  browser = await chromium.launch({ executablePath: process.env.VCBT_CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
  if (daemon && daemon.exitCode === null) {
    const exited = new Promise((resolve) => daemon.on('exit', resolve));
    daemon.kill('SIGTERM');
    await exited;
  }
  await lab?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The browser's globals this file's page functions use (the root tsconfig has no DOM types: it is Node's). */
type InPage = {
  document: { body: unknown; querySelector(selector: string): { getAttribute(name: string): string | null } | null; querySelectorAll(selector: string): { length: number } };
  getComputedStyle(element: unknown): { backgroundColor: string };
};

const axeSource = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/** axe-core in the page (evaluated through the DevTools protocol, which the page's CSP does not govern): serious and critical violations. */
async function accessibility(page: Page, what: string): Promise<void> {
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run: (context: unknown, options: unknown) => Promise<{ violations: Array<{ id: string; impact: string; help: string; nodes: Array<{ target: unknown }> }> }> } }).axe;
    const result = await axe.run((globalThis as unknown as InPage).document, { resultTypes: ['violations'] });
    return result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id} (${v.impact}): ${v.help} at ${JSON.stringify(v.nodes.slice(0, 3).map((n) => n.target))}`);
  });
  assert.deepEqual(violations, [], `${what}: accessibility`);
}

async function photograph(page: Page, name: string, fullPage = false): Promise<void> {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage });
}

async function open(options: { width?: number; height?: number; colorScheme?: 'light' | 'dark' } = {}): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: options.width ?? 1280, height: options.height ?? 720 }, colorScheme: options.colorScheme ?? 'light', locale: 'en-GB', timezoneId: 'UTC' });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on('console', (message) => {
    if (/Content.Security.Policy/i.test(message.text())) cspViolations.push(message.text());
  });
  return page;
}

async function logIn(page: Page, withToken: string): Promise<void> {
  await page.goto(`${base}/`);
  await page.getByLabel('API token').fill(withToken);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Dashboard' }).waitFor();
}

test('the console: log in, run a job to 100 %, see its points and a failed VM with its code, every page accessible', { timeout: 10 * 60_000 }, async () => {
  const page = await open();
  // The login page: a wrong token is refused with a message; the right one opens the dashboard.
  await page.goto(`${base}/`);
  await page.getByLabel('API token').waitFor();
  await accessibility(page, 'login');
  await photograph(page, 'login');
  await page.getByLabel('API token').fill(`vcbt_${'A'.repeat(43)}`);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('alert').filter({ hasText: 'not known' }).waitFor();
  await logIn(page, token);
  const session = await page.evaluate(async (t) => (await fetch('/api/session', { headers: { authorization: `Bearer ${t}` } })).json(), token);
  assert.deepEqual(checkSchema(openApiDocument as unknown as Record<string, unknown>, { $ref: '#/components/schemas/Session' }, session), []);
  assert.equal((session as { readOnly: boolean }).readOnly, false);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('vcbt.token')), token, 'the token is kept in sessionStorage');
  assert.equal(await page.evaluate(() => localStorage.getItem('vcbt.token')), null);

  // VMs before any run: every lab VM with its power and CBT state as vSphere reports them.
  await page.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'VMs' }).click();
  const before = (await (await fetch(`${base}/api/vms`, { headers: { authorization: `Bearer ${token}` } })).json()) as { vms: Array<{ name: string; cbtEnabled: boolean | null; powerState: string | null }> };
  for (const vm of lab.info.vms) {
    const row = page.locator(`tr[data-vm="${vm.name}"]`);
    await row.waitFor();
    const cbt = before.vms.find((v) => v.name === vm.name)?.cbtEnabled;
    assert.equal(typeof cbt, 'boolean', `${vm.name}: the API knows its CBT state`);
    assert.equal(await row.locator('td[data-cbt]').getAttribute('data-cbt'), cbt ? 'on' : 'off', vm.name);
    assert.match((await row.textContent()) ?? '', new RegExp(vm.powerState));
  }
  await accessibility(page, 'vms before a run');
  // Enable CBT on a VM where it is off, from its page (after a confirmation naming it).
  const off = before.vms.find((v) => v.cbtEnabled === false && v.name !== FAILING_VM);
  if (off) {
    await page.locator(`tr[data-vm="${off.name}"]`).getByRole('link', { name: off.name, exact: true }).click();
    await page.getByRole('button', { name: 'Enable CBT' }).click();
    const confirmCbt = page.getByRole('dialog', { name: `Enable CBT on ${off.name}?` });
    await confirmCbt.getByRole('button', { name: 'Enable CBT' }).click();
    await page.locator('.badge', { hasText: 'CBT on' }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Enable CBT' }).count(), 0);
  }

  // Jobs: run nightly now (a confirmation first) and follow its run page to 100 %.
  await page.getByRole('link', { name: 'Jobs and runs' }).click();
  await page.getByRole('heading', { level: 1, name: 'Jobs and runs' }).waitFor();
  // The first read of guest data stalls for the transport's ioTimeout (1 s) and resumes: the run is at work meanwhile.
  await lab.faults({ httpStall: { afterBytes: 64 * 1024, count: 1 } });
  await page.getByRole('button', { name: 'Run nightly now' }).click();
  const dialog = page.getByRole('dialog', { name: 'Run nightly now?' });
  await dialog.waitFor();
  await dialog.getByRole('button', { name: 'Start the run' }).click();
  await page.waitForURL(/#\/runs\/\d+$/);
  const runId = Number(/#\/runs\/(\d+)$/.exec(page.url())![1]);
  const bar = page.getByRole('progressbar', { name: `run ${runId}` });
  await bar.waitFor();
  // Every per-disk bar the page shows while the run works (they come from the run's Server-Sent Events).
  await page.evaluate(() => {
    const g = globalThis as unknown as InPage & { diskBars: string[]; MutationObserver: new (f: () => void) => { observe(n: unknown, o: unknown): void } };
    g.diskBars = [];
    new g.MutationObserver(() => {
      for (const b of g.document.querySelectorAll('.disk-progress [role=progressbar]') as unknown as Array<{ getAttribute(n: string): string | null }>) g.diskBars.push(`${b.getAttribute('aria-label')}=${b.getAttribute('aria-valuenow')}`);
    }).observe(g.document.body, { subtree: true, childList: true, attributes: true });
  });
  await page.waitForFunction((id) => (globalThis as unknown as InPage).document.querySelector(`[role=progressbar][aria-label="run ${id}"]`)?.getAttribute('aria-valuenow') === '100', runId, { timeout: WAIT_MS, polling: 250 });
  await page.locator('.badge', { hasText: 'success' }).first().waitFor();
  const nightlyVms = lab.info.vms.filter((v) => v.name !== FAILING_VM);
  for (const vm of nightlyVms) {
    await page.waitForFunction((name) => (globalThis as unknown as InPage).document.querySelector(`[role=progressbar][aria-label="${name}"]`)?.getAttribute('aria-valuenow') === '100', vm.name, { timeout: WAIT_MS, polling: 250 });
  }
  const diskBars = await page.evaluate(() => (globalThis as unknown as { diskBars: string[] }).diskBars);
  assert.ok(diskBars.some((b) => /^DC0_\w+ disk \d+=\d+$/.test(b)), `per-disk progress was shown while the run worked: ${diskBars.slice(0, 5).join(', ')}`);
  await page.locator('pre.log').filter({ hasText: /\S/ }).waitFor();
  await accessibility(page, 'run');
  await photograph(page, 'run');

  // The failed VM: an injected CreateSnapshot_Task fault, no retry; its code links to what to do.
  await lab.faults({ methods: { CreateSnapshot_Task: { fault: 'SnapshotFault', count: 1 } } });
  await page.goto(`${base}/#/jobs`);
  await page.getByRole('button', { name: 'Run edge now' }).click();
  await page.getByRole('dialog', { name: 'Run edge now?' }).getByRole('button', { name: 'Start the run' }).click();
  await page.waitForURL(new RegExp(`#/runs/(?!${runId}$)\\d+$`));
  const failedTask = page.locator(`li.task[data-vm="${FAILING_VM}"]`);
  await failedTask.locator('.badge', { hasText: 'failed' }).waitFor();
  const failedRunId = Number(/#\/runs\/(\d+)$/.exec(page.url())![1]);
  const api = (await (await fetch(`${base}/api/runs/${failedRunId}`, { headers: { authorization: `Bearer ${token}` } })).json()) as { tasks: Array<{ vm: string; error: { code: string } | null }> };
  const code = api.tasks.find((t) => t.vm === FAILING_VM)?.error?.code;
  assert.ok(code, 'the API reports the failed VM with a code');
  const codeLink = failedTask.getByRole('link', { name: code });
  await codeLink.waitFor();
  assert.match((await failedTask.locator('.todo').textContent()) ?? '', /What to do: \S/);
  await accessibility(page, 'failed run');
  await photograph(page, 'run-failed');
  await codeLink.click();
  await page.locator(`tr#error-${code}.highlight`).waitFor();
  await accessibility(page, 'errors');
  await photograph(page, 'errors');

  // VMs: every lab VM with its protection; the failed one failed; search narrows the list.
  await page.goto(`${base}/#/vms`);
  await page.getByRole('heading', { level: 1, name: 'VMs' }).waitFor();
  for (const vm of lab.info.vms) await page.locator(`tr[data-vm="${vm.name}"]`).waitFor();
  await page.locator(`tr[data-vm="${FAILING_VM}"] .badge`, { hasText: 'failed' }).waitFor();
  await page.locator(`tr[data-vm="${FAILING_VM}"]`).getByRole('link', { name: code }).waitFor();
  for (const vm of nightlyVms) {
    await page.locator(`tr[data-vm="${vm.name}"] .badge`, { hasText: 'protected' }).waitFor();
    await page.locator(`tr[data-vm="${vm.name}"] td[data-cbt="on"]`).waitFor(); // the job switched CBT on where it was off
  }
  await accessibility(page, 'vms');
  await photograph(page, 'vms');
  await page.getByLabel('Search VMs').fill('H0_VM0');
  await page.waitForFunction(() => (globalThis as unknown as InPage).document.querySelectorAll('tr[data-vm]').length === 1);
  await page.getByLabel('Search VMs').fill('');

  // The VM's timeline shows the run's new restore point, full (its first backup).
  const vm0 = lab.info.vms.find((v) => v.name === 'DC0_H0_VM0')!;
  await page.getByRole('link', { name: vm0.name, exact: true }).click();
  await page.getByRole('heading', { level: 1, name: vm0.name }).waitFor();
  const point = (await (await fetch(`${base}/api/runs/${runId}`, { headers: { authorization: `Bearer ${token}` } })).json()) as { tasks: Array<{ vm: string; pointId: string | null }> };
  const pointId = point.tasks.find((t) => t.vm === vm0.name)?.pointId;
  assert.ok(pointId);
  const entry = page.locator(`ol.timeline li[data-point="${pointId}"]`);
  await entry.waitFor();
  await entry.locator('.badge', { hasText: 'full' }).waitFor();
  assert.match((await entry.textContent()) ?? '', /FIRST_COPY/, 'the reason of the full');
  // Back up this VM alone now: its run reaches 100 % and a second, incremental point appears on the timeline.
  await lab.write(vm0.name, vm0.disks[0]!.key, 0, randomBytes(64 * 1024));
  await page.getByRole('button', { name: 'Back up now' }).click();
  await page.getByRole('dialog', { name: `Back up ${vm0.name} now?` }).getByRole('button', { name: 'Start the backup' }).click();
  await page.waitForURL(new RegExp(`#/runs/(?!${runId}$|${failedRunId}$)\\d+$`));
  const vmRunId = Number(/#\/runs\/(\d+)$/.exec(page.url())![1]);
  await page.waitForFunction((id) => (globalThis as unknown as InPage).document.querySelector(`[role=progressbar][aria-label="run ${id}"]`)?.getAttribute('aria-valuenow') === '100', vmRunId, { timeout: WAIT_MS, polling: 250 });
  const vmRun = (await (await fetch(`${base}/api/runs/${vmRunId}`, { headers: { authorization: `Bearer ${token}` } })).json()) as { tasks: Array<{ vm: string; pointId: string | null; status: string }> };
  assert.deepEqual(vmRun.tasks.map((t) => [t.vm, t.status]), [[vm0.name, 'success']], 'the run backed up that VM alone');
  await page.goBack();
  await page.getByRole('heading', { level: 1, name: vm0.name }).waitFor();
  const second = page.locator(`ol.timeline li[data-point="${vmRun.tasks[0]!.pointId}"]`);
  await second.locator('.badge', { hasText: 'incremental' }).waitFor();
  await accessibility(page, 'vm');
  await photograph(page, 'vm');
  // Restore from the newest point (the lab's disk has not changed since it was made).
  await second.getByRole('link', { name: /Restore or verify/ }).click();
  await page.getByRole('heading', { level: 1, name: `Restore ${vm0.name}` }).waitFor();
  const disk = vm0.disks[0]!;
  const item = page.locator(`li[data-disk="${disk.key}"]`);
  for (const d of vm0.disks) await page.locator(`li[data-disk="${d.key}"]`).waitFor();
  await accessibility(page, 'restore');
  await photograph(page, 'restore');

  // Export the disk over NBD: the URI and the commands to use it, then stop it (each confirmed).
  await item.getByRole('button', { name: `Export ${disk.label} over NBD` }).click();
  await page.getByRole('dialog', { name: `Export ${disk.label} over NBD?` }).getByRole('button', { name: 'Start the export' }).click();
  const card = page.getByRole('region', { name: `NBD export of ${disk.label}` });
  await card.waitFor();
  assert.match((await card.locator('[data-uri]').textContent()) ?? '', /^nbd:\/\/\S+$/);
  assert.match((await card.textContent()) ?? '', /nbdcopy .*qemu-img .*qemu-nbd /s);
  await accessibility(page, 'restore with an export');
  await card.scrollIntoViewIfNeeded();
  await photograph(page, 'restore-export');
  await page.getByRole('button', { name: `Stop the export of ${disk.label}` }).click();
  await page.getByRole('dialog', { name: `Stop the export of ${disk.label}?` }).getByRole('button', { name: 'Stop the export' }).click();
  await page.getByText('None running.').waitFor();

  // Restore the disk to a file under the daemon's restore directory; the confirmation names the file.
  const fileName = `${vm0.name}-disk.raw`;
  await item.getByLabel(`File for ${disk.label}`).fill(fileName);
  await item.getByRole('button', { name: `Restore ${disk.label} to a file` }).click();
  const confirmRestore = page.getByRole('dialog', { name: `Restore ${disk.label} to a file?` });
  assert.match((await confirmRestore.textContent()) ?? '', new RegExp(`${fileName}.*RESTORE_TARGET_EXISTS`));
  await confirmRestore.getByRole('button', { name: 'Restore', exact: true }).click();
  await page.waitForURL(/#\/runs\/\d+$/);
  const restoreRunId = Number(/#\/runs\/(\d+)$/.exec(page.url())![1]);
  await page.waitForFunction((id) => (globalThis as unknown as InPage).document.querySelector(`[role=progressbar][aria-label="run ${id}"]`)?.getAttribute('aria-valuenow') === '100', restoreRunId, { timeout: WAIT_MS, polling: 250 });
  await page.locator('.badge', { hasText: 'success' }).first().waitFor();
  await photograph(page, 'run-restore');
  const restored = join(dir, 'restores', fileName);
  assert.equal(createHash('sha256').update(await readFile(restored)).digest('hex'), (await lab.sha256(vm0.name, disk.key)).sha256, 'the restored file holds the disk as the lab has it');
  assert.equal((await stat(restored)).mode & 0o777, 0o600);

  // Verify the point: a run that ends in success.
  await page.goBack();
  await page.getByRole('heading', { level: 1, name: `Restore ${vm0.name}` }).waitFor();
  await page.getByRole('button', { name: 'Verify this point' }).click();
  await page.getByRole('dialog', { name: 'Verify this point?' }).getByRole('button', { name: 'Verify' }).click();
  await page.waitForURL(new RegExp(`#/runs/(?!${restoreRunId}$)\\d+$`));
  await page.locator('.facts .badge', { hasText: 'success' }).waitFor();

  // Repository and dashboard.
  await page.getByRole('link', { name: 'Repository' }).click();
  await page.getByRole('heading', { level: 1, name: 'Repository main' }).waitFor();
  await page.locator('.chart canvas').first().waitFor();
  await page.getByRole('link', { name: /run \d+/ }).first().waitFor(); // the verify run in its history
  // Prune: a dry run first lists what would go (keep 1 per VM: the VM's first point goes).
  await page.getByLabel('keepLast').fill('1');
  await page.getByRole('button', { name: 'Dry run: show what would go' }).click();
  await page.locator(`tr[data-remove="${pointId}"]`).waitFor();
  await page.locator(`tr[data-keep="${vmRun.tasks[0]!.pointId}"]`).waitFor();
  assert.equal(await page.getByRole('button', { name: /^Prune \d+ points?$/ }).isEnabled(), true);
  await accessibility(page, 'repository');
  await photograph(page, 'repository', true);
  await page.getByRole('link', { name: 'Dashboard' }).click();
  await page.getByRole('heading', { level: 1, name: 'Dashboard' }).waitFor();
  await page.locator('.card.ok .number', { hasText: String(nightlyVms.length) }).waitFor();
  await page.locator('.chart canvas').first().waitFor();
  await accessibility(page, 'dashboard');
  await photograph(page, 'dashboard');
  await page.getByRole('link', { name: 'Jobs and runs' }).click();
  await page.locator('.chart canvas').first().waitFor();
  await accessibility(page, 'jobs');
  await photograph(page, 'jobs');
  await page.context().close();
  assert.deepEqual(cspViolations, []);
});

test('dark mode (the system preference and the toggle) and a phone-sized screen stay accessible', { timeout: 5 * 60_000 }, async () => {
  const dark = await open({ colorScheme: 'dark' });
  await logIn(dark, token);
  assert.equal(await dark.evaluate(() => (globalThis as unknown as InPage).getComputedStyle((globalThis as unknown as InPage).document.body).backgroundColor), 'rgb(21, 24, 29)');
  await accessibility(dark, 'dashboard, dark');
  await photograph(dark, 'dashboard-dark');
  await dark.getByLabel('Theme').selectOption('light');
  await dark.waitForFunction(() => (globalThis as unknown as InPage).getComputedStyle((globalThis as unknown as InPage).document.body).backgroundColor === 'rgb(255, 255, 255)');
  assert.equal(await dark.evaluate(() => localStorage.getItem('vcbt.theme')), 'light', 'the choice is remembered');
  await dark.context().close();
  const phone = await open({ width: 390, height: 844 });
  await logIn(phone, token);
  await phone.goto(`${base}/#/vms`);
  await phone.getByRole('heading', { level: 1, name: 'VMs' }).waitFor();
  await accessibility(phone, 'vms, phone');
  await photograph(phone, 'vms-phone');
  await phone.context().close();
  assert.deepEqual(cspViolations, []);
});

test('a read-only token sees no action', { timeout: 5 * 60_000 }, async () => {
  const page = await open();
  await logIn(page, readOnly);
  await page.locator('.badge', { hasText: 'read-only' }).waitFor();
  const { points } = (await (await fetch(`${base}/api/repositories/main/points`, { headers: { authorization: `Bearer ${readOnly}` } })).json()) as { points: Array<{ id: string }> };
  const hashes = ['#/', '#/jobs', `#/vms/lab/${encodeURIComponent(lab.info.vms[0]!.moref)}`, '#/repository', ...points.slice(0, 1).map((p) => `#/restore/main/${encodeURIComponent(p.id)}`)];
  for (const hash of hashes) {
    await page.goto(`${base}/${hash}`);
    await page.locator('h1').waitFor();
    await page.waitForLoadState('networkidle');
    const buttons = await page.locator('main button:not(.sort)').allTextContents();
    assert.deepEqual(buttons, [], `${hash}: no action button for a read-only token`);
  }
  await photograph(page, 'jobs-read-only');
  await page.context().close();
});
