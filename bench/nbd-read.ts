// Read throughput of our NBD client vs nbdcopy, both reading the same nbdkit export (the
// `pattern` plugin, computed on the fly, so the server is cheap) over a unix socket.
// Usage: node bench/nbd-read.ts [sizeMiB=1024] [requestKiB=256] [inFlight=64]

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { NbdClient } from '../src/nbd/client.ts';
import { startNbdkit } from '../test/nbd/peers.ts';

const run = promisify(execFile);
const sizeMiB = Number(process.argv[2] ?? 1024);
const requestBytes = Number(process.argv[3] ?? 256) * 1024;
const inFlight = Number(process.argv[4] ?? 64);
const sizeBytes = sizeMiB * 1024 * 1024;

const peer = await startNbdkit(['pattern', String(sizeBytes)], { readOnly: true });
try {
  const nbdcopyMs = await timed(() => run('nbdcopy', [peer.uri, 'null:']));
  const ourMs = await timed(async () => {
    const client = await NbdClient.connect(peer.uri, { connections: 4 });
    let nextOffset = 0;
    const worker = async () => {
      const buffer = new Uint8Array(requestBytes);
      while (nextOffset < sizeBytes) {
        const offsetBytes = nextOffset;
        nextOffset += requestBytes;
        await client.read(offsetBytes, buffer.subarray(0, Math.min(requestBytes, sizeBytes - offsetBytes)));
      }
    };
    await Promise.all(Array.from({ length: inFlight }, worker));
    await client.close();
  });
  const rate = (ms: number) => `${(sizeBytes / 1024 / 1024 / (ms / 1000)).toFixed(0)} MiB/s`;
  console.log(`nbdcopy:    ${sizeMiB} MiB in ${nbdcopyMs.toFixed(0)} ms (${rate(nbdcopyMs)})`);
  console.log(`NbdClient:  ${sizeMiB} MiB in ${ourMs.toFixed(0)} ms (${rate(ourMs)}), ${requestBytes / 1024} KiB x ${inFlight} in flight`);
  console.log(`ratio (ours / nbdcopy throughput): ${(nbdcopyMs / ourMs).toFixed(2)}`);
} finally {
  await peer.stop();
}

async function timed(work: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await work();
  return performance.now() - start;
}
