// Runs every test of every test file on its own (`node --test --test-name-pattern`), to prove
// that no test depends on the tests before it. Usage:
//   node scripts/test-each-alone.ts [--concurrency N] [FILE ...]   (default: every test/**/*.test.ts)
// Prints one line per test and a closing "N passed, N failed" line; exits 1 when any failed.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { glob } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { relative, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const args = process.argv.slice(2);
let concurrency = Math.max(1, Math.min(2, availableParallelism()));
const files: string[] = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--concurrency') concurrency = Number(args[++i]);
  else files.push(resolve(args[i]));
}
if (files.length === 0) for await (const file of glob('test/**/*.test.ts', { cwd: root })) files.push(resolve(root, file));
files.sort();

/** Top-level test names of a file: `test('name', ...)` with a literal name. */
async function testNames(file: string): Promise<string[]> {
  const text = await readFile(file, 'utf8');
  const names: string[] = [];
  for (const match of text.matchAll(/^test\(\s*(['"`])((?:\\.|(?!\1).)*)\1/gm)) names.push(match[2].replace(/\\(.)/g, '$1'));
  return names;
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

function runOne(file: string, name: string): Promise<{ ok: boolean; output: string; ms: number }> {
  const started = performance.now();
  return new Promise((done) => {
    const child = spawn(process.execPath, ['--test', `--test-name-pattern=^${escape(name)}$`, file], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('exit', (code) => {
      // A pattern that matched nothing passes vacuously: count it as a failure of this script.
      const ran = /^ℹ pass [1-9]/m.test(output) || /^ℹ fail [1-9]/m.test(output);
      done({ ok: code === 0 && ran, output: ran ? output : `${output}\n(no test matched the name)`, ms: performance.now() - started });
    });
  });
}

const jobs: Array<{ file: string; name: string }> = [];
for (const file of files) for (const name of await testNames(file)) jobs.push({ file, name });
let passed = 0;
let failed = 0;
const failures: string[] = [];
let next = 0;
async function worker(): Promise<void> {
  while (next < jobs.length) {
    const { file, name } = jobs[next++];
    const result = await runOne(file, name);
    const label = `${relative(root, file)}: ${name}`;
    if (result.ok) passed++;
    else {
      failed++;
      failures.push(`${label}\n${result.output}`);
    }
    process.stdout.write(`${result.ok ? '✔' : '✖'} ${label} (${Math.round(result.ms)} ms)\n`);
  }
}
await Promise.all(Array.from({ length: concurrency }, worker));
for (const failure of failures) process.stdout.write(`\n--- ${failure}\n`);
process.stdout.write(`alone: ${passed} passed, ${failed} failed\n`);
process.exitCode = failed > 0 ? 1 : 0;
