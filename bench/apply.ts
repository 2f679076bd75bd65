// `vcbt apply` against the reference tools, copying the same changed areas from the same
// NBD export onto an NBD target:
//   - vcbt apply (our NBD client, 4 MiB pieces, many in flight, multi-conn);
//   - nbdcopy, given the same areas as the only allocated extents of the source (nbdkit's
//     extentlist filter), with --destination-is-zero so it skips everything else, and --flush
//     because vcbt always flushes the target before it reports success (nbdcopy does not by
//     default; without --flush the two would not be doing the same work);
//   - the seed's loop: one 64 KiB read, then its write, one at a time.
// Each scenario runs without added latency and with a per-request delay on both servers
// (nbdkit's delay filter), which models a round trip to a remote ESXi/proxy: this kernel has
// no sch_netem, so `tc netem` in a network namespace is not available here.
//
// Usage: node bench/apply.ts [sizeMiB=1024] [changedPercent=10] [delayMs=2]
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { open, rm, writeFile, mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { applyAreas } from '../src/jobs/apply.ts';
import { copyAreas } from '../src/jobs/copy-areas.ts';
import { formatCsv } from '../src/extents/csv.ts';
import { totalBytes, union, type Extent } from '../src/extents/extent.ts';
import { openDisk } from '../src/transport/open-disk.ts';
import { startNbdkit, type Peer } from '../test/nbd/peers.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const sizeBytes = Number(process.argv[2] ?? 1024) * MiB;
const changedPercent = Number(process.argv[3] ?? 10);
const delayMs = Number(process.argv[4] ?? 2);
const dir = await mkdtemp(join(tmpdir(), 'vcbt-bench-apply-'));

// Changed areas: 64 KiB-aligned runs of 64 KiB .. 2 MiB, like CBT reports them.
function randomAreas(): Extent[] {
  const wanted = (sizeBytes * changedPercent) / 100;
  const areas: Extent[] = [];
  while (totalBytes(union(areas)) < wanted) {
    const lengthBytes = (1 + Math.floor(Math.random() * 32)) * 65536;
    const offsetBytes = Math.floor(Math.random() * ((sizeBytes - lengthBytes) / 65536)) * 65536;
    areas.push({ offsetBytes, lengthBytes });
  }
  return union(areas);
}

const areas = randomAreas();
const areaBytes = totalBytes(areas);
const source = join(dir, 'source.raw');
{
  const handle = await open(source, 'w');
  await handle.truncate(sizeBytes);
  for (const a of areas) await handle.write(randomBytes(a.lengthBytes), 0, a.lengthBytes, a.offsetBytes);
  await handle.close();
}
await writeFile(join(dir, 'areas.csv'), formatCsv(areas));
await writeFile(join(dir, 'extents.txt'), areas.map((a) => `${a.offsetBytes} ${a.lengthBytes}`).join('\n') + '\n');
const sourceSha = createHash('sha256').update(await readFile(source)).digest('hex');

async function freshTarget(name: string): Promise<string> {
  const path = join(dir, name);
  const handle = await open(path, 'w');
  await handle.truncate(sizeBytes);
  await handle.close();
  return path;
}

async function timed(work: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await work();
  return performance.now() - start;
}

async function withServers<T>(target: string, delay: number, extentList: boolean, work: (src: Peer, dst: Peer) => Promise<T>): Promise<T> {
  const delayFilter = () => (delay > 0 ? ['--filter=delay'] : []);
  const delayArgs = (kind: 'rdelay' | 'wdelay') => (delay > 0 ? [`${kind}=${delay}ms`] : []);
  const src = await startNbdkit(['file', source, ...delayArgs('rdelay'), ...(extentList ? [`extentlist=${join(dir, 'extents.txt')}`] : [])], {
    tcp: true,
    readOnly: true,
    before: [...(extentList ? ['--filter=extentlist'] : []), ...delayFilter()],
  });
  const dst = await startNbdkit(['file', target, ...delayArgs('wdelay')], { tcp: true, before: delayFilter() });
  try {
    return await work(src, dst);
  } finally {
    await src.stop();
    await dst.stop();
  }
}

async function check(target: string, label: string): Promise<void> {
  const sha = createHash('sha256').update(await readFile(target)).digest('hex');
  if (sha !== sourceSha) throw new Error(`${label}: target differs from source`);
  await rm(target);
}

const rate = (ms: number) => areaBytes / MiB / (ms / 1000);
console.log(`disk ${sizeBytes / MiB} MiB, ${areas.length} changed areas, ${(areaBytes / MiB).toFixed(1)} MiB to copy`);
try {
  for (const delay of [0, delayMs]) {
    const label = delay > 0 ? `${delay} ms per request` : 'no added latency';
    const oursTarget = await freshTarget('ours.raw');
    const oursMs = await withServers(oursTarget, delay, false, (src, dst) =>
      timed(() => applyAreas({ areasFile: join(dir, 'areas.csv'), from: src.uri, to: dst.uri })));
    await check(oursTarget, 'vcbt apply');

    const nbdcopyTarget = await freshTarget('nbdcopy.raw');
    const nbdcopyMs = await withServers(nbdcopyTarget, delay, true, (src, dst) =>
      timed(() => run('nbdcopy', ['--destination-is-zero', '--flush', src.uri, dst.uri])));
    await check(nbdcopyTarget, 'nbdcopy');

    const seedTarget = await freshTarget('seed.raw');
    const seedMs = await withServers(seedTarget, delay, false, (src, dst) =>
      timed(async () => {
        const reader = await openDisk(src.uri, { connections: 1 });
        const writer = await openDisk(dst.uri, { writable: true, connections: 1 });
        await copyAreas(reader, writer, areas, { pieceBytes: 65536, maxInFlight: 1 });
        await reader.close();
        await writer.close();
      }));
    await check(seedTarget, 'seed loop');

    console.log(`\n${label}:`);
    console.log(`  vcbt apply   ${oursMs.toFixed(0).padStart(7)} ms  ${rate(oursMs).toFixed(0).padStart(5)} MiB/s`);
    console.log(`  nbdcopy      ${nbdcopyMs.toFixed(0).padStart(7)} ms  ${rate(nbdcopyMs).toFixed(0).padStart(5)} MiB/s`);
    console.log(`  seed loop    ${seedMs.toFixed(0).padStart(7)} ms  ${rate(seedMs).toFixed(0).padStart(5)} MiB/s`);
    console.log(`  ratios: vcbt/nbdcopy throughput ${(nbdcopyMs / oursMs).toFixed(2)}x, vcbt/seed loop ${(seedMs / oursMs).toFixed(1)}x`);
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
