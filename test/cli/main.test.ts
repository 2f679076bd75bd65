import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from '../helpers/cli-runner.ts';
import { safeFileName } from '../../src/cli/commands/replicate.ts';
import { parseFlags } from '../../src/cli/flags.ts';
import { commands } from '../../src/cli/commands/index.ts';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

test('unknown command is a usage error naming the command', async () => {
  const result = await runCli(['frobnicate']);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /unknown command "frobnicate"/);
});

test('help lists usage and every command, and exits 0', async () => {
  const result = await runCli(['help']);
  assert.equal(result.code, 0);
  assert.match(result.stdout, /usage: vcbt <command>/);
  for (const name of ['vms', 'cbt', 'changes', 'apply', 'replicate', 'init', 'verify', 'prune']) assert.match(result.stdout, new RegExp(`\\n  ${name} `));
});

test('a command with --help prints its usage', async () => {
  const result = await runCli(['replicate', '--help']);
  assert.equal(result.code, 0);
  assert.match(result.stdout, /usage: vcbt replicate --vm VM/);
});

test('an unknown flag is a usage error', async () => {
  const result = await runCli(['apply', '--frobnicate']);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /frobnicate/);
});

test('replicate --to DIR names files safely whatever the VM name', () => {
  assert.equal(safeFileName('web01'), 'web01');
  assert.equal(safeFileName('prod/web 01 (copy)'), 'prod_web_01_copy_');
  assert.equal(safeFileName('..'), '_');
  assert.equal(safeFileName('日本'), '_');
});

test('a flag given twice is a usage error unless it repeats by design, which takes every value', async () => {
  const twice = await runCli(['backup', '--vm', 'a', '--vm', 'b', '--repo', '/nonexistent']);
  assert.equal(twice.code, 2, twice.stderr);
  assert.match(twice.stderr, /USAGE: --vm was given more than once; it takes one value/);
  const changes = await runCli(['changes', '--vm', 'a', '--disk', '2000', '--disk', '2001', '--all']);
  assert.equal(changes.code, 2);
  assert.match(changes.stderr, /--disk was given more than once/);
  const parsed = parseFlags({ args: ['--disk', '2000', '--vm', 'a', '--disk', '2001'], options: { disk: { type: 'string', multiple: true }, vm: { type: 'string' } } });
  assert.deepEqual({ ...parsed.values }, { disk: ['2000', '2001'], vm: 'a' });
});

test('the command registry loads, for each entry, the command of that name and summary', async () => {
  assert.equal(new Set(commands.map((c) => c.name)).size, commands.length);
  for (const entry of commands) {
    const command = await entry.load();
    assert.equal(command.name, entry.name);
    assert.equal(command.summary, entry.summary);
  }
});

test('help and --version load no command module', async () => {
  // A child Node records every module it resolves, then runs the CLI's main.
  const main = new URL('../../src/cli/main.ts', import.meta.url).href;
  const script = `
    import { registerHooks } from 'node:module';
    const loaded = [];
    registerHooks({ resolve(specifier, context, next) { const r = next(specifier, context); loaded.push(r.url); return r; } });
    const { main } = await import(${JSON.stringify(main)});
    const out = { write() { return true; } };
    for (const args of [['help'], ['--version']]) await main(args, { stdout: out, stderr: out });
    console.log(JSON.stringify(loaded.filter((url) => url.includes('/src/cli/commands/'))));`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script]);
  assert.deepEqual(JSON.parse(stdout).map((url: string) => url.replace(/.*\/src\//, 'src/')), ['src/cli/commands/index.ts']);
});
