// Key files (docs/format.md, "Key files") and the rule that encryption cannot be switched off.
//
// An encrypted repository keeps a copy of config.json's `encryption` (the scrypt parameters
// and the sealed master key) in keys/<repository id>.json, written at init before config.json.
// config.json alone then cannot make the repository plain: editing `"encryption": null` into
// it would otherwise make vcbt list nothing and write the next backup in plaintext, with the
// passphrase silently ignored. Before any use, a repository whose config says "plain" is
// checked for evidence of the opposite, and each is REPO_ENCRYPTION_MISMATCH:
// - it has key files;
// - a passphrase was given (whoever gives one believes the repository is encrypted);
// - its newest manifest is encrypted (repositories made before key files existed).
// An encrypted config must agree with its key file (same sealed key).
import type { RepositoryConfig } from './config.ts';
import { RepositoryError } from './errors.ts';
import { isBlobNotFound, type BlobRef, type Storage } from './storage/storage.ts';

const encryptedManifestMagic = Buffer.from('VCBTENC1');

export function keyRef(repositoryId: string): BlobRef {
  return { kind: 'key', name: repositoryId };
}

export function encodeKeyFile(config: RepositoryConfig): string {
  return `${JSON.stringify({ format: 'vcbt-key', version: 1, repositoryId: config.id, encryption: config.encryption }, null, 2)}\n`;
}

function mismatch(storage: Storage, why: string): RepositoryError {
  return new RepositoryError(
    'REPO_ENCRYPTION_MISMATCH',
    `repository ${storage.location}: its config.json says it is not encrypted, but ${why}; refusing to read or write it in plaintext (restore config.json from a copy, or check --repo)`,
    { repoPath: storage.location },
  );
}

export async function checkEncryptionConsistent(storage: Storage, config: RepositoryConfig, passphraseGiven: boolean): Promise<void> {
  const keyNames: string[] = [];
  for await (const name of storage.list('key')) keyNames.push(name);
  if (config.encryption === null) {
    if (keyNames.length > 0) throw mismatch(storage, `it has key files (${keyNames.map((n) => storage.describe(keyRef(n))).join(', ')})`);
    if (passphraseGiven) throw mismatch(storage, 'a passphrase was given for it');
    let newest: string | undefined;
    for await (const id of storage.list('point')) if (newest === undefined || id > newest) newest = id;
    if (newest !== undefined) {
      const head = await storage.getRange({ kind: 'point', name: newest }, 0, encryptedManifestMagic.length).catch((error: unknown) => {
        if (isBlobNotFound(error)) return Buffer.alloc(0);
        throw error;
      });
      if (head.equals(encryptedManifestMagic)) throw mismatch(storage, `its restore point ${newest} is encrypted`);
    }
    return;
  }
  if (keyNames.length === 0) return; // made before key files existed
  if (!keyNames.includes(config.id)) {
    throw new RepositoryError('REPO_ENCRYPTION_MISMATCH', `repository ${storage.location}: config.json names repository ${config.id} but its key files are of ${keyNames.join(', ')}`, { repoPath: storage.location });
  }
  let stored: { encryption?: { sealedKeyBase64?: unknown } } | null;
  try {
    stored = JSON.parse((await storage.get(keyRef(config.id), { maxBytes: 64 * 1024 })).toString('utf8')) as typeof stored;
  } catch (error) {
    if (error instanceof RepositoryError) throw error;
    throw new RepositoryError('REPO_CORRUPT', `key file ${storage.describe(keyRef(config.id))} is not JSON`, { file: storage.describe(keyRef(config.id)) });
  }
  if (stored?.encryption?.sealedKeyBase64 !== config.encryption.sealedKeyBase64) {
    throw new RepositoryError('REPO_ENCRYPTION_MISMATCH', `repository ${storage.location}: the sealed key in config.json differs from ${storage.describe(keyRef(config.id))}`, { repoPath: storage.location });
  }
}
