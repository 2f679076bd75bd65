// Secrets of the configuration (vSphere passwords, repository passphrases): read from a file
// or an environment variable when a run needs them, never kept in the configuration itself,
// never logged. `config check` only looks whether they are there (secretWarning).
import { access, constants, readFile } from 'node:fs/promises';
import { VcbtError } from '../errors.ts';
import type { SecretSource } from './config.ts';

export function describeSecret(source: SecretSource): string {
  return 'file' in source ? `file ${source.file}` : `environment variable ${source.env}`;
}

/** The secret's text (a file's trailing newline dropped); SECRET_UNREADABLE when missing or empty. */
export async function readSecret(source: SecretSource, env: NodeJS.ProcessEnv, what: string): Promise<string> {
  if ('env' in source) {
    const value = env[source.env];
    if (value === undefined || value === '') throw new VcbtError('SECRET_UNREADABLE', `${what}: the environment variable ${source.env} is not set`, { env: source.env });
    return value;
  }
  let text: string;
  try {
    text = await readFile(source.file, 'utf8');
  } catch (error) {
    const errno = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new VcbtError('SECRET_UNREADABLE', `${what}: cannot read ${source.file} (${errno})`, { file: source.file, errno }, { cause: error });
  }
  const secret = text.replace(/\r?\n$/, '');
  if (secret === '') throw new VcbtError('SECRET_UNREADABLE', `${what}: ${source.file} is empty`, { file: source.file });
  return secret;
}

/** Why the secret would not be readable now (without reading it), or undefined. */
export async function secretWarning(source: SecretSource, env: NodeJS.ProcessEnv, what: string): Promise<string | undefined> {
  if ('env' in source) return env[source.env] ? undefined : `${what}: the environment variable ${source.env} is not set here`;
  try {
    await access(source.file, constants.R_OK);
    return undefined;
  } catch (error) {
    return `${what}: ${source.file} is not readable here (${(error as NodeJS.ErrnoException).code ?? String(error)})`;
  }
}
