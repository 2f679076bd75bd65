// TLS for the vSphere endpoint (SOAP and datastore HTTP share it).
//
// Policy: verify the certificate against the system CAs (and the host name) by default; or,
// when a fingerprint is pinned, accept exactly the certificate with that SHA-1 "thumbprint"
// (`96:09:...`, the form VDDK and the seed use) or SHA-256 fingerprint, whatever its issuer.
//
// Why a custom node:https Agent rather than undici or `checkServerIdentity`: Node calls
// `checkServerIdentity` only when the chain already verified, so it cannot accept a pinned
// self-signed certificate; and undici is not part of Node's public API. The Agent's
// asynchronous `createConnection` lets us finish the handshake, check the peer certificate
// and only then hand the socket to the HTTP client, so no request byte (no credential) ever
// reaches a server that fails the check. Keep-alive sockets are reused, each one checked once.
import https from 'node:https';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import type { ClientRequestArgs } from 'node:http';
import { TlsError } from './errors.ts';

/** A server that accepts TCP but never completes the handshake must not hang a job. */
const connectTimeoutMs = 30_000;

export interface TlsPolicy {
  /** Normalized (lower-case hex, no colons) SHA-1 or SHA-256 fingerprint; undefined = system CAs. */
  readonly pinnedFingerprint?: string;
}

/** Accepts `96:09:AB...` or `9609ab...` with 40 (SHA-1) or 64 (SHA-256) hex digits. */
export function parseFingerprint(text: string): string {
  const hex = text.trim().replace(/[:\s]/g, '').toLowerCase();
  if (!/^[0-9a-f]+$/.test(hex) || (hex.length !== 40 && hex.length !== 64)) {
    throw new TlsError('TLS_FINGERPRINT_SYNTAX', `thumbprint "${text}" is neither a SHA-1 (20 bytes) nor a SHA-256 (32 bytes) hex fingerprint`, {});
  }
  return hex;
}

function colonHex(hex: string): string {
  return hex.toUpperCase().replace(/(..)(?!$)/g, '$1:');
}

export interface SeenFingerprints {
  sha1: string;
  sha256: string;
}

function seenFingerprints(socket: tls.TLSSocket): SeenFingerprints {
  const certificate = socket.getPeerCertificate();
  return { sha1: certificate.fingerprint ?? '', sha256: certificate.fingerprint256 ?? '' };
}

/** Checks a handshaken socket against the policy; returns the error to fail with, if any. */
export function checkPeer(socket: tls.TLSSocket, policy: TlsPolicy, server: string): TlsError | undefined {
  const seen = seenFingerprints(socket);
  const context = { server, seenSha1: seen.sha1, seenSha256: seen.sha256 };
  const shown = `the server presented SHA-1 ${seen.sha1}, SHA-256 ${seen.sha256}`;
  if (policy.pinnedFingerprint !== undefined) {
    const pinned = policy.pinnedFingerprint;
    const actual = (pinned.length === 40 ? seen.sha1 : seen.sha256).replace(/:/g, '').toLowerCase();
    if (actual !== pinned) {
      return new TlsError('TLS_FINGERPRINT_MISMATCH', `${server}: certificate does not match the pinned thumbprint ${colonHex(pinned)}; ${shown}; nothing was sent`, {
        ...context,
        pinned: colonHex(pinned),
      });
    }
    return undefined;
  }
  if (!socket.authorized) {
    const reason = socket.authorizationError instanceof Error ? socket.authorizationError.message : String(socket.authorizationError);
    return new TlsError('TLS_UNTRUSTED', `${server}: certificate not trusted (${reason}); ${shown}; pin it with --thumbprint if it is the right server`, { ...context, reason });
  }
  return undefined;
}

/**
 * Opens a TLS connection and resolves only once the peer passed the policy check.
 * Exported for the datastore HTTP reader and other clients of the same server.
 */
export function connectChecked(options: tls.ConnectionOptions & { host: string; port: number }, policy: TlsPolicy, callback: (error: Error | null, socket?: tls.TLSSocket) => void): tls.TLSSocket {
  const server = `${options.host}:${options.port}`;
  // Chain and host name are verified by checkPeer (or replaced by the pin), never skipped.
  const socket = tls.connect({ ...options, rejectUnauthorized: false, servername: isIp(options.host) ? undefined : options.host });
  const onError = (error: Error) => callback(error);
  socket.once('error', onError);
  socket.setTimeout(connectTimeoutMs, () => socket.destroy(Object.assign(new Error(`TLS handshake with ${server} timed out after ${connectTimeoutMs} ms`), { code: 'ETIMEDOUT' })));
  socket.once('secureConnect', () => {
    socket.setTimeout(0);
    socket.off('error', onError);
    const failure = checkPeer(socket, policy, server);
    if (failure) {
      socket.destroy();
      callback(failure);
      return;
    }
    callback(null, socket);
  });
  return socket;
}

/**
 * The fingerprints of the certificate the server presents, read over a connection that
 * passes the same policy (e.g. the SHA-1 thumbprint nbdkit-vddk needs). Colon hex, upper case.
 */
export function peerFingerprints(host: string, port: number, policy: TlsPolicy): Promise<SeenFingerprints> {
  return new Promise((resolve, reject) => {
    connectChecked({ host, port }, policy, (error, socket) => {
      if (error || !socket) {
        reject(error ?? new Error(`no TLS socket to ${host}:${port}`));
        return;
      }
      const seen = seenFingerprints(socket);
      socket.destroy();
      resolve(seen);
    });
  });
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}

/** A keep-alive https.Agent whose every socket passed `connectChecked`. */
export class CheckedAgent extends https.Agent {
  readonly policy: TlsPolicy;
  /** Sockets between connect and the policy check (not yet the agent's). */
  readonly #handshakes = new Set<tls.TLSSocket>();

  constructor(policy: TlsPolicy, options: https.AgentOptions = {}) {
    super({ keepAlive: true, maxSockets: 16, ...options });
    this.policy = policy;
  }

  override createConnection(options: ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    const host = (options.host ?? options.hostname ?? 'localhost').replace(/^\[|\]$/g, '');
    const port = Number(options.port ?? 443);
    const pending = connectChecked({ host, port }, this.policy, (error, socket) => {
      this.#handshakes.delete(pending);
      // The agent's callback is typed (err, stream); on error no stream exists.
      if (error) callback?.(error, undefined as unknown as Duplex);
      else callback?.(null, socket as tls.TLSSocket);
    });
    this.#handshakes.add(pending);
    return undefined;
  }

  /**
   * Also ends handshakes still under way: a session given up on (Ctrl-C, a failed connect)
   * must not stay alive for the handshake timeout of a server that never answers.
   */
  override destroy(): void {
    super.destroy();
    for (const socket of this.#handshakes) socket.destroy();
    this.#handshakes.clear();
  }
}
