// The flags of commands that work on a repository: --repo DIR and --passphrase-file FILE
// (or VCBT_PASSPHRASE) for an encrypted one, and opening it for the command's duration.
import { UsageError } from '../errors.ts';
import { parsePositiveInteger } from './flags.ts';
import { passphraseFrom, Repository } from '../jobs/repository-admin.ts';
import type { CommandIo } from './command.ts';

export const repositoryFlags = {
  repo: { type: 'string' },
  'passphrase-file': { type: 'string' },
} as const;

export const repositoryUsage = `repository:
  --repo DIR|URL         the repository (see vcbt init): a directory, or s3://BUCKET/PREFIX
                         (endpoint and credentials from the environment: docs/object-storage.md)
  --passphrase-file FILE passphrase of an encrypted repository (else VCBT_PASSPHRASE)`;

export interface RepositoryValues {
  repo?: string;
  'passphrase-file'?: string;
}

/** Opens the repository named by the flags, runs `work`, and always closes it. */
export async function withRepository<T>(values: RepositoryValues, io: CommandIo, work: (repository: Repository) => Promise<T>): Promise<T> {
  if (!values.repo) throw new UsageError('--repo DIR|URL is required');
  const repository = await Repository.open(values.repo, { passphrase: await passphraseFrom(values['passphrase-file'], io.env), env: io.env });
  try {
    return await work(repository);
  } finally {
    await repository.close();
  }
}

/** The flags naming one disk of one restore point (restore, export). */
export const restorePointDiskFlags = {
  point: { type: 'string' },
  vm: { type: 'string' },
  disk: { type: 'string' },
} as const;

export interface RestorePointDiskValues {
  point?: string;
  vm?: string;
  disk?: string;
}

/** --point ID|latest (latest needs --vm) and --disk KEY, checked; the point is resolved later. */
export function parseRestorePointDisk(values: RestorePointDiskValues, command: string, usage: string): { point: string; vm: string | undefined; deviceKey: number } {
  if (!values.point) throw new UsageError(`${command} needs --point ID (or latest with --vm)\n\n${usage}`);
  if (!values.disk) throw new UsageError(`${command} needs --disk KEY\n\n${usage}`);
  return { point: values.point, vm: values.vm, deviceKey: parsePositiveInteger(values.disk, '--disk') };
}
