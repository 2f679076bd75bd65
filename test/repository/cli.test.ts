import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { runCli } from '../helpers/cli-runner.ts';
import { IndexReader } from '../../src/repository/disk-index.ts';
import { Repository } from '../../src/repository/repository.ts';
import { local, removeChunk, memorySource, tempDir, vm } from './helpers.ts';

async function vcbt(args: string[], env: NodeJS.ProcessEnv = {}) {
  const { code, stdout, stderr } = await runCli(args, env);
  return { code, out: stdout, err: stderr };
}

test('vcbt init, verify and prune over a repository; verify exits 1 naming the affected point', async (t) => {
  const dir = path.join(tempDir(t), 'repo');
  const init = await vcbt(['init', '--repo', dir, '--chunk-size', '64K', '--json']);
  assert.equal(init.code, 0, init.err);
  assert.deepEqual(JSON.parse(init.out).chunkBytes, 65_536);
  assert.equal((await vcbt(['init', '--repo', dir])).code, 1, 'init refuses an existing repository');
  assert.equal((await vcbt(['prune', '--repo', dir])).code, 2, 'prune without a keep rule is a usage error');

  const repo = await Repository.open(dir);
  t.after(() => repo.close());
  const ids: string[] = [];
  for (let d = 0; d < 3; d++) {
    const image = randomBytes(200_000);
    const writer = await repo.beginRestorePoint({ vm, createdAt: new Date(Date.UTC(2026, 0, 1 + d)) });
    await writer.writeDisk({ deviceKey: 1, label: 'a', capacityBytes: image.length, changeId: null, reader: memorySource(image) });
    ids.push(await writer.commit());
  }
  const clean = await vcbt(['verify', '--repo', dir, '--read-data']);
  assert.equal(clean.code, 0, clean.out + clean.err);
  assert.match(clean.out, /^ok: 3 restore points, 3 indexes, 12 chunks read/m);

  const dry = await vcbt(['prune', '--repo', dir, '--keep-last', '2', '--dry-run']);
  assert.equal(dry.code, 0, dry.err);
  assert.match(dry.out, new RegExp(`would remove  ${ids[0]}`));
  const pruned = await vcbt(['prune', '--repo', dir, '--keep-last', '2', '--json']);
  assert.deepEqual(JSON.parse(pruned.out).remove.map((p: { id: string }) => p.id), [ids[0]]);
  assert.equal(JSON.parse(pruned.out).gc.chunksDeleted, 4);

  const disk = (await repo.readManifest(ids[2])).disks[0];
  const index = await IndexReader.open(local(dir), disk.index, undefined);
  const victim = Buffer.from(await index.entry(1)).toString('hex');
  await index.close();
  await removeChunk(repo, victim);
  const broken = await vcbt(['verify', '--repo', dir]);
  assert.equal(broken.code, 1);
  assert.match(broken.out, new RegExp(`CORRUPT chunk ${victim}: REPO_MISSING: .*\\n  affects restore points: ${ids[2]}\\n`));
});

test('vcbt init --encrypt takes the passphrase from a file or VCBT_PASSPHRASE; a wrong one is a clear error', async (t) => {
  const base = tempDir(t);
  const dir = path.join(base, 'repo');
  assert.equal((await vcbt(['init', '--repo', dir, '--encrypt'])).code, 2, 'no passphrase');
  const file = path.join(base, 'pass');
  fs.writeFileSync(file, 'file passphrase\n');
  const init = await vcbt(['init', '--repo', dir, '--encrypt', '--passphrase-file', file]);
  assert.equal(init.code, 0, init.err);
  assert.match(init.out, /encrypted/);
  assert.ok(!fs.readFileSync(path.join(dir, 'config.json'), 'utf8').includes('file passphrase'));
  assert.equal((await vcbt(['verify', '--repo', dir], { VCBT_PASSPHRASE: 'file passphrase' })).code, 0);
  const wrong = await vcbt(['verify', '--repo', dir], { VCBT_PASSPHRASE: 'nope' });
  assert.equal(wrong.code, 1);
  assert.match(wrong.err, /REPO_WRONG_PASSPHRASE/);
  assert.ok(!wrong.err.includes('nope'));
  assert.match((await vcbt(['verify', '--repo', dir])).err, /REPO_PASSPHRASE_REQUIRED/);
});
