// API tokens: `vcbt token create` makes one, prints it once, and the catalog keeps only its
// SHA-256 (a stolen catalog yields no usable token). A token is `vcbt_` and 43 base64url
// characters (32 random bytes). Read-only tokens may read everything and act on nothing.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { VcbtError } from '../errors.ts';
import type { Catalog, TokenRecord } from './catalog/catalog.ts';

const PREFIX = 'vcbt_';

export function tokenHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Creates a token, stores its hash; answers the token (shown once) and its record. */
export async function createToken(catalog: Catalog, options: { readOnly: boolean; note: string }): Promise<{ token: string; record: TokenRecord }> {
  const token = PREFIX + randomBytes(32).toString('base64url');
  const hash = tokenHash(token);
  const createdAt = new Date().toISOString();
  const id = await catalog.addToken({ hash, readOnly: options.readOnly, createdAt, note: options.note });
  return { token, record: { id, hash, readOnly: options.readOnly, createdAt, note: options.note } };
}

/** The token's record when it is one the catalog knows, else undefined. */
export async function checkToken(catalog: Catalog, token: string): Promise<TokenRecord | undefined> {
  if (!token.startsWith(PREFIX) || token.length > 200) return undefined;
  const hash = tokenHash(token);
  const record = await catalog.tokenByHash(hash);
  if (!record) return undefined;
  // The lookup is by hash, so timing reveals nothing of the token; compare anyway in constant time.
  return timingSafeEqual(Buffer.from(record.hash, 'hex'), Buffer.from(hash, 'hex')) ? record : undefined;
}

/** What `vcbt token list` shows of a token: never the token, never its hash. */
export type TokenInfo = Omit<TokenRecord, 'hash'>;

export async function listTokens(catalog: Catalog): Promise<TokenInfo[]> {
  return (await catalog.tokens()).map(({ hash: _, ...info }) => info);
}

/** Deletes token `id`; TOKEN_NOT_FOUND when there is none. */
export async function revokeToken(catalog: Catalog, id: number): Promise<void> {
  if (!(await catalog.deleteToken(id))) throw new VcbtError('TOKEN_NOT_FOUND', `no API token ${id} in the catalog (vcbt token list shows them)`, { tokenId: id });
}
