// Where a repository passphrase comes from: a file (first line, trailing newline dropped) or
// the VCBT_PASSPHRASE environment variable - never argv. undefined when neither is given.
import { readFile } from 'node:fs/promises';
import { RepositoryError } from './errors.ts';

export async function passphraseFrom(file: string | undefined, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  if (file !== undefined) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      throw new RepositoryError('REPO_INVALID_ARGUMENT', `cannot read --passphrase-file ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, { file });
    }
    const passphrase = text.replace(/\r?\n$/, '');
    if (passphrase === '') throw new RepositoryError('REPO_INVALID_ARGUMENT', `--passphrase-file ${file} is empty`, { file });
    return passphrase;
  }
  const fromEnv = env.VCBT_PASSPHRASE;
  return fromEnv === undefined || fromEnv === '' ? undefined : fromEnv;
}
