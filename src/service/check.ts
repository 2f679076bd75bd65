// `config check`: a configuration file validated without touching anything (no vSphere login,
// no repository opened, no secret read). Problems make it invalid; what only this machine
// may lack (a password file, a repository directory, the catalog's directory) is a warning.
import { access, constants } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ConfigError, loadConfig, type ConfigProblem, type ServiceConfig } from './config.ts';
import { secretWarning } from './secrets.ts';

export interface ConfigCheckResult {
  file: string;
  valid: boolean;
  problems: ConfigProblem[];
  warnings: string[];
  servers: string[];
  repositories: string[];
  jobs: string[];
}

async function exists(path: string): Promise<boolean> {
  return access(path, constants.F_OK).then(
    () => true,
    () => false,
  );
}

/** What the machine running the jobs will need to find. */
export async function configWarnings(config: ServiceConfig, env: NodeJS.ProcessEnv): Promise<string[]> {
  const warnings: string[] = [];
  const add = (w: string | undefined) => w !== undefined && warnings.push(w);
  for (const server of config.servers.values()) add(await secretWarning(server.password, env, `servers.${server.name} password`));
  for (const repo of config.repositories.values()) {
    if (repo.passphrase) add(await secretWarning(repo.passphrase, env, `repositories.${repo.name} passphrase`));
    if (repo.s3?.secretAccessKey) add(await secretWarning(repo.s3.secretAccessKey, env, `repositories.${repo.name} s3 secretAccessKey`));
    if (!repo.path.startsWith('s3://') && !(await exists(repo.path))) add(`repositories.${repo.name}: ${repo.path} does not exist here (create it with vcbt init)`);
  }
  if (!(await exists(dirname(config.catalog.path)))) add(`catalog: the directory of ${config.catalog.path} does not exist here`);
  return warnings;
}

export async function checkConfig(file: string, env: NodeJS.ProcessEnv): Promise<ConfigCheckResult> {
  try {
    const config = await loadConfig(file);
    return {
      file: config.file,
      valid: true,
      problems: [],
      warnings: await configWarnings(config, env),
      servers: [...config.servers.keys()],
      repositories: [...config.repositories.keys()],
      jobs: [...config.jobs.keys()],
    };
  } catch (error) {
    if (!(error instanceof ConfigError) || error.code !== 'CONFIG_INVALID') throw error;
    return { file, valid: false, problems: error.context.problems as ConfigProblem[], warnings: [], servers: [], repositories: [], jobs: [] };
  }
}
