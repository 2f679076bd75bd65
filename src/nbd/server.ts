// NbdServer: serves disks over NBD (TCP or a unix socket) to any NBD client - nbdcopy,
// qemu-img, nbdinfo, the kernel's nbd-client, or vcbt's own NbdClient. Used to export
// restore points and for tests.
//
// Vocabulary (see protocol.ts for the wire terms):
// - ServedDisk: what an export serves - the read side of transport's DiskReader, plus its
//   write side when the export is writable. Any DiskReader/Disk fits.
// - session: one client connection (server-session.ts): fixed newstyle handshake, then
//   requests processed concurrently and answered as each completes (out of order).
//
// Supported: NBD_OPT_GO/INFO/LIST/ABORT/EXPORT_NAME/STRUCTURED_REPLY/SET_META_CONTEXT/
// LIST_META_CONTEXT/STARTTLS (when given a certificate), base:allocation from the disk's
// allocation(), read-only exports, multi-conn, WRITE/FLUSH/WRITE_ZEROES on writable exports.
//
// Bounded under hostile clients (defaults in DEFAULT_SERVER_LIMITS, documented in
// docs/nbd.md): at most maxConnections sessions (more are closed at once); a handshake must
// finish, and queued replies must be taken by the client, within ioTimeoutMs; payload bytes
// held for replies and writes come from one server-wide budget (maxQueuedBytes), so a client
// that stops reading stops being served instead of growing the server; idle reply buffers
// are capped too; READ/WRITE longer than the advertised maximum get EINVAL.

import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { rm } from 'node:fs/promises';
import { NbdError } from './errors.ts';
import { NbdSession } from './server-session.ts';
import { ByteBudget } from './byte-budget.ts';
import { ReplyBufferPool } from './reply-buffers.ts';
import { DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_PORT } from './protocol.ts';
import { formatNbdUri, type NbdEndpoint } from './uri.ts';

export interface ServedExtent {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  readonly hole: boolean;
  readonly zero: boolean;
}

export interface ServedDisk {
  readonly sizeBytes: number;
  read(offsetBytes: number, target: Uint8Array, signal?: AbortSignal): Promise<void>;
  allocation?(range: { offsetBytes: number; lengthBytes: number }, signal?: AbortSignal): Promise<readonly ServedExtent[]>;
  write?(offsetBytes: number, data: Uint8Array, signal?: AbortSignal): Promise<void>;
  writeZeroes?(offsetBytes: number, lengthBytes: number, signal?: AbortSignal): Promise<void>;
  flush?(signal?: AbortSignal): Promise<void>;
}

export interface NbdExport {
  name: string;
  description?: string;
  disk: ServedDisk;
  /** Accept WRITE/WRITE_ZEROES/FLUSH; the disk must have write and writeZeroes. */
  writable?: boolean;
}

export interface NbdServerOptions {
  exports: readonly NbdExport[];
  listen: { host?: string; port?: number } | { socketPath: string };
  /** Advertise NBD_FLAG_CAN_MULTI_CONN (default true: every connection shares one disk object). */
  multiConn?: boolean;
  /** Requests one connection may have in progress at once (default 16). */
  maxInFlightPerConnection?: number;
  /** Largest READ/WRITE payload accepted (default 32 MiB). */
  maxPayloadBytes?: number;
  /** Offer STARTTLS with this certificate and key (PEM); `require` refuses clients without TLS. */
  tls?: { cert: string | Buffer; key: string | Buffer; require?: boolean };
  /** Connections served at once; more are closed right away (default 16). */
  maxConnections?: number;
  /**
   * A client must finish the handshake within this long, and while replies wait for it, its
   * socket must take some bytes within this long; otherwise it is dropped (default 60 s).
   */
  ioTimeoutMs?: number;
  /** Payload bytes (replies being produced or sent, write payloads) held for all clients together (default 64 MiB). */
  maxQueuedBytes?: number;
}

/** The defaults of the server's bounds. */
export const DEFAULT_SERVER_LIMITS = {
  maxConnections: 16,
  ioTimeoutMs: 60_000,
  maxQueuedBytes: 64 * 1024 * 1024,
  /** Idle reply buffers kept for reuse, all connections together. */
  cachedReplyBytes: 32 * 1024 * 1024,
} as const;

export interface ServerSettings {
  exports: ReadonlyMap<string, NbdExport>;
  multiConn: boolean;
  maxInFlight: number;
  maxPayloadBytes: number;
  tls: { context: tls.SecureContext; require: boolean } | null;
  ioTimeoutMs: number;
  budget: ByteBudget;
  replyBuffers: ReplyBufferPool;
}

export class NbdServer {
  readonly endpoint: NbdEndpoint;
  readonly #server: net.Server;
  readonly #sessions = new Set<NbdSession>();
  readonly #tls: boolean;
  #refusedConnections = 0;

  private constructor(server: net.Server, endpoint: NbdEndpoint, tlsOffered: boolean) {
    this.#server = server;
    this.endpoint = endpoint;
    this.#tls = tlsOffered;
  }

  static async listen(options: NbdServerOptions): Promise<NbdServer> {
    const exports = new Map<string, NbdExport>();
    for (const e of options.exports) {
      if (e.writable && (!e.disk.write || !e.disk.writeZeroes)) {
        throw new NbdError('NBD_UNSUPPORTED', `export "${e.name}" is writable but its disk cannot write`, { exportName: e.name });
      }
      exports.set(e.name, e);
    }
    const maxPayloadBytes = options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
    const settings: ServerSettings = {
      exports,
      multiConn: options.multiConn ?? true,
      maxInFlight: Math.max(1, options.maxInFlightPerConnection ?? 16),
      maxPayloadBytes,
      tls: options.tls ? { context: tls.createSecureContext({ cert: options.tls.cert, key: options.tls.key }), require: options.tls.require ?? false } : null,
      ioTimeoutMs: options.ioTimeoutMs ?? DEFAULT_SERVER_LIMITS.ioTimeoutMs,
      // At least one maximum-size request must fit.
      budget: new ByteBudget(Math.max(maxPayloadBytes, options.maxQueuedBytes ?? DEFAULT_SERVER_LIMITS.maxQueuedBytes)),
      replyBuffers: new ReplyBufferPool(DEFAULT_SERVER_LIMITS.cachedReplyBytes),
    };
    const maxConnections = Math.max(1, options.maxConnections ?? DEFAULT_SERVER_LIMITS.maxConnections);
    let nbdServer: NbdServer | null = null;
    const server = net.createServer((socket) => {
      if (!nbdServer || nbdServer.#sessions.size >= maxConnections) {
        // Refused before the greeting: the client sees the connection close at once.
        if (nbdServer) nbdServer.#refusedConnections++;
        socket.on('error', () => {});
        socket.destroy();
        return;
      }
      const session = new NbdSession(socket, settings);
      const sessions = nbdServer.#sessions;
      sessions.add(session);
      session.done.then(() => sessions.delete(session), () => sessions.delete(session));
    });
    let endpoint: NbdEndpoint;
    if ('socketPath' in options.listen) {
      await rm(options.listen.socketPath, { force: true });
      server.listen(options.listen.socketPath);
      await once(server, 'listening');
      endpoint = { kind: 'unix', socketPath: options.listen.socketPath };
    } else {
      const host = options.listen.host ?? '127.0.0.1';
      server.listen(options.listen.port ?? DEFAULT_PORT, host);
      await once(server, 'listening');
      endpoint = { kind: 'tcp', host, port: (server.address() as net.AddressInfo).port };
    }
    nbdServer = new NbdServer(server, endpoint, settings.tls !== null);
    return nbdServer;
  }

  /** The URI a client uses for one export of this server. */
  uri(exportName: string): string {
    return formatNbdUri({ endpoint: this.endpoint, exportName, tls: this.#tls });
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** Connections closed at once because maxConnections were being served. */
  get refusedConnections(): number {
    return this.#refusedConnections;
  }

  /** Stop listening and drop every connection. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    const sessions = [...this.#sessions];
    for (const session of sessions) session.destroy();
    await Promise.allSettled(sessions.map((s) => s.done));
    await closed;
  }
}
