// `vcbt init`: create a backup repository.
import { UsageError } from '../../errors.ts';
import { defaultChunkBytes, defaultCompressionLevel, passphraseFrom, Repository } from '../../jobs/repository-admin.ts';
import { ExitCode, type Command } from '../command.ts';
import { writeJsonDocument } from '../json-output.ts';
import { documentHeader } from '../json-documents.ts';
import { parseFlags, parseSize } from '../flags.ts';

const usage = `usage: vcbt init --repo DIR [--chunk-size SIZE] [--zstd-level N] [--encrypt [--passphrase-file FILE]] [--json]

Creates a repository in DIR (absent or empty). Disks are cut into chunks of SIZE
(default ${defaultChunkBytes / 1024}K; 4K..64M, a multiple of 4K), compressed with zstd at level N
(default ${defaultCompressionLevel}). With --encrypt, chunks and metadata are encrypted with a key sealed by the
passphrase from --passphrase-file or the VCBT_PASSPHRASE environment variable.`;

export const initCommand: Command = {
  name: 'init',
  summary: 'create a backup repository (chunk size, compression, optional encryption)',
  usage,
  async run(args, io) {
    const { values } = parseFlags({
      args,
      strict: true,
      options: {
        repo: { type: 'string' },
        'chunk-size': { type: 'string' },
        'zstd-level': { type: 'string' },
        encrypt: { type: 'boolean', default: false },
        'passphrase-file': { type: 'string' },
        json: { type: 'boolean', default: false },
      },
    });
    if (!values.repo) throw new UsageError('--repo is required');
    const chunkBytes = values['chunk-size'] === undefined ? undefined : parseSize(values['chunk-size'], '--chunk-size');
    const level = values['zstd-level'];
    if (level !== undefined && !/^-?\d+$/.test(level)) throw new UsageError(`--zstd-level must be a whole number, got "${level}"`);
    let passphrase: string | undefined;
    if (values.encrypt) {
      passphrase = await passphraseFrom(values['passphrase-file'], io.env);
      if (passphrase === undefined) throw new UsageError('--encrypt needs a passphrase: set VCBT_PASSPHRASE or give --passphrase-file');
    } else if (values['passphrase-file'] !== undefined) {
      throw new UsageError('--passphrase-file without --encrypt: add --encrypt to create an encrypted repository');
    }
    const config = await Repository.init(values.repo, { chunkBytes, compressionLevel: level === undefined ? undefined : Number(level), passphrase });
    const summary = { repo: values.repo, id: config.id, chunkBytes: config.chunkBytes, compression: config.compression, encrypted: config.encryption !== null };
    if (values.json) writeJsonDocument(io, { ...documentHeader('init'), ...summary });
    else io.stdout.write(
      `created repository ${values.repo} (id ${config.id}, chunks of ${config.chunkBytes} bytes, zstd level ${config.compression.level}, ${summary.encrypted ? 'encrypted' : 'not encrypted'})\n`,
    );
    return ExitCode.ok;
  },
};
