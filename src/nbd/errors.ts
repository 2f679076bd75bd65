// Errors raised by the NBD client and server. Codes (stable, for scripts and tests):
// - NBD_E<errno>  (NBD_EIO, NBD_EPERM, NBD_EINVAL, NBD_ENOSPC, ...): the server answered a
//   request with that error; context names the command, offset and length.
// - NBD_PROTOCOL: the peer broke the protocol (bad magic, unknown cookie; read reply chunks
//   that overlap, leave a gap, or lie outside the request).
// - NBD_DISCONNECTED: the connection ended while requests were pending or a new one was made.
// - NBD_CONNECT: the TCP/unix connection could not be made.
// - NBD_HANDSHAKE: the server refused an option we need (unknown export, TLS required, ...).
// - NBD_TLS: TLS failed (certificate not trusted, fingerprint mismatch, server lacks TLS).
// - NBD_BAD_URI: an NBD URI that cannot be used.
// - NBD_UNSUPPORTED: the export does not allow the operation (write to a read-only export).
// - DISK_RANGE: a request outside the export, or (writes) not aligned to the minimum block size.

import { VcbtError } from '../errors.ts';

export class NbdError extends VcbtError {}

/** The server replied with an error number to one request. */
export class NbdServerError extends NbdError {
  readonly errno: number;
  constructor(errno: number, errnoName: `E${string}`, message: string, context: Record<string, unknown>) {
    super(`NBD_${errnoName}`, message, context);
    this.errno = errno;
  }
}
