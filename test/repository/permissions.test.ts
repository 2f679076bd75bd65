import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { memorySource, newRepository, tempDir, vm } from './helpers.ts';

test('every directory is 0700 and every file 0600, whatever the umask', async (t) => {
  const dir = path.join(tempDir(t), 'repo');
  const previousUmask = process.umask(0o022);
  t.after(() => process.umask(previousUmask));
  const repo = await newRepository(dir, { chunkBytes: 64 * 1024 });
  t.after(() => repo.close());
  const image = randomBytes(300_000);
  const writer = await repo.beginRestorePoint({ vm });
  await writer.writeDisk({ deviceKey: 1, label: 'a', capacityBytes: image.length, changeId: null, reader: memorySource(image) });
  const lockFiles = fs.readdirSync(path.join(dir, 'locks')).map((n) => path.join(dir, 'locks', n));
  await writer.commit();
  const seen = { dirs: 0, files: 0 };
  const walk = (p: string) => {
    const mode = fs.statSync(p).mode & 0o777;
    if (fs.statSync(p).isDirectory()) {
      seen.dirs++;
      assert.equal(mode, 0o700, p);
      for (const name of fs.readdirSync(p)) walk(path.join(p, name));
    } else {
      seen.files++;
      assert.equal(mode, 0o600, p);
    }
  };
  walk(dir);
  assert.ok(seen.dirs >= 9 && seen.files >= 6, JSON.stringify(seen));
  assert.equal(lockFiles.length, 1);
});
