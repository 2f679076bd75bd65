// `vcbt init`: create a backup repository.
import { UsageError } from '../../errors.ts';
import { defaultChunkBytes, defaultCompressionLevel, passphraseFrom, Repository } from '../../jobs/repository-admin.ts';
import { ExitCode, type Command } from '../command.ts';
import { writeJsonDocument } from '../json-output.ts';
import { documentHeader } from '../json-documents.ts';
import { parseFlags, parsePositiveInteger, parseSize } from '../flags.ts';

const usage = `usage: vcbt init --repo DIR|s3://BUCKET/PREFIX [--chunk-size SIZE] [--zstd-level N] [--encrypt [--passphrase-file FILE]]
                 [--immutable-days N] [--json]

Creates a repository in DIR (absent or empty), or under PREFIX of an S3 bucket (endpoint,
region and credentials from the environment or the shared credentials file, never from the
command line; docs/object-storage.md). Disks are cut into chunks of SIZE
(default ${defaultChunkBytes / 1024}K; 4K..64M, a multiple of 4K), compressed with zstd at level N
(default ${defaultCompressionLevel}). With --encrypt, chunks and metadata are encrypted with a key sealed by the
passphrase from --passphrase-file or the VCBT_PASSPHRASE environment variable.
With --immutable-days N (a bucket created with S3 Object Lock), every object of every restore
point is written locked (COMPLIANCE retention) for N days: no one, vcbt's prune included, can
delete it before then.`;

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
        'immutable-days': { type: 'string' },
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
    const immutableDays = values['immutable-days'] === undefined ? undefined : parsePositiveInteger(values['immutable-days'], '--immutable-days');
    const config = await Repository.init(values.repo, { chunkBytes, compressionLevel: level === undefined ? undefined : Number(level), passphrase, immutableDays, env: io.env });
    const summary = { repo: values.repo, id: config.id, chunkBytes: config.chunkBytes, compression: config.compression, encrypted: config.encryption !== null, immutableDays: config.immutableDays ?? 0 };
    if (values.json) writeJsonDocument(io, { ...documentHeader('init'), ...summary });
    else io.stdout.write(
      `created repository ${values.repo} (id ${config.id}, chunks of ${config.chunkBytes} bytes, zstd level ${config.compression.level}, ${summary.encrypted ? 'encrypted' : 'not encrypted'}${summary.immutableDays ? `, restore points immutable for ${summary.immutableDays} days` : ''})\n`,
    );
    return ExitCode.ok;
  },
};
