// `npm run demo`: a short story on the built-in vSphere lab. Start a lab, enable CBT on a
// VM, take a snapshot, write guest data, take another snapshot, and list the areas changed
// in between through the real vSphere API (QueryChangedDiskAreas, paged), then read the
// snapshot's disk over NBD from the lab's named endpoint (nbdUriTemplate). Exits 0 only if
// the areas are exactly the blocks that were written and the NBD bytes are the snapshot's.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { startLab, type Lab } from '../test/lab/lab.ts';

const vm = 'DC0_H0_VM0';
const KiB = 1024;
const MiB = 1024 * KiB;
const cbtBlockBytes = 64 * KiB;

interface Area {
  start: number;
  length: number;
}
interface Snapshot {
  moref: string;
  disks: Array<{ key: number; changeId: string; file: string }>;
}

function say(line: string): void {
  process.stdout.write(line + '\n');
}

function expectedBlocks(writes: Array<{ offset: number; length: number }>, capacityBytes: number): Area[] {
  const blocks = new Set<number>();
  for (const w of writes) for (let b = Math.floor(w.offset / cbtBlockBytes); b * cbtBlockBytes < w.offset + w.length; b++) blocks.add(b);
  const out: Area[] = [];
  for (const b of [...blocks].sort((x, y) => x - y)) {
    const start = b * cbtBlockBytes;
    const length = Math.min(cbtBlockBytes, capacityBytes - start);
    const last = out.at(-1);
    if (last && last.start + last.length === start) last.length += length;
    else out.push({ start, length });
  }
  return out;
}

async function govmomi<T>(lab: Lab, args: string[]): Promise<T> {
  const result = (await lab.govmomi(args)) as { fault?: string; message?: string };
  if (result.fault) throw new Error(`${args[0]}: vSphere fault ${result.fault}: ${result.message}`);
  return result as T;
}

/** sha256 of an NBD export's whole contents, read by nbdcopy to its stdout. */
function nbdSha256(uri: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    const child = spawn('nbdcopy', [uri, '-'], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.stdout.on('data', (chunk: Buffer) => hash.update(chunk));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(hash.digest('hex')) : reject(new Error(`nbdcopy ${uri} exited with ${code}`))));
  });
}

async function story(lab: Lab): Promise<boolean> {
  const disk = lab.info.vms.find((v) => v.name === vm)!.disks[0];
  say(`1. Lab up: vSphere API at ${lab.info.sdk} (certificate SHA-1 ${lab.info.thumbprintSha1.slice(0, 14)}...)`);
  say(`   VM ${vm}, ${disk.label}: ${disk.file}, ${disk.capacityBytes} bytes (not a whole number of MiB)`);

  await govmomi(lab, ['cbt', vm, 'on']);
  const base = await govmomi<Snapshot>(lab, ['snapshot-create', vm, 'vcbt-demo-base']);
  const baseChangeId = base.disks.find((d) => d.key === disk.key)!.changeId;
  say(`2. CBT enabled; snapshot ${base.moref} taken. Its disk's ChangeId: ${baseChangeId}`);

  const writes = [
    { offset: 0, length: 512, what: 'a new boot sector' },
    { offset: MiB + 100, length: 200 * KiB, what: '200 KiB of a file, not block-aligned' },
    { offset: disk.capacityBytes - 3 * KiB, length: 3 * KiB, what: 'the last 3 KiB of the disk' },
  ];
  say('3. The guest writes:');
  for (const w of writes) {
    await lab.write(vm, disk.key, w.offset, new Uint8Array(w.length).fill(0x5a));
    say(`   - ${w.what}: ${w.length} bytes at offset ${w.offset}`);
  }

  const next = await govmomi<Snapshot>(lab, ['snapshot-create', vm, 'vcbt-demo-next']);
  say(`4. Snapshot ${next.moref} taken; the lab now answers at most 1 area per QueryChangedDiskAreas reply, so the client must page.`);
  await lab.config({ maxAreasPerReply: 1 });
  const result = await govmomi<{ calls: number; areas: Area[] }>(lab, ['query', vm, String(disk.key), next.moref, baseChangeId]);
  say(`5. Changed areas since the base snapshot's ChangeId (${result.calls} QueryChangedDiskAreas calls):`);
  for (const a of result.areas) say(`   - offset ${a.start}, ${a.length} bytes`);

  const expected = expectedBlocks(writes, disk.capacityBytes);
  const exact = JSON.stringify(result.areas) === JSON.stringify(expected);
  say(exact ? '6. These are exactly the 64 KiB blocks the guest wrote.' : `6. MISMATCH: expected ${JSON.stringify(expected)}`);

  const uri = lab.info.nbdUriTemplate.replace('{snapshot}', next.moref).replace('{disk}', String(disk.key));
  const overNbd = await nbdSha256(uri);
  const frozen = (await lab.sha256(vm, disk.key, next.moref)).sha256;
  say(`7. Read over NBD from ${uri}: sha256 ${overNbd.slice(0, 16)}... ${overNbd === frozen ? 'equals' : 'DIFFERS FROM'} the snapshot's.`);

  for (const s of [next, base]) await govmomi(lab, ['snapshot-remove', vm, s.moref]);
  say('8. Snapshots removed (consolidated).');
  return exact && overNbd === frozen;
}

const lab = await startLab();
let ok = false;
try {
  ok = await story(lab);
} finally {
  await lab.stop();
  say('9. Lab stopped and cleaned up.');
}
process.exitCode = ok ? 0 : 1;
