// VMs that already carry snapshots (an administrator's, another tool's) backed up and
// replicated over the `http` transport: vcbt's snapshot sits on a vmfsSparse or SEsparse
// delta chain, read through src/vmdk. Rounds of guest writes (partly written grains,
// zeroing, unmap) between jobs; every restore point and every replica is byte-identical to
// the lab's own sha256 of the disk, and the pre-existing snapshots stay.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLab, type Lab } from '../lab/lab.ts';
import { labConnection, runCli } from '../helpers/cli-runner.ts';
import { seededRandom } from '../helpers/seeded-random.ts';

const MiB = 1024 * 1024;
const vm = 'DC0_H0_VM0';
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
let lab: Lab;
let dir: string;
let connection: ReturnType<typeof labConnection>;

before(async () => {
  lab = await startLab({ diskSizes: [6 * MiB + 3 * 1024, 2 * MiB + 1024] });
  dir = await mkdtemp(join(tmpdir(), 'vcbt-delta-jobs-'));
  connection = labConnection(lab);
  const enabled = await runCli(['cbt', 'enable', '--vm', vm, ...connection.flags], connection.env);
  assert.equal(enabled.code, 0, enabled.stderr);
});

after(async () => {
  await lab?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const disks = () => lab.info.vms.find((v) => v.name === vm)!.disks;

/** Writes of random data, zeros and unmaps, landing in partly written grains of both formats. */
async function guestRound(seed: number): Promise<void> {
  const random = seededRandom(seed);
  const int = (n: number) => Math.floor(random() * n);
  for (const disk of disks()) {
    for (let i = 0; i < 5; i++) {
      const length = 1 + int(100_000);
      const offset = int(disk.capacityBytes - length);
      const kind = int(4);
      if (kind === 0) await lab.unmap(vm, disk.key, offset - (offset % 512), Math.min(length, disk.capacityBytes - offset + (offset % 512)));
      else if (kind === 1) await lab.write(vm, disk.key, offset, Buffer.alloc(length));
      else await lab.write(vm, disk.key, offset, Buffer.from(Array.from({ length }, () => int(256))));
    }
    await lab.write(vm, disk.key, disk.capacityBytes - 1, Buffer.from([int(256)]));
  }
}

async function liveShas(): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  for (const d of disks()) out.set(d.key, (await lab.sha256(vm, d.key)).sha256);
  return out;
}

for (const format of ['vmfsSparse', 'seSparse'] as const) {
  test(`${format}: 1, 2 and 5 pre-existing snapshots, backed up and replicated over http through rounds of writes`, async () => {
    await lab.deltaFormat(vm, format);
    const repo = join(dir, `repo-${format}`);
    const init = await runCli(['init', '--repo', repo]);
    assert.equal(init.code, 0, init.stderr);
    const theirs: string[] = [];
    let seed = format === 'seSparse' ? 1000 : 1;
    const points: { pointId: string; shas: Map<number, string> }[] = [];
    for (const depth of [1, 2, 5]) {
      while (theirs.length < depth) {
        await guestRound(seed++);
        theirs.push(((await lab.govmomi(['snapshot-create', vm, `admin-${theirs.length}`])) as { moref: string }).moref);
      }
      for (let round = 0; round < 2; round++) {
        await guestRound(seed++);
        const backup = await runCli(['backup', '--vm', vm, '--repo', repo, '--transport', 'http', '--json', ...connection.flags], connection.env);
        assert.equal(backup.code, 0, backup.stderr);
        points.push({ pointId: (JSON.parse(backup.stdout) as { pointId: string }).pointId, shas: await liveShas() });
        const targets = disks().flatMap((d) => ['--disk', `${d.key}=${join(dir, `${format}-${d.key}.raw`)}`]);
        const replica = await runCli(['replicate', '--vm', vm, ...targets, '--transport', 'http', '--json', ...connection.flags], connection.env);
        assert.equal(replica.code, 0, replica.stderr);
        const expected = await liveShas();
        for (const d of disks()) assert.equal(sha(await readFile(join(dir, `${format}-${d.key}.raw`))), expected.get(d.key), `replica of disk ${d.key}, ${depth} snapshots, round ${round}`);
        assert.deepEqual((await lab.snapshots(vm)).map((s) => s.moref), theirs, 'only the pre-existing snapshots are left');
      }
    }
    for (const { pointId, shas } of points) {
      for (const [key, want] of shas) {
        const target = join(dir, `restore-${key}.raw`);
        const restored = await runCli(['restore', '--repo', repo, '--point', pointId, '--disk', String(key), '--to', target, '--json']);
        assert.equal(restored.code, 0, restored.stderr);
        assert.equal(sha(await readFile(target)), want, `restore ${pointId} disk ${key}`);
        await rm(target);
      }
    }
    for (const moref of theirs.reverse()) assert.deepEqual(await lab.govmomi(['snapshot-remove', vm, moref]), { ok: true });
  });
}
