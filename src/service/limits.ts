// Limits: how many VMs a run processes at once - in total, per ESXi host (each VM holds a
// snapshot, which stuns it, and NFC streams, of which a host allows about 48-52) and per
// datastore (snapshot creation and consolidation load it).
//
// A VM is started only when every limit it touches has room (its host and each of its
// datastores), so it never holds one slot while waiting for another: no deadlock. Waiting
// VMs are tried in their order each time a slot frees, so a VM whose host is busy does not
// hold back one on another host.
export interface LimitedItem {
  host: string | undefined;
  datastores: readonly string[];
}

export interface Limits {
  total: number;
  perHost: number;
  perDatastore: number;
}

/** Runs `work` on every item within the limits; `work` must not reject (it reports failures in its result). */
export function runWithLimits<I extends LimitedItem, R>(items: readonly I[], limits: Limits, work: (item: I) => Promise<R>): Promise<R[]> {
  return new Promise((resolve, reject) => {
    const results: R[] = new Array<R>(items.length);
    const pending = items.map((_, i) => i);
    const perHost = new Map<string, number>();
    const perDatastore = new Map<string, number>();
    let running = 0;
    const fits = (item: I) =>
      running < limits.total &&
      (item.host === undefined || (perHost.get(item.host) ?? 0) < limits.perHost) &&
      item.datastores.every((d) => (perDatastore.get(d) ?? 0) < limits.perDatastore);
    const count = (item: I, delta: number) => {
      running += delta;
      if (item.host !== undefined) perHost.set(item.host, (perHost.get(item.host) ?? 0) + delta);
      for (const d of new Set(item.datastores)) perDatastore.set(d, (perDatastore.get(d) ?? 0) + delta);
    };
    const pump = () => {
      for (let k = 0; k < pending.length; ) {
        const index = pending[k] as number;
        const item = items[index] as I;
        if (!fits(item)) {
          k++;
          continue;
        }
        pending.splice(k, 1);
        count(item, +1);
        work(item).then(
          (result) => {
            results[index] = result;
            count(item, -1);
            pump();
          },
          reject,
        );
      }
      if (pending.length === 0 && running === 0) resolve(results);
    };
    pump();
  });
}
