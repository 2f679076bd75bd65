// The flags of snapshot jobs (replicate, backup): how a job reads a VM disk at its snapshot
// (`--transport` and what each transport needs), and the full/quiesce/CBT-reset/json switches.
import { UsageError } from '../errors.ts';
import { DEFAULT_IO_TIMEOUT_MS, transportNames, type TransportName, type TransportOptions } from '../jobs/snapshot-source.ts';
import type { CommandIo } from './command.ts';
import { progressFlags, progressUsage } from './flags.ts';
import { readPassword, type ConnectionValues } from './connection.ts';

export const transportFlags = {
  transport: { type: 'string', default: 'http' },
  'nbd-uri': { type: 'string' },
  'vddk-libdir': { type: 'string' },
  'vddk-transports': { type: 'string' },
  nbdkit: { type: 'string' },
  'datastore-dir': { type: 'string', multiple: true },
  'io-timeout': { type: 'string' },
} as const;

export const transportUsage = `reading the source disk at the snapshot:
  --transport http       (default) datastore HTTPS with Range; needs flat disks
  --transport nbd        --nbd-uri TEMPLATE, e.g. nbd://proxy/{snapshot}/{disk}
                         (placeholders {vm} {snapshot} {disk} {file} {datastore})
  --transport vddk       --vddk-libdir DIR (VMware VDDK) and nbdkit's vddk plugin
                         [--vddk-transports nbd:nbdssl:hotadd:san] [--nbdkit PATH]
  --transport file       --datastore-dir NAME=PATH where the datastore is mounted here
  --io-timeout DURATION  a network read with no progress for this long fails and is
                         retried/resumed (default ${DEFAULT_IO_TIMEOUT_MS / 1000}s)`;

export const snapshotJobFlags = {
  full: { type: 'boolean', default: false },
  'no-cbt-reset': { type: 'boolean', default: false },
  quiesce: { type: 'boolean', default: false },
  'wait-busy': { type: 'string', default: '0' },
  json: { type: 'boolean', default: false },
  ...progressFlags,
} as const;

export const snapshotJobUsage = `  --no-cbt-reset         when a disk grew since its last copy, do not reset CBT first
                         (default: reset it, KB 2090639; every disk is then copied in full)
  --quiesce              quiesced snapshot (needs VMware Tools)
  --wait-busy DURATION   when another vcbt run (any host) works on the VM, wait up to this
                         long (e.g. 10m) before failing with VM_BUSY (default 0: fail at once)
  --json                 machine-readable summary on stdout (docs/json.md)
${progressUsage}`;

/** The snapshot-job switches as job options. */
export function snapshotJobOptions(values: { full: boolean; 'no-cbt-reset': boolean; quiesce: boolean; 'wait-busy': string }): { forceFull: boolean; resetCbtOnResize: boolean; quiesce: boolean; waitBusyMs: number } {
  return { forceFull: values.full, resetCbtOnResize: !values['no-cbt-reset'], quiesce: values.quiesce, waitBusyMs: parseDurationMs(values['wait-busy'], '--wait-busy', { allowZero: true }) };
}

export interface TransportValues extends ConnectionValues {
  transport?: string;
  'nbd-uri'?: string;
  'vddk-libdir'?: string;
  'vddk-transports'?: string;
  nbdkit?: string;
  'datastore-dir'?: string[];
  'io-timeout'?: string;
}

/** `KEY=VALUE` flag values as pairs (split at the first `=`). */
export function parsePairs(items: readonly string[] | undefined, flag: string): Array<[string, string]> {
  return (items ?? []).map((item) => {
    const at = item.indexOf('=');
    if (at <= 0 || at === item.length - 1) throw new UsageError(`${flag} wants KEY=VALUE, got "${item}"`);
    return [item.slice(0, at), item.slice(at + 1)];
  });
}

const durationUnitsMs: Record<string, number> = { '': 1000, s: 1000, m: 60_000, h: 3_600_000 };

/** A duration flag: `90` or `90s` (seconds), `10m`, `1.5h`; at most a day. */
export function parseDurationMs(value: string, flag: string, options: { allowZero?: boolean } = {}): number {
  const match = /^(\d+(?:\.\d+)?)(s|m|h|)$/.exec(value.trim());
  const ms = match ? Math.round(Number(match[1]) * (durationUnitsMs[match[2]] as number)) : NaN;
  if (!match || ms > 86_400_000 || (ms === 0 && !options.allowZero)) {
    throw new UsageError(`${flag} wants a duration such as 90, 90s, 10m or 1h (at most 24h${options.allowZero ? '' : ', more than 0'}), got "${value}"`);
  }
  return ms;
}

export function parseIoTimeout(value: string | undefined): number {
  return value === undefined ? DEFAULT_IO_TIMEOUT_MS : parseDurationMs(value, '--io-timeout');
}

/** The transport flags as TransportOptions; vddk gets the vSphere user and password. */
export async function parseTransportFlags(values: TransportValues, io: CommandIo): Promise<TransportOptions> {
  const transport = (values.transport ?? 'http') as TransportName;
  if (!transportNames.includes(transport)) throw new UsageError(`--transport must be one of ${transportNames.join(', ')}, got "${values.transport}"`);
  const options: TransportOptions = {
    transport,
    nbdUriTemplate: values['nbd-uri'],
    datastoreDirs: new Map(parsePairs(values['datastore-dir'], '--datastore-dir')),
    ioTimeoutMs: parseIoTimeout(values['io-timeout']),
  };
  if (transport === 'nbd' && !values['nbd-uri']) throw new UsageError('--transport nbd needs --nbd-uri TEMPLATE');
  if (transport === 'file' && !values['datastore-dir']?.length) throw new UsageError('--transport file needs --datastore-dir NAME=PATH');
  if (transport === 'vddk') {
    if (!values['vddk-libdir']) throw new UsageError('--transport vddk needs --vddk-libdir DIR (the unpacked VMware VDDK)');
    options.vddk = {
      libdir: values['vddk-libdir'],
      user: values.user ?? '',
      password: await readPassword(values, io),
      transports: values['vddk-transports']?.split(':'),
      nbdkitPath: values.nbdkit,
    };
  }
  return options;
}
