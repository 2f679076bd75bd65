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

/** Deterministic pseudo-random numbers (mulberry32), so a failing pattern can be replayed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
