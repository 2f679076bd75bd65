import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { main } from '../../src/cli/main.ts';

function capture() {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d: Buffer) => (out += d.toString()));
  stderr.on('data', (d: Buffer) => (err += d.toString()));
  return { stdout, stderr, text: () => ({ out, err }) };
}

test('unknown command is a usage error naming the command', async () => {
  const io = capture();
  const code = await main(['frobnicate'], { stdout: io.stdout, stderr: io.stderr });
  assert.equal(code, 2);
  assert.match(io.text().err, /unknown command "frobnicate"/);
});

test('help lists usage and exits 0', async () => {
  const io = capture();
  const code = await main(['help'], { stdout: io.stdout, stderr: io.stderr });
  assert.equal(code, 0);
  assert.match(io.text().out, /usage: vcbt <command>/);
});
