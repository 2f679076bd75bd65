// config.json (docs/format.md, "Config"): the repository's identity and fixed parameters.
// Written once by init, never rewritten. Plain JSON even when encrypted (it holds only the
// sealed key and the scrypt parameters needed to unseal it).
import { randomBytes } from 'node:crypto';
import { maxScryptMemoryBytes, scryptMemoryBytes, type SealedKeyConfig } from './crypto.ts';
import { RepositoryError } from './errors.ts';
import { check, nullable, object, oneOf, pattern, safeInteger, string, type Shape } from './schema.ts';
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
  /**
   * Object Lock retention of every restore point's blobs, in days (object stores with Object
   * Lock only; absent in repositories without it and in those made before it existed).
   */
  immutableDays?: number;
}

export function newConfig(chunkBytes: number, compressionLevel: number, encryption: SealedKeyConfig | null, immutableDays = 0): RepositoryConfig {
  if (!isValidChunkSize(chunkBytes)) {
    throw new RepositoryError('REPO_INVALID_ARGUMENT', `chunk size ${chunkBytes} must be a multiple of 4096 between ${minChunkBytes} and ${maxChunkBytes} bytes`, { chunkBytes });
  }
  checkImmutableDays(immutableDays);
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
    ...(immutableDays > 0 ? { immutableDays } : {}),
  };
}

export const maxImmutableDays = 36_500;

export function checkImmutableDays(days: number): void {
  if (!Number.isSafeInteger(days) || days < 0 || days > maxImmutableDays) {
    throw new RepositoryError('REPO_INVALID_ARGUMENT', `immutable days ${days} must be a whole number from 0 to ${maxImmutableDays}`, { immutableDays: days });
  }
}

export function isValidChunkSize(chunkBytes: unknown): chunkBytes is number {
  return Number.isSafeInteger(chunkBytes) && (chunkBytes as number) >= minChunkBytes && (chunkBytes as number) <= maxChunkBytes && (chunkBytes as number) % minChunkBytes === 0;
}

const base64 = pattern(/^[A-Za-z0-9+/]+={0,2}$/, 'base64');
const encryptionShape: Shape = object({
  kdf: oneOf('scrypt'),
  scrypt: object({ N: safeInteger(2), r: safeInteger(1), p: safeInteger(1), saltBase64: base64 }),
  cipher: oneOf('aes-256-gcm'),
  sealedKeyBase64: base64,
});

/** The documented shape (docs/format.md, "config.json"), format and version checked before. */
const configShape: Shape = object({
  id: string,
  createdAt: string,
  compression: object({ algorithm: oneOf('zstd'), level: safeInteger(-7, 19) }),
  encryption: nullable(encryptionShape),
});
const immutableDaysShape: Shape = object({ immutableDays: safeInteger(1, maxImmutableDays) });

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
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new RepositoryError('REPO_CORRUPT', `repository config ${file} is ${JSON.stringify(config)}, not a config object`, { file });
  if (config.format !== 'vcbt-repository') throw new RepositoryError('REPO_FORMAT', `${file} is not a vcbt repository config`, { file });
  if (config.version !== repositoryVersion) throw new RepositoryError('REPO_FORMAT', `${file} has repository version ${config.version}; this vcbt reads version ${repositoryVersion}`, { file, version: config.version });
  if (!isValidChunkSize(config.chunkBytes)) {
    throw new RepositoryError('REPO_FORMAT', `${file} has chunkBytes ${JSON.stringify(config.chunkBytes)}; a chunk size is a multiple of 4096 between ${minChunkBytes} and ${maxChunkBytes} bytes`, { file, chunkBytes: config.chunkBytes });
  }
  const problem = check(config, configShape) ?? (config.immutableDays === undefined ? undefined : check(config, immutableDaysShape));
  if (problem) throw new RepositoryError('REPO_CORRUPT', `repository config ${file} is damaged: ${problem}`, { file });
  if (config.encryption) {
    const { N, r, p } = config.encryption.scrypt;
    if ((N & (N - 1)) !== 0 || scryptMemoryBytes(config.encryption.scrypt) > maxScryptMemoryBytes) {
      throw new RepositoryError('REPO_FORMAT', `${file} asks for scrypt N=${N} r=${r} p=${p}: not a power of two or more than ${maxScryptMemoryBytes >> 20} MiB of memory to derive the key`, { file, N, r, p });
    }
  }
  return config;
}
