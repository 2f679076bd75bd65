// `vcbt config check FILE`: validates a service configuration file (docs/service.md) without
// touching anything: no vSphere login, no repository opened, no secret read. Exit 0 when
// valid (warnings name what this machine lacks), 2 when invalid (every problem, file:line:column).
import { UsageError } from '../../errors.ts';
import { checkConfig } from '../../service/check.ts';
import { formatProblem } from '../../service/config.ts';
import { ExitCode, type Command } from '../command.ts';
import { parseFlags } from '../flags.ts';
import { writeJsonDocument } from '../json-output.ts';
import { documentHeader } from '../json-documents.ts';

const usage = `usage: vcbt config check FILE [--json]

Validates the service configuration FILE (servers, repositories, jobs; docs/service.md)
without touching anything: no vSphere login, no repository opened, no secret read. Every
problem is printed as FILE:LINE:COLUMN: key: message. Warnings name what only this machine
lacks (a password file, an environment variable, a repository directory).

Exit codes: 0 valid, 2 invalid.`;

export const configCommand: Command = {
  name: 'config',
  summary: 'validate a service configuration file (config check FILE)',
  usage,
  async run(args, io) {
    const { values, positionals } = parseFlags({ args, strict: true, allowPositionals: true, options: { json: { type: 'boolean', default: false } } });
    const [action, file, ...extra] = positionals;
    if (action !== 'check') throw new UsageError(`config wants an action: check FILE\n\n${usage}`);
    if (file === undefined || extra.length > 0) throw new UsageError(`config check wants one FILE\n\n${usage}`);
    const result = await checkConfig(file, io.env);
    if (values.json) {
      writeJsonDocument(io, { ...documentHeader('config-check'), ...result });
    } else if (result.valid) {
      io.stdout.write(`${result.file}: valid: ${result.servers.length} servers, ${result.repositories.length} repositories, ${result.jobs.length} jobs (${result.jobs.join(', ') || 'none'})\n`);
    } else {
      io.stdout.write(`${file}: invalid: ${result.problems.length} problem${result.problems.length === 1 ? '' : 's'}\n`);
    }
    for (const problem of result.problems) io.stderr.write(`vcbt config: CONFIG_INVALID: ${formatProblem(problem)}\n`);
    for (const warning of result.warnings) io.stderr.write(`vcbt config: warning: ${warning}\n`);
    return result.valid ? ExitCode.ok : ExitCode.usage;
  },
};
