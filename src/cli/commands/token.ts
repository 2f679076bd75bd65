// `vcbt token create --config FILE [--read-only] [--note TEXT]`: makes an API token for the
// daemon (docs/api.md), prints it once on stdout and stores only its hash in the catalog.
import { UsageError } from '../../errors.ts';
import { loadConfig } from '../../service/config.ts';
import { openCatalog } from '../../service/catalog/open.ts';
import { createToken } from '../../service/tokens.ts';
import { ExitCode, type Command } from '../command.ts';
import { parseFlags } from '../flags.ts';

const usage = `usage: vcbt token create --config FILE [--read-only] [--note TEXT]

  Creates an API token for vcbt serve and prints it once on stdout; the catalog keeps only
  its SHA-256, so a lost token cannot be shown again (create another).

  --read-only     the token may read everything and start nothing
  --note TEXT     who or what uses it (stored with it)
  --config FILE   the service configuration (its catalog.path holds the tokens)`;

export const tokenCommand: Command = {
  name: 'token',
  summary: 'create an API token for the daemon (shown once, stored hashed)',
  usage,
  async run(args, io) {
    const { values, positionals } = parseFlags({
      args,
      strict: true,
      allowPositionals: true,
      options: { config: { type: 'string' }, 'read-only': { type: 'boolean', default: false }, note: { type: 'string', default: '' } },
    });
    if (positionals.length !== 1 || positionals[0] !== 'create') throw new UsageError(`token wants the action create\n\n${usage}`);
    if (!values.config) throw new UsageError(`token create needs --config FILE\n\n${usage}`);
    const config = await loadConfig(values.config);
    const catalog = openCatalog(config.catalog);
    try {
      const { token, record } = await createToken(catalog, { readOnly: values['read-only'], note: values.note });
      io.stdout.write(`${token}\n`);
      io.stderr.write(`token ${record.id} created${record.readOnly ? ' (read-only)' : ''}; it is shown only now\n`);
      return ExitCode.ok;
    } finally {
      await catalog.close();
    }
  },
};
