// File-level restore of a lab VM backed up with `vcbt backup`: its disk holds XFS, NTFS, Btrfs
// and an LVM logical volume with ext4 (test/files/lab-disk.ts), written the way a guest writes
// (through the lab's control API). The guest then changes files and the VM is backed up again.
// Every file is listed with its size and extracted byte-identical from the right restore point,
// and the LVM physical volume is named, not browsed. (The CLI's paths are tested in
// files.slow-test.ts; this test boots the appliance three times: to build the disk, and once per
// restore point.)
//
// Slow (libguestfs boots its appliance to build the disk and to read it): `npm run test:files`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VcbtError } from '../../src/errors.ts';
import { withFilesBrowser } from '../../src/jobs/files.ts';
import { Repository } from '../../src/repository/repository.ts';
import { labConnection, runCli } from '../helpers/cli-runner.ts';
import { startLab } from '../lab/lab.ts';
import { buildLabDisk, changedBlocks, LAB_DISK_BYTES, nextVersion } from './lab-disk.ts';

const env: NodeJS.ProcessEnv = process.env.VCBT_TEST_KVM === '1' ? {} : { LIBGUESTFS_BACKEND_SETTINGS: 'force_tcg' };
const sha = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
const VM = 'DC0_H0_VM0';

test('XFS, NTFS, Btrfs and an LVM volume of a backed-up lab VM: every file from the right restore point', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vcbt-files-lab-'));
  const lab = await startLab({ diskSizes: [LAB_DISK_BYTES] });
  try {
    const { flags, env: cliEnv } = labConnection(lab);
    const disk = lab.info.vms.find((v) => v.name === VM)!.disks[0];
    const repo = join(dir, 'repo');
    assert.equal((await runCli(['init', '--repo', repo], cliEnv)).code, 0);
    assert.equal((await runCli(['cbt', 'enable', '--vm', VM, ...flags], cliEnv)).code, 0);

    const v1 = await buildLabDisk(dir, env);
    for (const block of changedBlocks(v1.image, null)) await lab.write(VM, disk.key, block.offsetBytes, block.data);
    const first = await runCli(['backup', '--vm', VM, '--repo', repo, '--json', ...flags], cliEnv);
    assert.equal(first.code, 0, first.stderr);
    const v2 = await nextVersion(dir, v1);
    assert.ok(changedBlocks(v2.image, v1.image).every((b) => b.offsetBytes >= 17 * 1024 * 1024 && b.offsetBytes < 29 * 1024 * 1024), 'only NTFS blocks change');
    for (const block of changedBlocks(v2.image, v1.image)) await lab.write(VM, disk.key, block.offsetBytes, block.data);
    assert.equal((await lab.sha256(VM, disk.key)).sha256, sha(v2.image), 'the lab disk holds version 2');
    const second = await runCli(['backup', '--vm', VM, '--repo', repo, '--json', ...flags], cliEnv);
    assert.equal(second.code, 0, second.stderr);

    const repository = await Repository.open(repo);
    try {
      const points = await repository.listRestorePoints();
      assert.equal(points.length, 2);
      for (const [point, version] of [[points[0], v1], [points[1], v2]] as const) {
        await withFilesBrowser({ repository, pointId: point.id, deviceKey: disk.key, env }, async (browser) => {
          assert.deepEqual(
            browser.filesystems.map((f) => [f.partition, f.volume, f.type, f.browsable]),
            [[1, null, 'xfs', true], [2, null, 'ntfs', true], [3, null, 'btrfs', true], [4, null, 'LVM2_member', false], [null, 'vgdata/home', 'ext4', true]],
          );
          const out = await mkdtemp(join(dir, 'out-'));
          for (const [path, data] of Object.entries(version.files)) {
            const [entry] = await browser.list(path);
            assert.equal(entry.sizeBytes, data.length, path);
            const [copied] = await browser.get([path], out);
            assert.equal(sha(await readFile(copied.to)), sha(data), `${path} from point ${point.id}`);
          }
          await assert.rejects(browser.list('4:/'), (error: unknown) => error instanceof VcbtError && error.code === 'FILES_FILESYSTEM_UNKNOWN' && /LVM physical volume/.test(error.message));
          await assert.rejects(browser.list('vgdata/nothere:/'), (error: unknown) => error instanceof VcbtError && error.code === 'FILES_PARTITION_NOT_FOUND');
        });
      }
    } finally {
      await repository.close();
    }
  } finally {
    await lab.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
