// TLS for NBD (nbds:// URIs): after the server accepts NBD_OPT_STARTTLS the plain socket is
// wrapped in a TLS client session before any further option. The server is trusted either
// through a CA (file, PEM text, or the system store) with the usual host name check, or
// through a pinned SHA-256 fingerprint of its certificate (useful for self-signed servers).

import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { NbdError } from './errors.ts';
import type { NbdTarget } from './uri.ts';

export interface NbdTlsOptions {
  /** PEM file of the CA(s) that signed the server certificate; default: the system store. */
  caFile?: string;
  /** SHA-256 fingerprint of the server certificate ("AB:CD:..." or plain hex); replaces CA checks. */
  fingerprintSha256?: string;
  /** Client certificate and key (PEM files) for servers that verify clients. */
  certFile?: string;
  keyFile?: string;
  /** Name to check the certificate against; default: the URI's host, or "localhost" for unix sockets. */
  serverName?: string;
}

export async function startClientTls(socket: net.Socket, target: NbdTarget, options: NbdTlsOptions, server: string): Promise<tls.TLSSocket> {
  const fail = (message: string, cause?: unknown) => new NbdError('NBD_TLS', `${server}: ${message}`, { server }, { cause });
  const host = options.serverName ?? (target.endpoint.kind === 'tcp' ? target.endpoint.host : 'localhost');
  const pinned = options.fingerprintSha256 ? normalizeFingerprint(options.fingerprintSha256) : null;
  let ca: Buffer | undefined;
  let cert: Buffer | undefined;
  let key: Buffer | undefined;
  try {
    if (options.caFile) ca = readFileSync(options.caFile);
    if (options.certFile) cert = readFileSync(options.certFile);
    if (options.keyFile) key = readFileSync(options.keyFile);
  } catch (error) {
    throw fail(`cannot read TLS file: ${(error as Error).message}`, error);
  }
  const secure = tls.connect({
    socket,
    servername: net.isIP(host) ? undefined : host,
    host,
    ca,
    cert,
    key,
    rejectUnauthorized: pinned === null,
  });
  try {
    await once(secure, 'secureConnect');
  } catch (error) {
    secure.destroy();
    throw fail(`TLS handshake failed: ${(error as Error).message}`, error);
  }
  if (pinned !== null) {
    const actual = normalizeFingerprint(secure.getPeerCertificate().fingerprint256 ?? '');
    if (actual !== pinned) {
      secure.destroy();
      throw fail(`server certificate fingerprint ${actual} does not match the pinned ${pinned}`);
    }
  }
  return secure;
}

function normalizeFingerprint(text: string): string {
  return text.replace(/[^0-9a-f]/gi, '').toUpperCase();
}
