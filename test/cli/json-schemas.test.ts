// The --json contract: docs/json/*.schema.json are exactly what scripts/json-schemas.ts
// generates from src/cli/json-documents.ts (no drift), and the real documents of the
// commands, run against the lab and real repositories, conform to them.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateJsonSchemas, schemaDir } from '../../scripts/json-schemas.ts';
import { startLab, type Lab } from '../lab/lab.ts';
import { labConnection, runCli, type CliResult } from '../helpers/cli-runner.ts';
import { loadSchema, schemaProblems } from './json-schema-check.ts';

const vm = 'DC0_H0_VM0';
let lab: Lab;
let dir: string;
let connection: { flags: string[]; env: NodeJS.ProcessEnv };

before(async () => {
  lab = await startLab({ diskSizes: [4 * 1024 * 1024, 2 * 1024 * 1024] });
  connection = labConnection(lab);
  dir = await mkdtemp(join(tmpdir(), 'vcbt-json-'));
});

after(async () => {
  await lab?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Parses stdout as one document of `type` and checks it against docs/json/<type>.schema.json. */
function conforms(result: CliResult, type: string, exitCode = 0): Record<string, unknown> {
  assert.equal(result.code, exitCode, result.stderr);
  const document = JSON.parse(result.stdout) as Record<string, unknown>;
  assert.equal(document.version, 1);
  assert.equal(document.type, type);
  assert.deepEqual(schemaProblems(loadSchema(type), document), [], `${type} document: ${result.stdout.slice(0, 2000)}`);
  return document;
}

test('json schemas: docs/json holds exactly the schemas generated from the document types', async () => {
  const generated = generateJsonSchemas();
  const files = (await readdir(schemaDir)).filter((f) => f.endsWith('.schema.json')).sort();
  assert.deepEqual(files, [...generated.keys()].sort(), 'run `npm run json-schemas` after changing src/cli/json-documents.ts');
  for (const [name, text] of generated) assert.equal(await readFile(join(schemaDir, name), 'utf8'), text, `docs/json/${name} drifted: run \`npm run json-schemas\``);
});

test('json schemas: vms, cbt, changes, backup, points, verify, replicate, restore, apply, init, prune and error documents conform', async () => {
  const { flags, env } = connection;
  conforms(await runCli(['vms', '--json', ...flags], env), 'vms');
  conforms(await runCli(['cbt', 'enable', '--vm', vm, '--json', ...flags], env), 'cbt');
  await lab.write(vm, 2000, 65536, Buffer.alloc(100_000, 7));
  const changes = conforms(await runCli(['changes', '--vm', vm, '--disk', '2000', '--all', '--take-snapshot', ...flags], env), 'changes');
  assert.ok((changes.areas as unknown[]).length > 0);

  const repo = join(dir, 'repo');
  conforms(await runCli(['init', '--repo', repo, '--chunk-size', '64K', '--json']), 'init');
  const full = conforms(await runCli(['backup', '--vm', vm, '--repo', repo, '--json', ...flags], env), 'backup');
  await lab.write(vm, 2000, 0, Buffer.alloc(4096, 9));
  const incremental = conforms(await runCli(['backup', '--vm', vm, '--repo', repo, '--json', ...flags], env), 'backup');
  const modes = (document: Record<string, unknown>) => (document.disks as Array<{ mode: string }>).map((d) => d.mode);
  assert.deepEqual([modes(full), modes(incremental)], [['full', 'full'], ['incremental', 'incremental']]);
  const points = conforms(await runCli(['points', '--repo', repo, '--json']), 'points');
  assert.deepEqual((points.points as Array<{ disks: Array<{ mode: string }> }>).map((p) => p.disks.map((d) => d.mode)), [['full', 'full'], ['incremental', 'incremental']], 'points says mode, as backup does');
  conforms(await runCli(['verify', '--repo', repo, '--read-data', '--json']), 'verify');
  const restored = join(dir, 'restored.raw');
  conforms(await runCli(['restore', '--repo', repo, '--point', 'latest', '--vm', vm, '--disk', '2000', '--to', restored, '--json']), 'restore');
  conforms(await runCli(['prune', '--repo', repo, '--keep-last', '1', '--dry-run', '--json']), 'prune');

  conforms(await runCli(['replicate', '--vm', vm, '--to', dir, '--json', ...flags], env), 'replicate');
  const copy = join(dir, 'copy.raw');
  await writeFile(copy, Buffer.alloc(4 * 1024 * 1024));
  await writeFile(join(dir, 'areas.csv'), '0,65536\n1048576,4096\n');
  conforms(await runCli(['apply', '--areas', join(dir, 'areas.csv'), '--from', restored, '--to', copy, '--json']), 'apply');

  const error = conforms(await runCli(['points', '--repo', join(dir, 'missing'), '--json']), 'error', 1);
  assert.deepEqual([error.command, error.code, error.exitCode], ['points', 'REPO_NOT_FOUND', 1]);
  const usage = conforms(await runCli(['backup', '--json', '--vm']), 'error', 2);
  assert.equal(usage.code, 'USAGE');
});
