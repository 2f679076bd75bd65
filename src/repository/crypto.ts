// Repository cryptography.
//
// Vocabulary
// - Master keys: 64 random bytes made at `init`: dataKey (32, AES-256-GCM for chunks and
//   metadata) and idKey (32, HMAC-SHA-256 key that names chunks). Never stored in the clear.
// - Sealed key: the master keys encrypted with AES-256-GCM under a key derived from the
//   passphrase by scrypt (N, r, p and salt stored in config.json). A wrong passphrase fails
//   the GCM tag check: REPO_WRONG_PASSPHRASE.
// - Box: nonce (12 random bytes) || ciphertext || tag (16). `aad` binds a box to its role
//   (chunk id, segment number, file kind) so boxes cannot be swapped between places.
//
// Random 96-bit nonces under one key are safe for well over 2^32 boxes' worth of chunks at
// the sizes a backup repository reaches (NIST's bound is 2^32 invocations per key: ~4 PiB of
// 1 MiB chunks); beyond that a key rotation would be needed.
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, scrypt as scryptCallback } from 'node:crypto';
import { RepositoryError } from './errors.ts';

export const nonceBytes = 12;
export const tagBytes = 16;
export const boxOverheadBytes = nonceBytes + tagBytes;

export interface MasterKeys {
  readonly dataKey: Buffer;
  readonly idKey: Buffer;
}

export interface ScryptParams {
  readonly N: number;
  readonly r: number;
  readonly p: number;
  readonly saltBase64: string;
}

export interface SealedKeyConfig {
  readonly kdf: 'scrypt';
  readonly scrypt: ScryptParams;
  readonly cipher: 'aes-256-gcm';
  /** base64 box of dataKey || idKey under the passphrase-derived key. */
  readonly sealedKeyBase64: string;
}

// N = 2^17, r = 8: ~128 MiB and a fraction of a second per open; deliberately slow for guessing.
export const defaultScrypt = { N: 1 << 17, r: 8, p: 1 } as const;

/** What scrypt allocates for these parameters (128 * N * r, plus p blocks); init and open both refuse more than the bound below. */
export function scryptMemoryBytes(params: { N: number; r: number; p: number }): number {
  return 128 * params.N * params.r + 128 * params.r * params.p;
}

/** 1 GiB: eight times the default cost; a config asking for more is refused (REPO_FORMAT), never allocated. */
export const maxScryptMemoryBytes = 1 << 30;

function deriveKey(passphrase: string, params: ScryptParams): Promise<Buffer> {
  const maxmem = scryptMemoryBytes(params) + 32 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    scryptCallback(passphrase, Buffer.from(params.saltBase64, 'base64'), 32, { N: params.N, r: params.r, p: params.p, maxmem }, (error, key) => {
      if (error) reject(error);
      else resolve(key);
    });
  });
}

const keyAad = Buffer.from('vcbt-repository-master-key-v1');

export async function createSealedKey(passphrase: string, scryptCost: { N: number; r: number; p: number } = defaultScrypt): Promise<{ keys: MasterKeys; config: SealedKeyConfig }> {
  const material = randomBytes(64);
  const scrypt: ScryptParams = { ...scryptCost, saltBase64: randomBytes(16).toString('base64') };
  const wrapKey = await deriveKey(passphrase, scrypt);
  const sealed = seal(wrapKey, material, keyAad);
  return {
    keys: { dataKey: material.subarray(0, 32), idKey: material.subarray(32, 64) },
    config: { kdf: 'scrypt', scrypt, cipher: 'aes-256-gcm', sealedKeyBase64: sealed.toString('base64') },
  };
}

export async function openSealedKey(passphrase: string, config: SealedKeyConfig, repoPath: string): Promise<MasterKeys> {
  let wrapKey: Buffer;
  try {
    wrapKey = await deriveKey(passphrase, config.scrypt);
  } catch (error) {
    throw new RepositoryError('REPO_FORMAT', `repository ${repoPath}: its scrypt parameters cannot derive a key: ${(error as Error).message}`, { repoPath }, { cause: error });
  }
  let material: Buffer;
  try {
    material = open(wrapKey, Buffer.from(config.sealedKeyBase64, 'base64'), keyAad);
  } catch {
    throw new RepositoryError('REPO_WRONG_PASSPHRASE', `wrong passphrase for the encrypted repository ${repoPath}`, { repoPath });
  }
  return { dataKey: material.subarray(0, 32), idKey: material.subarray(32, 64) };
}

/** AES-256-GCM box: nonce || ciphertext || tag. */
export function seal(key: Buffer, plaintext: Uint8Array, aad: Uint8Array): Buffer {
  const nonce = randomBytes(nonceBytes);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(aad);
  const body = cipher.update(plaintext);
  const final = cipher.final();
  return Buffer.concat([nonce, body, final, cipher.getAuthTag()]);
}

/** Opens a box; throws (a plain Error) when the tag does not match: callers turn that into REPO_CORRUPT. */
export function open(key: Buffer, box: Uint8Array, aad: Uint8Array): Buffer {
  if (box.length < boxOverheadBytes) throw new Error('box shorter than its nonce and tag');
  const nonce = box.subarray(0, nonceBytes);
  const tag = box.subarray(box.length - tagBytes);
  const decipher = createDecipheriv('aes-256-gcm', key, nonce);
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  return Buffer.concat([decipher.update(box.subarray(nonceBytes, box.length - tagBytes)), decipher.final()]);
}

/** A chunk's id: SHA-256 of its plaintext, or HMAC-SHA-256 under idKey when encrypted. */
export function chunkId(plaintext: Uint8Array, idKey: Buffer | undefined): Buffer {
  return idKey ? createHmac('sha256', idKey).update(plaintext).digest() : createHash('sha256').update(plaintext).digest();
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}
