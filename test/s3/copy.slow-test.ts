// vcbt copy: a plain local repository to an encrypted one on RGW (different keys: re-encrypted)
// and back to a new local repository with another chunk size; every point restores byte for
// byte at the end of the trip, the second copy copies nothing, and a copy of some points
// followed by a copy of all copies only the rest.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { runCli } from '../helpers/cli-runner.ts';
import { Repository } from '../../src/repository/repository.ts';
import { memorySource, mixedImage, restoreToBuffer, sha256, tempDir } from '../repository/helpers.ts';
import { startRgw, type Rgw } from './rgw.ts';

let rgw: Rgw;
before(async () => {
  rgw = await startRgw();
});
after(async () => {
  await rgw?.stop();
});

test('copy local -> S3 (encrypted) -> local restores identically; a second copy copies nothing', async (t) => {
  const dir = tempDir(t);
  const source = path.join(dir, 'source');
  const back = path.join(dir, 'back');
  const url = `s3://${rgw.plainBucket}/offsite`;
  const passFile = path.join(dir, 'pass');
  fs.writeFileSync(passFile, 'off-site passphrase\n', { mode: 0o600 });
  const env = rgw.env();

  assert.equal((await runCli(['init', '--repo', source, '--chunk-size', '64K'], env)).code, 0);
  const images = new Map<string, Buffer>();
  const repo = await Repository.open(source);
  const ids: string[] = [];
  for (const [i, name] of ['web', 'db', 'web'].entries()) {
    const writer = await repo.beginRestorePoint({ vm: { id: `vm-${name}`, name }, createdAt: new Date(Date.UTC(2026, 0, 1 + i)) });
    for (const deviceKey of [1, 2]) {
      const image = mixedImage(400_000 + deviceKey * 70_000 + i * 4096);
      image.fill(0, 100_000, 300_000);
      await writer.writeDisk({ deviceKey, label: `disk ${deviceKey}`, capacityBytes: image.length, changeId: null, reader: memorySource(image) });
      images.set(`${writer.pointId}/${deviceKey}`, image);
    }
    ids.push(await writer.commit());
  }
  await repo.close();

  assert.equal((await runCli(['init', '--repo', url, '--encrypt', '--passphrase-file', passFile], env)).code, 0);
  const some = await runCli(['copy', '--from', source, '--to', url, '--points', ids[0], '--to-passphrase-file', passFile, '--json'], env);
  assert.equal(some.code, 0, some.stderr);
  assert.deepEqual(JSON.parse(some.stdout).points.map((p: { status: string }) => p.status), ['copied']);

  const rest = await runCli(['copy', '--from', source, '--to', url, '--to-passphrase-file', passFile, '--json'], env);
  assert.equal(rest.code, 0, rest.stderr);
  const restReport = JSON.parse(rest.stdout).points as Array<{ id: string; status: string; bytesStored: number }>;
  assert.deepEqual(restReport.map((p) => [p.id, p.status]), [[ids[0], 'present'], [ids[1], 'copied'], [ids[2], 'copied']]);

  const again = await runCli(['copy', '--from', source, '--to', url, '--to-passphrase-file', passFile], env);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /^0 copied, 3 already present$/m);

  const webOnly = await runCli(['copy', '--from', url, '--to', back, '--vm', 'web', '--from-passphrase-file', passFile], env);
  assert.equal(webOnly.code, 1, 'the target must exist (vcbt init)');
  assert.match(webOnly.stderr, /REPO_NOT_FOUND/);
  assert.equal((await runCli(['init', '--repo', back, '--chunk-size', '128K'], env)).code, 0);
  const home = await runCli(['copy', '--from', url, '--to', back, '--vm', 'web', '--from-passphrase-file', passFile, '--json'], env);
  assert.equal(home.code, 0, home.stderr);
  assert.deepEqual(JSON.parse(home.stdout).points.map((p: { id: string }) => p.id), [ids[0], ids[2]]);

  const offsite = await Repository.open(url, { env, passphrase: 'off-site passphrase' });
  t.after(() => offsite.close());
  const local = await Repository.open(back);
  t.after(() => local.close());
  for (const id of ids) {
    for (const deviceKey of [1, 2]) {
      const expected = sha256(images.get(`${id}/${deviceKey}`) ?? Buffer.alloc(0));
      assert.equal(sha256(await restoreToBuffer(offsite, id, deviceKey)), expected, `${id} disk ${deviceKey} on S3`);
      if (id !== ids[1]) assert.equal(sha256(await restoreToBuffer(local, id, deviceKey)), expected, `${id} disk ${deviceKey} back home`);
    }
  }
  assert.deepEqual(await local.listPointIds(), [ids[0], ids[2]]);
  const manifest = await local.readManifest(ids[2]);
  assert.equal(manifest.vm.name, 'web');
  assert.equal(manifest.createdAt, new Date(Date.UTC(2026, 0, 3)).toISOString());
  const verify = await runCli(['verify', '--repo', url, '--read-data', '--passphrase-file', passFile], env);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
});
