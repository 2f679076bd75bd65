// `vcbt migrate`: move a format-v1 repository's chunk files into packs (docs/format.md, "Versioning").
import { migrateChunkFiles } from '../../jobs/repository-admin.ts';
import { parseFlags } from '../flags.ts';
import { ExitCode, type Command } from '../command.ts';
import { repositoryFlags, withRepository } from '../repository-flags.ts';

const usage = `usage: vcbt migrate --repo DIR [--passphrase-file FILE]

Moves every chunk file of a format-version-1 repository (chunks/<2 hex>/<id>) into packs
(format version 2: 16 MiB files of many chunks, docs/format.md). Each chunk file is decoded
first (a damaged one stays in place for vcbt verify), copied unchanged into a pack, and
deleted only once its pack and pack index are durable; an interrupted run is resumed by
running it again. config.json says version 2 afterwards (older vcbt versions then refuse
the repository). Needs the exclusive lock (no backup running). Not needed for a repository
to keep working: a version-1 repository becomes version 2 with its first backup and keeps
reading its chunk files.`;

export const migrateCommand: Command = {
  name: 'migrate',
  summary: "move a format-v1 repository's chunk files into packs (format v2)",
  usage,
  async run(args, io) {
    const { values } = parseFlags({ args, strict: true, options: { ...repositoryFlags } });
    return withRepository(values, io, async (repo) => {
      const report = await migrateChunkFiles(repo);
      io.stdout.write(`packed ${report.chunkFilesPacked} chunk files (${report.bytesPacked} bytes) into ${report.packsWritten} packs; removed ${report.chunkFilesAlreadyPacked} already packed\n`);
      for (const name of report.chunkFilesDamaged) io.stdout.write(`damaged chunk file ${name} left in place (run vcbt verify)\n`);
      return report.chunkFilesDamaged.length > 0 ? ExitCode.failure : ExitCode.ok;
    });
  },
};
