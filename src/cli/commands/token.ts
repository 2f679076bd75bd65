// `vcbt token create|list|revoke --config FILE`: API tokens of the daemon (docs/api.md). create
// prints the token once on stdout and stores only its hash in the catalog; list shows ids,
// kinds, dates and notes (never a token or its hash); revoke deletes one, which the daemon
// refuses from its next request on.
import { UsageError } from '../../errors.ts';
import { loadConfig } from '../../service/config.ts';
import { openCatalog } from '../../service/catalog/open.ts';
import { createToken, listTokens, revokeToken } from '../../service/tokens.ts';
import { ExitCode, type Command } from '../command.ts';
import { parseFlags } from '../flags.ts';
import { writeJsonDocument } from '../json-output.ts';
import { documentHeader } from '../json-documents.ts';

const usage = `usage: vcbt token create --config FILE [--read-only] [--note TEXT]
       vcbt token list --config FILE [--json]
       vcbt token revoke ID --config FILE

  create   makes an API token for vcbt serve and prints it once on stdout; the catalog keeps
           only its SHA-256, so a lost token cannot be shown again (create another)
  list     the tokens: id, read-only or not, when created, note (never the token)
  revoke   deletes token ID: the daemon refuses it from the next request on

  --read-only     the token may read everything and start nothing
  --note TEXT     who or what uses it (stored with it)
  --config FILE   the service configuration (its catalog.path holds the tokens)`;

export const tokenCommand: Command = {
  name: 'token',
  summary: 'create, list or revoke API tokens of the daemon (shown once, stored hashed)',
  usage,
  async run(args, io) {
    const { values, positionals } = parseFlags({
      args,
      strict: true,
      allowPositionals: true,
      options: { config: { type: 'string' }, 'read-only': { type: 'boolean', default: false }, note: { type: 'string', default: '' }, json: { type: 'boolean', default: false } },
    });
    const [action, id, ...extra] = positionals;
    if (action !== 'create' && action !== 'list' && action !== 'revoke') throw new UsageError(`token wants an action: create, list or revoke\n\n${usage}`);
    if (extra.length > 0 || (action === 'revoke') !== (id !== undefined)) throw new UsageError(`token ${action} ${action === 'revoke' ? 'wants one token ID' : 'takes no argument'}\n\n${usage}`);
    if (action === 'revoke' && !/^\d{1,15}$/.test(id as string)) throw new UsageError(`token revoke wants a token id (a number; vcbt token list shows them), not "${id}"`);
    if (!values.config) throw new UsageError(`token ${action} needs --config FILE\n\n${usage}`);
    const config = await loadConfig(values.config);
    const catalog = openCatalog(config.catalog);
    try {
      if (action === 'create') {
        const { token, record } = await createToken(catalog, { readOnly: values['read-only'], note: values.note });
        io.stdout.write(`${token}\n`);
        io.stderr.write(`token ${record.id} created${record.readOnly ? ' (read-only)' : ''}; it is shown only now\n`);
      } else if (action === 'list') {
        const tokens = await listTokens(catalog);
        if (values.json) writeJsonDocument(io, { ...documentHeader('token-list'), tokens });
        else for (const t of tokens) io.stdout.write(`${String(t.id).padStart(4)}  ${t.readOnly ? 'read-only' : 'full     '}  ${t.createdAt}  ${t.note}\n`);
      } else {
        await revokeToken(catalog, Number(id));
        io.stderr.write(`token ${id} revoked\n`);
      }
      return ExitCode.ok;
    } finally {
      await catalog.close();
    }
  },
};
