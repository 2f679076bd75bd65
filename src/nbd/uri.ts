// NBD URIs (the NBD URI spec used by qemu, libnbd and nbdkit):
//   nbd://host[:port]/[export]        plain TCP, port 10809 by default
//   nbds://host[:port]/[export]       TCP with TLS required (NBD_OPT_STARTTLS)
//   nbd+unix:///[export]?socket=PATH  unix socket; nbds+unix for TLS over it
// The export name is the path without its leading slash, percent-decoded.

import { DEFAULT_PORT } from './protocol.ts';
import { NbdError } from './errors.ts';

export type NbdEndpoint = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; socketPath: string };

export interface NbdTarget {
  endpoint: NbdEndpoint;
  exportName: string;
  tls: boolean;
}

const SCHEMES: Record<string, { unix: boolean; tls: boolean }> = {
  'nbd:': { unix: false, tls: false },
  'nbds:': { unix: false, tls: true },
  'nbd+unix:': { unix: true, tls: false },
  'nbds+unix:': { unix: true, tls: true },
};

export function isNbdUri(text: string): boolean {
  return /^nbds?(\+unix)?:\/\//i.test(text);
}

export function parseNbdUri(uri: string): NbdTarget {
  // Never echo user information: it may hold a password.
  const shown = uri.replace(/^([a-z+]*:\/\/)[^/@?#]*@/i, '$1***@');
  const bad = (why: string) => new NbdError('NBD_BAD_URI', `invalid NBD URI "${shown}": ${why}`, { uri: shown });
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw bad('not a URI (expected nbd://host[:port]/export or nbd+unix:///export?socket=PATH)');
  }
  const scheme = SCHEMES[url.protocol.toLowerCase()];
  if (!scheme) throw bad(`unknown scheme "${url.protocol}" (expected nbd, nbds, nbd+unix or nbds+unix)`);
  if (url.username || url.password) throw bad('user information is not supported');
  let exportName: string;
  try {
    exportName = decodeURIComponent(url.pathname.replace(/^\//, ''));
  } catch {
    throw bad('export name is not valid percent-encoding');
  }
  if (scheme.unix) {
    if (url.host) throw bad('a unix socket URI has no host (use nbd+unix:///export?socket=PATH)');
    const socketPath = url.searchParams.get('socket');
    if (!socketPath) throw bad('missing ?socket=PATH');
    return { endpoint: { kind: 'unix', socketPath }, exportName, tls: scheme.tls };
  }
  if (!url.hostname) throw bad('missing host');
  if (url.searchParams.has('socket')) throw bad('?socket= only goes with nbd+unix://');
  const port = url.port ? Number(url.port) : DEFAULT_PORT;
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  return { endpoint: { kind: 'tcp', host, port }, exportName, tls: scheme.tls };
}

export function formatNbdUri(target: NbdTarget): string {
  // Slashes stay literal: `nbd://host/snapshot-78/2000` names the export "snapshot-78/2000" (NBD URI spec).
  const path = '/' + target.exportName.split('/').map(encodeURIComponent).join('/');
  if (target.endpoint.kind === 'unix') {
    return `${target.tls ? 'nbds' : 'nbd'}+unix://${path}?socket=${encodeURIComponent(target.endpoint.socketPath).replace(/%2F/gi, '/')}`;
  }
  const host = target.endpoint.host.includes(':') ? `[${target.endpoint.host}]` : target.endpoint.host;
  return `${target.tls ? 'nbds' : 'nbd'}://${host}:${target.endpoint.port}${path}`;
}
