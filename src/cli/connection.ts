// Connection flags shared by every command that talks to vCenter/ESXi:
// --server URL, --user U, --thumbprint FP, --password-file FILE (or VCBT_PASSWORD).
// The password is never a flag value, so it never appears in argv or `ps`.
import { readFile } from 'node:fs/promises';
import { UsageError } from '../errors.ts';
import { openVsphereSession } from '../jobs/vsphere-admin.ts';
import type { VsphereSession } from '../vsphere/vsphere.ts';
import type { CommandIo } from './command.ts';

export const connectionFlags = {
  server: { type: 'string' },
  user: { type: 'string' },
  thumbprint: { type: 'string' },
  'password-file': { type: 'string' },
} as const;

export const connectionUsage = `connection:
  --server URL          vCenter or ESXi, https://host[:port][/sdk] or host
  --user USER           user name
  --thumbprint FP       pin the server certificate: SHA-1 (96:09:...) or SHA-256 fingerprint;
                        without it the certificate must be trusted by the system CAs
  --password-file FILE  file holding the password (else the VCBT_PASSWORD environment variable)`;

export interface ConnectionValues {
  server?: string;
  user?: string;
  thumbprint?: string;
  'password-file'?: string;
}

export async function readPassword(values: ConnectionValues, io: CommandIo): Promise<string> {
  const file = values['password-file'];
  if (file !== undefined) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      throw new UsageError(`cannot read --password-file ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, { file });
    }
    return text.replace(/\r?\n$/, '');
  }
  const fromEnv = io.env.VCBT_PASSWORD;
  if (fromEnv === undefined || fromEnv === '') throw new UsageError('no password: set VCBT_PASSWORD or give --password-file');
  return fromEnv;
}

/** Logs in with the command's flags; the caller must `logout()` in a finally. */
export async function connectFromFlags(values: ConnectionValues, io: CommandIo): Promise<VsphereSession> {
  if (!values.server || !values.user) throw new UsageError('--server and --user are required');
  return openVsphereSession({
    server: values.server,
    username: values.user,
    password: await readPassword(values, io),
    thumbprint: values.thumbprint,
    signal: io.signal,
    onRelogin: (cause) => io.stderr.write(`vcbt: logged in to ${values.server} again: ${cause}\n`),
  });
}

/**
 * Runs `work` with a session and always logs out. A failed logout is only a warning: the
 * work's result or error is what the user needs (the server expires the session anyway).
 */
export async function withSession<T>(values: ConnectionValues, io: CommandIo, work: (session: VsphereSession) => Promise<T>): Promise<T> {
  const session = await connectFromFlags(values, io);
  try {
    return await work(session);
  } finally {
    await session.logout().catch((error: unknown) => {
      io.stderr.write(`vcbt: warning: logout from ${session.server} failed: ${error instanceof Error ? error.message : String(error)}\n`);
    });
  }
}
