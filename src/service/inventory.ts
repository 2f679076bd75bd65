// The VM inventory of the configured servers, as the API shows it, cached briefly: the web
// console polls the VM list and each poll must not become a vCenter query.
//
// Vocabulary
// - server inventory: every VM of one server with its placement (listVmPlacements), or the
//   error that kept us from reading it (a server that cannot be reached does not hide the
//   others), and when it was read.
// - cache: a server's inventory is reused for `daemon.inventoryCacheMs` after it was read
//   (an error too, so a server that is down is not asked on every poll); concurrent askers
//   share one read in flight; `invalidate` forgets a server's (after an action changed a VM).
import { VcbtError, type ErrorCode } from '../errors.ts';
import { listVmPlacements } from '../jobs/vsphere-admin.ts';
import type { VmPlacement } from '../vsphere/vsphere.ts';
import type { ServiceConfig } from './config.ts';
import { openServerSession } from './run.ts';

export interface ServerInventory {
  server: string;
  /** Null when the server could not be read (see `error`). */
  vms: VmPlacement[] | null;
  error: { code: ErrorCode; message: string } | null;
  readAt: string;
}

interface Entry {
  readAtMs: number;
  inventory: Promise<ServerInventory>;
}

export class InventoryCache {
  readonly #config: ServiceConfig;
  readonly #env: NodeJS.ProcessEnv;
  readonly #entries = new Map<string, Entry>();

  constructor(config: ServiceConfig, env: NodeJS.ProcessEnv) {
    this.#config = config;
    this.#env = env;
  }

  /** Every configured server's inventory, in configuration order. */
  all(nowMs: number = Date.now()): Promise<ServerInventory[]> {
    return Promise.all([...this.#config.servers.keys()].map((name) => this.server(name, nowMs)));
  }

  /** One server's inventory (cached). */
  server(name: string, nowMs: number = Date.now()): Promise<ServerInventory> {
    const cached = this.#entries.get(name);
    if (cached && nowMs - cached.readAtMs < this.#config.daemon.inventoryCacheMs) return cached.inventory;
    const entry: Entry = { readAtMs: nowMs, inventory: this.#read(name) };
    this.#entries.set(name, entry);
    return entry.inventory;
  }

  invalidate(server?: string): void {
    if (server === undefined) this.#entries.clear();
    else this.#entries.delete(server);
  }

  async #read(name: string): Promise<ServerInventory> {
    try {
      const session = await openServerSession(this.#config, name, this.#env);
      try {
        return { server: name, vms: await listVmPlacements(session), error: null, readAt: new Date().toISOString() };
      } finally {
        await session.logout().catch(() => undefined);
      }
    } catch (error) {
      const e = error instanceof VcbtError ? { code: error.code, message: error.message } : { code: 'INTERNAL' as const, message: 'reading the inventory failed (logged by the daemon)' };
      return { server: name, vms: null, error: e, readAt: new Date().toISOString() };
    }
  }
}
