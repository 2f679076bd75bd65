// `vcbt export`: serve one disk of a restore point read-only over NBD until Ctrl-C/SIGTERM.
import { parseFlags } from '../flags.ts';
import { ExitCode, type Command } from '../command.ts';
import { parseRestorePointDisk, repositoryFlags, restorePointDiskFlags, repositoryUsage, withRepository } from '../repository-flags.ts';
import { UsageError } from '../../errors.ts';
import { writeJsonDocument } from '../json-output.ts';
import { documentHeader } from '../json-documents.ts';
import { EXPORT_LIMITS, exportDisk } from '../../jobs/export.ts';
import { resolvePointId } from '../../jobs/restore-points.ts';
import type { NbdServerOptions } from '../../nbd/server.ts';
import { parsePositiveInteger } from '../flags.ts';
import { parseIoTimeout } from '../transport-flags.ts';

const usage = `usage: vcbt export --repo DIR --point ID|latest [--vm VM] --disk KEY
                   [--listen HOST:PORT | --socket PATH] [--name EXPORT]
                   [--max-connections N] [--io-timeout SECONDS] [--json]

Serves disk KEY of the restore point read-only over NBD (vcbt's own server) until
interrupted (Ctrl-C, SIGTERM), and prints its NBD URI. Any NBD client reads it: nbdcopy,
qemu-img convert, nbdinfo --map (zero chunks show as holes), qemu, nbdfuse.

  --point ID|latest      a restore point id (vcbt points), or the newest of --vm
  --vm VM                with --point latest: name, moref, instance UUID or repository id
  --disk KEY             device key of the disk
  --listen HOST:PORT     TCP address (default 127.0.0.1:10809; port 0 picks a free one)
  --socket PATH          a unix socket instead of TCP
  --name EXPORT          export name (default <point>-<key>)
  --max-connections N    clients served at once; more are refused (default ${EXPORT_LIMITS.maxConnections})
  --io-timeout SECONDS   a client must finish the handshake, and take each reply waiting
                         for it, within this long or it is dropped (default ${EXPORT_LIMITS.ioTimeoutMs / 1000})
  --json                 print {"uri", ...} as JSON once serving

${repositoryUsage}`;

function parseListen(listen: string | undefined, socket: string | undefined): NbdServerOptions['listen'] {
  if (listen !== undefined && socket !== undefined) throw new UsageError('give either --listen or --socket, not both');
  if (socket !== undefined) return { socketPath: socket };
  const text = listen ?? '127.0.0.1:10809';
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  if (!match || Number(match[3]) > 65535) throw new UsageError(`--listen wants HOST:PORT (e.g. 127.0.0.1:10809, [::1]:10809), got "${text}"`);
  return { host: match[1] ?? match[2], port: Number(match[3]) };
}

export const exportCommand: Command = {
  name: 'export',
  summary: 'serve a restore point\'s disk read-only over NBD',
  usage,
  async run(args, io) {
    const { values } = parseFlags({
      args,
      strict: true,
      options: {
        ...repositoryFlags,
        ...restorePointDiskFlags,
        listen: { type: 'string' },
        socket: { type: 'string' },
        name: { type: 'string' },
        'max-connections': { type: 'string' },
        'io-timeout': { type: 'string' },
        json: { type: 'boolean', default: false },
      },
    });
    const { point, vm, deviceKey } = parseRestorePointDisk(values, 'export', usage);
    const listen = parseListen(values.listen, values.socket);
    const maxConnections = values['max-connections'] === undefined ? undefined : parsePositiveInteger(values['max-connections'], '--max-connections');
    const ioTimeoutMs = values['io-timeout'] === undefined ? undefined : parseIoTimeout(values['io-timeout']);
    await withRepository(values, io, async (repository) => {
      const running = await exportDisk({ repository, pointId: await resolvePointId(repository, point, vm), deviceKey, listen, exportName: values.name, maxConnections, ioTimeoutMs });
      try {
        const description = { uri: running.uri, exportName: running.exportName, pointId: running.pointId, deviceKey: running.deviceKey, label: running.label, capacityBytes: running.capacityBytes };
        if (values.json) writeJsonDocument(io, { ...documentHeader('export'), ...description }, { compact: true });
        else io.stdout.write(
          `serving restore point ${running.pointId} disk ${running.deviceKey} (${running.label}, ${running.capacityBytes} bytes) read-only at\n${running.uri}\n(Ctrl-C to stop)\n`,
        );
        if (!io.signal.aborted) await new Promise<void>((resolve) => io.signal.addEventListener('abort', () => resolve(), { once: true }));
      } finally {
        await running.close();
      }
    });
    if (!values.json) io.stderr.write('export stopped\n');
    return ExitCode.ok;
  },
};
