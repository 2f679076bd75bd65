// `npm run demo`: vcbt on the built-in vSphere lab, as an administrator would run it.
// Starts a lab, lists the VMs, enables CBT, replicates a VM's two disks (a full copy), lets
// the guest write, lists the changed areas (the seed's CSV) through a snapshot vcbt takes and
// removes, replicates again (an incremental), backs the VM up twice into a new repository,
// restores a disk, restores the latest point as a new VM in the lab (restore-vm), then gets one
// file back out of a restore point (file-level restore of the ext4 file system the guest made
// on its second disk). Every vcbt command runs as its own process and is printed first. Exits 0
// only if the changed areas are exactly the blocks written and every copy is byte-identical.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { startLab, type Lab } from '../test/lab/lab.ts';

const run = promisify(execFile);
const vm = 'DC0_H0_VM0';
const KiB = 1024;
const MiB = 1024 * KiB;
const cbtBlockBytes = 64 * KiB;
const vcbtBin = join(import.meta.dirname, '..', 'bin', 'vcbt.ts');
let failures = 0;

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

function check(ok: boolean, what: string): void {
  say(`   ${ok ? 'ok' : 'FAILED'}: ${what}`);
  if (!ok) failures++;
}

async function vcbt(lab: Lab, args: string[], connect = true, show = true): Promise<string> {
  const connection = connect ? ['--server', lab.info.sdk, '--user', lab.info.username, '--thumbprint', lab.info.thumbprintSha1] : [];
  if (show) say(`\n$ vcbt ${args.join(' ')}${connect ? ' --server ... --user ... --thumbprint ...' : ''}`);
  const { stdout, stderr } = await run(process.execPath, [vcbtBin, ...args, ...connection], {
    env: { ...process.env, VCBT_PASSWORD: lab.info.password, VCBT_PASSPHRASE: 'demo passphrase' },
    maxBuffer: 16 * MiB,
  }).catch((error: { stdout?: string; stderr?: string; message: string }) => {
    say(error.stdout ?? '');
    say(error.stderr ?? error.message);
    throw new Error(`vcbt ${args[0]} failed`);
  });
  const shown = (stdout.length > 1500 ? `${stdout.slice(0, 1500)}...\n` : stdout).trimEnd();
  if (shown && show) say(shown.replace(/^/gm, '  '));
  if (stderr.trim()) say(stderr.trimEnd().replace(/^/gm, '  | '));
  return stdout;
}

const sha256 = async (path: string) => createHash('sha256').update(await readFile(path)).digest('hex');

function writtenBlocks(writes: Array<{ offset: number; length: number }>, capacityBytes: number): string {
  const blocks = new Set<number>();
  for (const w of writes) for (let b = Math.floor(w.offset / cbtBlockBytes); b * cbtBlockBytes < w.offset + w.length; b++) blocks.add(b);
  const areas: Array<[number, number]> = [];
  for (const b of [...blocks].sort((x, y) => x - y)) {
    const start = b * cbtBlockBytes;
    const length = Math.min(cbtBlockBytes, capacityBytes - start);
    const last = areas.at(-1);
    if (last && last[0] + last[1] === start) last[1] += length;
    else areas.push([start, length]);
  }
  return areas.map(([o, l]) => `${o},${l}\n`).join('');
}

async function story(lab: Lab, dir: string): Promise<void> {
  const [disk1, disk2] = lab.info.vms.find((v) => v.name === vm)!.disks;
  say(`The lab: a vSphere API at ${lab.info.sdk}; VM ${vm} has ${disk1.label} (${disk1.capacityBytes} bytes) and ${disk2.label} (${disk2.capacityBytes} bytes).`);
  await lab.config({ maxAreasPerReply: 1 });
  say('The lab answers at most one area per QueryChangedDiskAreas reply: vcbt must page through startOffset.');

  await vcbt(lab, ['vms']);
  await vcbt(lab, ['cbt', 'enable', '--vm', vm]);
  await vcbt(lab, ['replicate', '--vm', vm, '--to', dir]);
  const replica1 = join(dir, `${vm}-${disk1.key}.raw`);
  const state = JSON.parse(await readFile(`${replica1}.vcbt-replica.json`, 'utf8')) as { changeId: string };

  const writes = [
    { offset: 0, length: 512, what: 'a new boot sector' },
    { offset: MiB + 100, length: 200 * KiB, what: '200 KiB of a file, not block-aligned' },
    { offset: disk1.capacityBytes - 3 * KiB, length: 3 * KiB, what: 'the last 3 KiB of the disk' },
  ];
  say('\nThe guest writes to Hard disk 1:');
  for (const w of writes) {
    await lab.write(vm, disk1.key, w.offset, new Uint8Array(w.length).fill(0x5a));
    say(`   ${w.what}: ${w.length} bytes at offset ${w.offset}`);
  }

  const changes = JSON.parse(await vcbt(lab, ['changes', '--vm', vm, '--disk', String(disk1.key), '--since', state.changeId, '--take-snapshot'])) as { areas: Array<{ offsetBytes: number; lengthBytes: number }> };
  const csv = changes.areas.map((a) => `${a.offsetBytes},${a.lengthBytes}\n`).join('');
  say(`\nAs the seed's CSV:\n${csv.trimEnd()}`);
  check(csv === writtenBlocks(writes, disk1.capacityBytes), 'the changed areas are exactly the 64 KiB blocks the guest wrote');
  check((await lab.snapshots(vm)).length === 0, 'the snapshot vcbt took was removed');

  await vcbt(lab, ['replicate', '--vm', vm, '--to', dir]);
  for (const d of [disk1, disk2]) {
    check((await sha256(join(dir, `${vm}-${d.key}.raw`))) === (await lab.sha256(vm, d.key)).sha256, `replica of ${d.label} is byte-identical to the VM's disk`);
  }

  const motd = `Welcome to ${vm}, backed up by vcbt.\n`;
  await lab.write(vm, disk2.key, 0, await ext4Image(dir, disk2.capacityBytes, { 'etc/motd': motd, 'home/admin/todo.txt': 'restore one file\n' }));
  say(`\nThe guest makes an ext4 file system on ${disk2.label} holding /etc/motd and /home/admin/todo.txt.`);

  const repo = join(dir, 'repository');
  await vcbt(lab, ['init', '--repo', repo, '--encrypt'], false);
  await vcbt(lab, ['backup', '--vm', vm, '--repo', repo]);
  const atFirstBackup = (await lab.sha256(vm, disk1.key)).sha256;
  await lab.write(vm, disk1.key, 5 * MiB, new Uint8Array(300 * KiB).fill(0x33));
  say('\nThe guest writes 300 KiB more.');
  await vcbt(lab, ['backup', '--vm', vm, '--repo', repo]);
  await vcbt(lab, ['points', '--repo', repo], false);
  const points = JSON.parse(await vcbt(lab, ['points', '--repo', repo, '--json'], false, false)) as Array<{ id: string }> | { points: Array<{ id: string }> };
  const ids = (Array.isArray(points) ? points : points.points).map((p) => p.id);
  const restored = join(dir, 'restored-first.raw');
  await vcbt(lab, ['restore', '--repo', repo, '--point', ids[0], '--disk', String(disk1.key), '--to', restored], false);
  check((await sha256(restored)) === atFirstBackup, 'the first restore point restores byte-identical to the disk at that backup');
  await vcbt(lab, ['verify', '--repo', repo, '--read-data'], false);

  say('\nThe whole VM comes back as a new one: its configuration was stored with each restore point.');
  const atLatest = await Promise.all([disk1, disk2].map(async (d) => (await lab.sha256(vm, d.key)).sha256));
  const made = JSON.parse(await vcbt(lab, ['restore-vm', '--repo', repo, '--point', 'latest', '--vm', vm, '--name', `${vm}-restored`, '--json'])) as {
    vm: { name: string; moref: string };
    disks: Array<{ key: number; sourceKey: number; capacityBytes: number; bytesWritten: number }>;
  };
  for (const [i, d] of made.disks.entries()) {
    check((await lab.sha256(made.vm.name, d.key)).sha256 === atLatest[i], `disk ${d.sourceKey} of the new VM ${made.vm.name} (${made.vm.moref}) is byte-identical to the restore point (${d.bytesWritten} bytes uploaded for ${d.capacityBytes})`);
  }
  await vcbt(lab, ['vms']);

  say('\nFile-level restore: one file out of the first restore point, without mounting anything.');
  const got = join(dir, 'got');
  await vcbt(lab, ['files', 'get', '--repo', repo, '--point', ids[0], '--disk', String(disk2.key), '/etc/motd', '--to', got], false);
  check((await readFile(join(got, 'motd'), 'utf8')) === motd, '/etc/motd came back byte-identical from the restore point');
}

/** An ext4 file system image of `sizeBytes` holding `files` (mkfs.ext4 -d: nothing is mounted). */
async function ext4Image(dir: string, sizeBytes: number, files: Record<string, string>): Promise<Buffer> {
  const tree = join(dir, 'guest-tree');
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(tree, dirname(path)), { recursive: true });
    await writeFile(join(tree, path), text);
  }
  const image = join(dir, 'guest-fs.img');
  await run('mkfs.ext4', ['-q', '-F', '-d', tree, image, `${Math.floor(sizeBytes / 1024)}k`]);
  return readFile(image);
}

const lab = await startLab();
const dir = await mkdtemp(join(tmpdir(), 'vcbt-demo-'));
try {
  await story(lab, dir);
} catch (error) {
  failures++;
  say(`FAILED: ${error instanceof Error ? error.message : String(error)}`);
} finally {
  await lab.stop();
  await rm(dir, { recursive: true, force: true });
}
say(failures === 0 ? '\nDemo complete: every check passed.' : `\nDemo: ${failures} check(s) FAILED.`);
process.exitCode = failures === 0 ? 0 : 1;
