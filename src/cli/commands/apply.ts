// `vcbt apply`: copy the areas listed in a CSV (the seed's `offset,length` bytes) from a
// source disk to a target disk. SRC/DST are file paths or NBD URIs.
import { ExitCode, type Command } from '../command.ts';
import { applyAreas } from '../../jobs/apply.ts';
import { createProgress } from '../progress.ts';
import { writeJsonDocument } from '../json-output.ts';
import { documentHeader } from '../json-documents.ts';
import { UsageError } from '../../errors.ts';
import { parseFlags, MAX_IN_FLIGHT, parseInFlight, parsePositiveInteger, parseProgressInterval, progressFlags, progressUsage } from '../flags.ts';
import { parseIoTimeout } from '../transport-flags.ts';
import { DEFAULT_IO_TIMEOUT_MS } from '../../jobs/snapshot-source.ts';
import { defaultMaxInFlight, defaultPieceBytes } from '../../jobs/copy-areas.ts';

const usage = `usage: vcbt apply --areas FILE.csv --from SRC --to DST [--sector-size 512] [--in-flight N]
                  [--io-timeout DURATION] [--json]

Copies every area listed in FILE.csv (one "offset,length" line per area, in bytes, as
\`vcbt changes --format csv\` prints) from SRC to DST. SRC and DST are file paths or NBD
URIs (nbd://host:port/export, nbds://..., nbd+unix:///export?socket=PATH). DST must exist
and be at least as large as SRC. Areas are checked against both disks and against the
sector size before anything is written. An NBD server that does not finish the handshake,
or answers no request, within --io-timeout (default ${DEFAULT_IO_TIMEOUT_MS / 1000}s) ends the run with
NBD_TIMEOUT.

  --in-flight N          pieces of ${defaultPieceBytes / 1024} KiB copied at once (default ${defaultMaxInFlight}, at most ${MAX_IN_FLIGHT})
  --io-timeout DURATION  inactivity deadline of the NBD peers (default ${DEFAULT_IO_TIMEOUT_MS / 1000}s)
${progressUsage}`;

export const applyCommand: Command = {
  name: 'apply',
  summary: 'copy the changed areas listed in a CSV from one disk to another',
  usage,
  async run(args, io) {
    const { values } = parseFlags({
      args,
      strict: true,
      options: {
        areas: { type: 'string' },
        from: { type: 'string' },
        to: { type: 'string' },
        'sector-size': { type: 'string', default: '512' },
        'in-flight': { type: 'string' },
        'io-timeout': { type: 'string' },
        json: { type: 'boolean', default: false },
        ...progressFlags,
      },
    });
    if (!values.areas || !values.from || !values.to) throw new UsageError(`apply needs --areas, --from and --to\n\n${usage}`);
    const progress = createProgress('apply', io.stderr, { quiet: values.json, progressIntervalMs: parseProgressInterval(values['progress-interval']) });
    const result = await applyAreas({
      areasFile: values.areas,
      from: values.from,
      to: values.to,
      sectorBytes: parsePositiveInteger(values['sector-size'], '--sector-size'),
      maxInFlight: parseInFlight(values['in-flight']),
      ioTimeoutMs: parseIoTimeout(values['io-timeout']),
      signal: io.signal,
      onProgress: (done, total) => progress.update(done, total),
    });
    progress.finish();
    if (values.json) {
      writeJsonDocument(io, { ...documentHeader('apply'), ...result });
    } else {
      const mibPerS = result.bytesCopied / 1048576 / Math.max(result.elapsedMs / 1000, 1e-3);
      io.stdout.write(`applied ${result.areas} areas, ${result.bytesCopied} bytes (${result.bytesZero} as zeroes) in ${(result.elapsedMs / 1000).toFixed(2)} s, ${mibPerS.toFixed(1)} MiB/s\n`);
    }
    return ExitCode.ok;
  },
};
