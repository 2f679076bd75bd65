// `vcbt changes`: the changed (or allocated) areas of one disk, as the seed's CSV or JSON.
import { ExitCode, type Command } from '../command.ts';
import { connectionFlags, connectionUsage, withSession } from '../connection.ts';
import { parseFlags, parsePositiveInteger } from '../flags.ts';
import { UsageError } from '../../errors.ts';
import { writeJsonDocument } from '../json-output.ts';
import { documentHeader } from '../json-documents.ts';
import { ALLOCATED_AREAS, formatAreasCsv, listChanges } from '../../jobs/changes.ts';
import { parseVmSelector } from '../../jobs/vsphere-admin.ts';

const usage = `usage: vcbt changes --vm VM --disk KEY (--since CHANGEID | --all)
                    [--snapshot MOREF | --take-snapshot] [--format csv|json]
                    --server URL --user USER [--thumbprint FP]

Prints the areas of disk KEY (its device key, see \`vcbt vms\`) that changed since CHANGEID,
or with --all the allocated areas, in bytes.
--format csv    one "offset,length" line per area (the seed's format)
--format json   (default) areas plus VM, disk and snapshot
--snapshot      query at an existing snapshot (needed for a powered-on VM)
--take-snapshot create a snapshot, print the areas and every disk's new ChangeId (JSON),
                then remove the snapshot (always, also on errors and Ctrl-C)

A ChangeId the server refuses fails with CBT_CHANGEID_INVALID: take a full read (--all).

${connectionUsage}`;

export const changesCommand: Command = {
  name: 'changes',
  summary: 'print the changed or allocated areas of a disk (CSV or JSON)',
  usage,
  async run(args, io) {
    const { values } = parseFlags({
      args,
      strict: true,
      options: {
        ...connectionFlags,
        vm: { type: 'string' },
        disk: { type: 'string' },
        since: { type: 'string' },
        all: { type: 'boolean', default: false },
        snapshot: { type: 'string' },
        'take-snapshot': { type: 'boolean', default: false },
        format: { type: 'string', default: 'json' },
      },
    });
    if (!values.vm || !values.disk) throw new UsageError(`changes needs --vm and --disk\n\n${usage}`);
    if ((values.since === undefined) === !values.all) throw new UsageError(`changes needs exactly one of --since CHANGEID and --all\n\n${usage}`);
    if (values.snapshot !== undefined && values['take-snapshot']) throw new UsageError('--snapshot and --take-snapshot exclude each other');
    if (values.format !== 'csv' && values.format !== 'json') throw new UsageError(`--format must be csv or json, got "${values.format}"`);
    if (values.format === 'csv' && values['take-snapshot']) throw new UsageError('--take-snapshot prints JSON (areas and the new ChangeIds); drop --format csv');
    if (values.since === '') throw new UsageError('--since is empty');
    const diskKey = parsePositiveInteger(values.disk, '--disk');
    const vm = parseVmSelector(values.vm);
    const output = await withSession(values, io, (session) =>
      listChanges({ session, vm, diskKey, since: values.since ?? ALLOCATED_AREAS, snapshot: values.snapshot, takeSnapshot: values['take-snapshot'], signal: io.signal, onEvent: (line) => io.stderr.write(`${line}
`) }),
    );
    if (values.format === 'csv') io.stdout.write(formatAreasCsv(output.areas));
    else writeJsonDocument(io, { ...documentHeader('changes'), ...output });
    return ExitCode.ok;
  },
};
