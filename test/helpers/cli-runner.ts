// Runs the vcbt CLI in-process against a lab, capturing stdout/stderr and the exit code.
import { PassThrough } from 'node:stream';
import { main } from '../../src/cli/main.ts';
import type { Lab } from '../lab/lab.ts';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runCli(args: string[], env: NodeJS.ProcessEnv = {}, signal?: AbortSignal): Promise<CliResult> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d: Buffer) => (out += d.toString()));
  stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await main(args, { stdout, stderr, env, ...(signal ? { signal } : {}) });
  return { code, stdout: out, stderr: err };
}

/** Connection flags and env for the lab, pinned by SHA-1 thumbprint. */
export function labConnection(lab: Lab): { flags: string[]; env: NodeJS.ProcessEnv } {
  return {
    flags: ['--server', lab.info.sdk, '--user', lab.info.username, '--thumbprint', lab.info.thumbprintSha1],
    env: { VCBT_PASSWORD: lab.info.password },
  };
}
