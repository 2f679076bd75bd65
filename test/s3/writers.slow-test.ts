// Many writers, no lock server: two writer processes back up different VMs into one bucket at
// once while a third process prunes in a loop (test/s3/workers.ts). Afterwards every committed
// point that prune did not remove restores byte for byte, verify --read-data passes, and each VM
// keeps exactly its newest two points.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { runCli } from '../helpers/cli-runner.ts';
import { Repository } from '../../src/repository/repository.ts';
import { restoreToBuffer, sha256, tempDir } from '../repository/helpers.ts';
import { startRgw, type Rgw } from './rgw.ts';
import { imageOf } from './workers.ts';

let rgw: Rgw;
before(async () => {
  rgw = await startRgw();
});
after(async () => {
  await rgw?.stop();
});

function child(role: 'writer' | 'pruner', options: object): Promise<string> {
  const node = path.join(import.meta.dirname, '../../node_modules/.bin/node');
  const process_ = spawn(node, [path.join(import.meta.dirname, 'workers.ts'), role, JSON.stringify(options)], { env: { ...process.env, ...rgw.env() }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  process_.stdout.on('data', (d: Buffer) => (out += d.toString()));
  process_.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    process_.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${role} exited ${code}: ${err}`))));
  });
}

test('two writer processes and a pruning process on one bucket: every committed point restores and verifies', async (t) => {
  const url = `s3://${rgw.plainBucket}/shared`;
  const env = rgw.env();
  assert.equal((await runCli(['init', '--repo', url, '--chunk-size', '64K'], env)).code, 0);
  const stopFile = path.join(tempDir(t), 'stop');

  const pruning = child('pruner', { url, stopFile });
  const writers = [
    { vmId: 'vm-a', seed: 11 },
    { vmId: 'vm-b', seed: 22 },
  ].map((w) => child('writer', { url, ...w, count: 4 }).then((out) => ({ ...w, committed: (JSON.parse(out) as { committed: Array<{ id: string; generation: number }> }).committed })));
  const written = await Promise.all(writers);
  fs.writeFileSync(stopFile, '');
  const pruned = JSON.parse(await pruning) as { runs: number; removed: string[] };
  assert.ok(pruned.runs >= 2);

  const repo = await Repository.open(url, { env });
  t.after(() => repo.close());
  const left = new Set(await repo.listPointIds());
  for (const w of written) {
    assert.equal(w.committed.length, 4, `${w.vmId} committed all its backups`);
    const kept = w.committed.filter((c) => left.has(c.id));
    assert.deepEqual(kept.map((c) => c.generation), [2, 3], `${w.vmId} keeps its newest two points`);
    for (const c of w.committed) assert.ok(left.has(c.id) || pruned.removed.includes(c.id), `${c.id} is kept or was pruned, never lost`);
    for (const c of kept) assert.equal(sha256(await restoreToBuffer(repo, c.id, 1)), sha256(imageOf(w.seed, c.generation)), `${w.vmId} generation ${c.generation}`);
  }
  assert.equal(left.size, 4);
  const verify = await runCli(['verify', '--repo', url, '--read-data'], env);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  assert.match(verify.stdout, /^ok: 4 restore points/m);
});
