import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from '../helpers/cli-runner.ts';
import { safeFileName } from '../../src/cli/commands/replicate.ts';
import { parseFlags } from '../../src/cli/flags.ts';

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
