// NBD exports the API started: one disk of a restore point served read-only by vcbt's own NBD
// server (the export job of `vcbt export`) until it is stopped (DELETE /api/exports/{id}) or
// the daemon stops. The repository stays open and the point's shared lock held meanwhile
// (prune cannot collect its chunks).
//
// Vocabulary
// - listen address: the host of `daemon.listen` (the export is reachable where the API is),
//   a free port per export.
// - attach commands: how a client uses the URI: nbdcopy to a file, qemu-img convert, and
//   qemu-nbd to attach it as a local block device.
import { randomBytes } from 'node:crypto';
import { exportDisk, type RunningExport } from '../jobs/export.ts';
import type { ServiceConfig } from './config.ts';
import { openConfiguredRepository } from './run.ts';

export interface ExportInfo {
  id: string;
  repository: string;
  pointId: string;
  deviceKey: number;
  label: string;
  capacityBytes: number;
  uri: string;
  startedAt: string;
  commands: { nbdcopy: string; qemuImg: string; qemuNbd: string };
}

interface Held {
  info: ExportInfo;
  running: RunningExport;
  close: () => Promise<void>;
}

const quote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;

export class ExportRegistry {
  readonly #held = new Map<string, Held>();

  async start(config: ServiceConfig, env: NodeJS.ProcessEnv, request: { repository: string; pointId: string; deviceKey: number }): Promise<ExportInfo> {
    const repo = await openConfiguredRepository(config, request.repository, env);
    let running: RunningExport;
    try {
      running = await exportDisk({ repository: repo, pointId: request.pointId, deviceKey: request.deviceKey, listen: { host: config.daemon.listen.host, port: 0 } });
    } catch (error) {
      await repo.close();
      throw error;
    }
    const id = randomBytes(8).toString('hex');
    const uri = running.uri;
    const file = `${request.pointId}-${request.deviceKey}`;
    const info: ExportInfo = {
      id,
      repository: request.repository,
      pointId: running.pointId,
      deviceKey: running.deviceKey,
      label: running.label,
      capacityBytes: running.capacityBytes,
      uri,
      startedAt: new Date().toISOString(),
      commands: {
        nbdcopy: `nbdcopy ${quote(uri)} ${file}.raw`,
        qemuImg: `qemu-img convert -p -O qcow2 ${quote(uri)} ${file}.qcow2`,
        qemuNbd: `qemu-nbd --read-only --connect=/dev/nbd0 ${quote(uri)}`,
      },
    };
    this.#held.set(id, {
      info,
      running,
      close: async () => {
        try {
          await running.close();
        } finally {
          await repo.close();
        }
      },
    });
    return info;
  }

  list(): ExportInfo[] {
    return [...this.#held.values()].map((h) => h.info);
  }

  /** Stops an export; false when there is none with this id. */
  async stop(id: string): Promise<boolean> {
    const held = this.#held.get(id);
    if (!held) return false;
    this.#held.delete(id);
    await held.close();
    return true;
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.#held.keys()].map((id) => this.stop(id)));
  }
}
