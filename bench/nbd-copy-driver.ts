// The data path of `vcbt replicate --transport nbd` alone, as one child process: the source
// opened as replicate opens it (NBD client behind the reconnecting reader), a sparse target
// file of the disk's size, copyAreas over the areas of a CSV ("offset,length" bytes), then a
// flush. bench/nbd-copy.ts runs it next to nbdcopy on the same export.
//
// Usage: node bench/nbd-copy-driver.ts URI TARGET AREAS.csv [pieceKiB] [inFlight] [connections]
//   pieceKiB / inFlight: copyAreas' pieceBytes / maxInFlight (0 or absent: copyAreas' own
//   choice); connections: NBD connections (absent: the client's default).
import { readFile } from 'node:fs/promises';
import { parseCsv } from '../src/extents/csv.ts';
import { openDisk } from '../src/transport/open-disk.ts';
import { openReconnectingReader } from '../src/transport/reconnecting-reader.ts';
import { copyAreas } from '../src/jobs/copy-areas.ts';

const [uri, target, areasFile, pieceKiB, inFlight, connections] = process.argv.slice(2);
const areas = parseCsv(await readFile(areasFile, 'utf8'), areasFile);
const openOptions = connections ? { connections: Number(connections) } : {};
const source = await openReconnectingReader((signal) => openDisk(uri, { ...openOptions, signal }));
const disk = await openDisk(target, { writable: true, create: true, sizeBytes: source.sizeBytes });
const stats = await copyAreas(source, disk, areas, {
  pieceBytes: Number(pieceKiB) > 0 ? Number(pieceKiB) * 1024 : undefined,
  maxInFlight: Number(inFlight) > 0 ? Number(inFlight) : undefined,
});
await disk.close();
await source.close();
console.log(JSON.stringify(stats));
