import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { Repository } from '../../src/repository/repository.ts';
import { verifyRepository } from '../../src/repository/verify.ts';
import { runCli } from '../helpers/cli-runner.ts';
import { listFiles, storedChunks, memorySource, newRepository, restoreToBuffer, sha256, tempDir } from './helpers.ts';

const chunkBytes = 64 * 1024;

test('encrypted repository: round trip, wrong or missing passphrase, nothing readable in any file', async (t) => {
  const dir = tempDir(t);
  const passphrase = 'correct horse battery staple';
  const repo = await newRepository(dir, { chunkBytes, passphrase });
  t.after(() => repo.close());
  const marker = 'SECRET-GUEST-DATA-MARKER';
  const text = Buffer.from(`${marker} `.repeat(Math.ceil(chunkBytes / (marker.length + 1)))).subarray(0, chunkBytes);
  const image = Buffer.concat([text, text, text, randomBytes(chunkBytes), Buffer.alloc(chunkBytes)]);
  const writer = await repo.beginRestorePoint({ vm: { id: 'vm-uuid', name: 'SECRET-VM-NAME' }, vmConfig: { note: marker } });
  await writer.writeDisk({ deviceKey: 1, label: 'SECRET-LABEL', capacityBytes: image.length, changeId: null, reader: memorySource(image) });
  const inProgress = [...listFiles(dir, 'locks'), ...listFiles(dir, 'tmp')].map((f) => fs.readFileSync(f));
  assert.ok(inProgress.length >= 1 && inProgress.every((b) => !b.includes('SECRET-VM-NAME')), 'the lock of a running backup names no VM');
  const pointId = await writer.commit();
  assert.equal(sha256(await restoreToBuffer(repo, pointId, 1)), sha256(image));
  assert.deepEqual((await verifyRepository(repo, { readData: true })).corruptions, []);

  await assert.rejects(Repository.open(dir, { passphrase: 'wrong' }), { code: 'REPO_WRONG_PASSPHRASE' });
  await assert.rejects(Repository.open(dir), { code: 'REPO_PASSPHRASE_REQUIRED' });

  // Unkeyed hashes of every chunk's plaintext, in hex and raw form, must appear nowhere.
  const unkeyed = [0, 1, 2, 3].map((i) => createHash('sha256').update(image.subarray(i * chunkBytes, (i + 1) * chunkBytes)).digest());
  const files = ['packs', 'packindexes', 'indexes', 'points'].flatMap((sub) => listFiles(dir, sub));
  files.push(path.join(dir, 'config.json'));
  assert.equal((await storedChunks(repo)).size, 2, 'the repeated text chunk and the random chunk');
  for (const file of files) {
    const bytes = fs.readFileSync(file);
    const name = path.basename(file);
    for (const needle of [marker, 'SECRET-VM-NAME', 'SECRET-LABEL', 'vm-uuid']) assert.ok(!bytes.includes(needle), `${needle} in ${file}`);
    for (const h of unkeyed) {
      assert.ok(!bytes.includes(h) && !bytes.includes(h.toString('hex')) && name !== h.toString('hex'), `unkeyed hash in ${file}`);
    }
  }
});

test('encryption cannot be switched off: "encryption": null in config.json of an encrypted repository is REPO_ENCRYPTION_MISMATCH for points, restore and backup, and nothing plaintext is written', async (t) => {
  const base = tempDir(t);
  const dir = path.join(base, 'repo');
  const passphrase = 'keep me encrypted';
  const repo = await newRepository(dir, { chunkBytes, passphrase });
  const writer = await repo.beginRestorePoint({ vm: { id: 'vm-1', name: 'one' } });
  await writer.writeDisk({ deviceKey: 2000, label: 'a', capacityBytes: 2 * chunkBytes, changeId: null, reader: memorySource(randomBytes(2 * chunkBytes)) });
  const pointId = await writer.commit();
  await repo.close();
  assert.equal(listFiles(dir, 'keys').length, 1, 'init wrote a key file');

  const configFile = path.join(dir, 'config.json');
  const config = JSON.parse(fs.readFileSync(configFile, 'utf8'));
  fs.writeFileSync(configFile, JSON.stringify({ ...config, encryption: null }));
  const census = () => ['packs', 'packindexes', 'indexes', 'points', 'tmp'].flatMap((sub) => listFiles(dir, sub).map((f) => `${f} ${sha256(fs.readFileSync(f))}`));
  const before = census();

  for (const env of [{ VCBT_PASSPHRASE: passphrase }, {}]) {
    const points = await runCli(['points', '--repo', dir], env);
    assert.equal(points.code, 1);
    assert.match(points.stderr, /REPO_ENCRYPTION_MISMATCH: repository .* says it is not encrypted, but (it has key files|a passphrase was given)/);
    assert.equal(points.stdout, '');
    const restored = await runCli(['restore', '--repo', dir, '--point', pointId, '--disk', '2000', '--to', path.join(base, 'out.raw')], env);
    assert.match(restored.stderr, /REPO_ENCRYPTION_MISMATCH/);
    // backup opens the repository before it connects anywhere.
    const backup = await runCli(['backup', '--repo', dir, '--vm', 'one', '--server', '127.0.0.1:9', '--user', 'u', '--thumbprint', 'AA:'.repeat(19) + 'AA'], { ...env, VCBT_PASSWORD: 'p' });
    assert.equal(backup.code, 1);
    assert.match(backup.stderr, /REPO_ENCRYPTION_MISMATCH/);
    await assert.rejects(Repository.open(dir, env.VCBT_PASSPHRASE ? { passphrase } : {}), { code: 'REPO_ENCRYPTION_MISMATCH' });
  }
  assert.ok(!fs.existsSync(path.join(base, 'out.raw')));
  assert.deepEqual(census(), before, 'nothing was written');

  // A sealed key in config.json that is not the key file's is refused too.
  fs.writeFileSync(configFile, JSON.stringify({ ...config, encryption: { ...config.encryption, sealedKeyBase64: randomBytes(92).toString('base64') } }));
  await assert.rejects(Repository.open(dir, { passphrase }), { code: 'REPO_ENCRYPTION_MISMATCH' });
  fs.writeFileSync(configFile, JSON.stringify(config));
  const back = await Repository.open(dir, { passphrase });
  await back.close();
});

test('a passphrase given for a plain repository is REPO_ENCRYPTION_MISMATCH, not silently ignored', async (t) => {
  const dir = tempDir(t);
  await Repository.init(dir, { chunkBytes });
  const points = await runCli(['points', '--repo', dir], { VCBT_PASSPHRASE: 'I think it is encrypted' });
  assert.equal(points.code, 1);
  assert.match(points.stderr, /REPO_ENCRYPTION_MISMATCH: .*a passphrase was given for it/);
  assert.equal((await runCli(['points', '--repo', dir])).code, 0);
});
