// config.json (docs/format.md, "Config"): the repository's identity and fixed parameters.
// Written once by init, never rewritten. Plain JSON even when encrypted (it holds only the
// sealed key and the scrypt parameters needed to unseal it).
import { randomBytes } from 'node:crypto';
import type { SealedKeyConfig } from './crypto.ts';
import { RepositoryError } from './errors.ts';
import { configRef, isBlobNotFound, type Storage } from './storage/storage.ts';

export const repositoryVersion = 1;
export const minChunkBytes = 4096;
export const maxChunkBytes = 64 << 20;
/** Far above any real config (a few hundred bytes). */
const maxConfigBytes = 64 * 1024;

export interface RepositoryConfig {
  format: 'vcbt-repository';
  version: number;
  id: string;
  createdAt: string;
  chunkBytes: number;
  compression: { algorithm: 'zstd'; level: number };
  encryption: SealedKeyConfig | null;
}

export function newConfig(chunkBytes: number, compressionLevel: number, encryption: SealedKeyConfig | null): RepositoryConfig {
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < minChunkBytes || chunkBytes > maxChunkBytes || chunkBytes % minChunkBytes !== 0) {
    throw new RepositoryError('REPO_INVALID_ARGUMENT', `chunk size ${chunkBytes} must be a multiple of 4096 between ${minChunkBytes} and ${maxChunkBytes} bytes`, { chunkBytes });
  }
  if (!Number.isInteger(compressionLevel) || compressionLevel < -7 || compressionLevel > 19) {
    throw new RepositoryError('REPO_INVALID_ARGUMENT', `zstd level ${compressionLevel} must be between -7 and 19`, { compressionLevel });
  }
  return {
    format: 'vcbt-repository',
    version: repositoryVersion,
    id: randomBytes(16).toString('hex'),
    createdAt: new Date().toISOString(),
    chunkBytes,
    compression: { algorithm: 'zstd', level: compressionLevel },
    encryption,
  };
}

export async function readConfig(storage: Storage): Promise<RepositoryConfig> {
  const file = storage.describe(configRef);
  const repoPath = storage.location;
  let text: string;
  try {
    text = (await storage.get(configRef, { maxBytes: maxConfigBytes })).toString('utf8');
  } catch (error) {
    if (isBlobNotFound(error)) throw new RepositoryError('REPO_NOT_FOUND', `no repository at ${repoPath} (missing ${file})`, { repoPath }, { cause: error });
    throw error;
  }
  let config: RepositoryConfig;
  try {
    config = JSON.parse(text) as RepositoryConfig;
  } catch (error) {
    throw new RepositoryError('REPO_CORRUPT', `repository config ${file} is not JSON`, { file }, { cause: error });
  }
  if (config.format !== 'vcbt-repository') throw new RepositoryError('REPO_FORMAT', `${file} is not a vcbt repository config`, { file });
  if (config.version !== repositoryVersion) throw new RepositoryError('REPO_FORMAT', `${file} has repository version ${config.version}; this vcbt reads version ${repositoryVersion}`, { file, version: config.version });
  if (!Number.isSafeInteger(config.chunkBytes) || config.chunkBytes < minChunkBytes) throw new RepositoryError('REPO_CORRUPT', `${file} has an invalid chunkBytes`, { file });
  return config;
}
