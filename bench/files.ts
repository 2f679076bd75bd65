// File-level restore: the time to the first listing of a restore point (NBD export + appliance
// boot + partition discovery + mount + ls), the time of later listings in the same kept session
// (src/jobs/files-sessions.ts), a `find` over both file systems and a file download, and the
// memory of the appliance's qemu and of vcbt itself. Every extracted file is checked (sha256)
// against the fixture. The disk is test/files/fixture.ts's two-partition GPT (ext4 + FAT).
// Usage: node bench/files.ts [laterListings=10]
// Environment: VCBT_BENCH_KVM=1 lets libguestfs use KVM (default: emulated, as on these machines).
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FilesBrowser } from '../src/jobs/files.ts';
import { SessionPool } from '../src/jobs/files-sessions.ts';
import { buildFixture, DEVICE_KEY } from '../test/files/fixture.ts';

const run = promisify(execFile);
const later = Number(process.argv[2] ?? 10);
const env: NodeJS.ProcessEnv = process.env.VCBT_BENCH_KVM === '1' ? {} : { LIBGUESTFS_BACKEND_SETTINGS: 'force_tcg' };
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const seconds = (startNs: bigint) => Number(process.hrtime.bigint() - startNs) / 1e9;

/** The parent pid of `pid` (field 4 of /proc/PID/stat), 0 when gone. */
async function parentOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1] ?? 0);
}

/**
 * Peak resident memory (VmHWM) in MiB of the appliance's qemu: a qemu process whose parent is a
 * `guestfish --listen` on one of vcbt's exports (its `-a` URI names a vcbt-files-* socket
 * directory; guestfish daemonizes, so the process tree does not lead back to this process).
 * The largest one, should another run be browsing at the same time.
 */
async function qemuPeakMiB(): Promise<number> {
  let peak = 0;
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (!/(^|\/)qemu-system/.test(cmdline.split('\0')[0] ?? '')) continue;
    const parent = await readFile(`/proc/${await parentOf(Number(entry))}/cmdline`, 'utf8').catch(() => '');
    if (!parent.includes('guestfish') || !parent.includes('vcbt-files-')) continue;
    const status = await readFile(`/proc/${entry}/status`, 'utf8').catch(() => '');
    peak = Math.max(peak, Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024);
  }
  return peak;
}

const fixture = await buildFixture();
const out = await mkdtemp(join(tmpdir(), 'vcbt-bench-files-'));
const pool = new SessionPool<FilesBrowser>({ maxSessions: 1 });
try {
  const [older] = fixture.gptPoints;
  const files = fixture.filesOf.get(older)!;
  const key = `${fixture.repoPath}|${older}|${DEVICE_KEY}`;
  const open = () => FilesBrowser.open({ repository: fixture.repository, pointId: older, deviceKey: DEVICE_KEY, env });
  let qemuMiB = 0;
  const t0 = process.hrtime.bigint();
  await pool.use(key, open, async (browser) => {
    await browser.list('1:/home/alice');
    qemuMiB = await qemuPeakMiB();
  });
  const first = seconds(t0);
  const laterSeconds: number[] = [];
  for (let i = 0; i < later; i++) {
    const t = process.hrtime.bigint();
    await pool.use(key, open, (browser) => browser.list(i % 2 === 0 ? '1:/home/alice' : '2:/EFI/BOOT'));
    laterSeconds.push(seconds(t));
  }
  const tf = process.hrtime.bigint();
  const found = await pool.use(key, open, (browser) => browser.find('*'));
  const findSeconds = seconds(tf);
  const tg = process.hrtime.bigint();
  const [copied] = await pool.use(key, open, (browser) => browser.get(['1:/home/alice/data.bin'], out));
  const getSeconds = seconds(tg);
  if (sha(await readFile(copied.to)) !== sha(files['1:/home/alice/data.bin'])) throw new Error('the extracted file differs from the fixture');
  qemuMiB = Math.max(qemuMiB, await qemuPeakMiB());
  const sorted = [...laterSeconds].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  const { stdout: load } = await run('cat', ['/proc/loadavg']);
  const result = {
    kvm: process.env.VCBT_BENCH_KVM === '1',
    loadAverage: load.split(' ')[0],
    firstListingSeconds: Number(first.toFixed(2)),
    laterListingSecondsMedian: Number(median.toFixed(3)),
    laterListingSecondsMax: Number(sorted.at(-1)!.toFixed(3)),
    findAllSeconds: Number(findSeconds.toFixed(3)),
    findAllPaths: found.length,
    getFileSeconds: Number(getSeconds.toFixed(3)),
    qemuPeakRssMiB: Math.round(qemuMiB),
    vcbtPeakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
  };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
} finally {
  await pool.close();
  await fixture.close();
  await rm(out, { recursive: true, force: true });
}
