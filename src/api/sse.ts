// Server-Sent Events (text/event-stream) for a run's live events (GET /api/runs/{id}/events).
//
// Vocabulary
// - SSE frame: `event: NAME\ndata: JSON\n\n`; a comment line (`: keep-alive`) every
//   KEEPALIVE_MS keeps proxies from closing an idle stream.
// - bounded buffer: a client that reads slower than events come never grows the daemon's
//   memory past BUFFER_MAX_BYTES: once that much waits unsent, further events are dropped
//   and, when the client has drained, one `state` event (the whole state now) replaces them.
import type { ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Catalog } from '../service/catalog/catalog.ts';
import { stateFromCatalog, type RunEventBus, type RunLiveState, type RunStreamEvent } from '../service/run-events.ts';

export const BUFFER_MAX_BYTES = 256 * 1024;
const KEEPALIVE_MS = 15_000;
/** How often a run another process works on is looked up in the catalog. */
const FOREIGN_POLL_MS = 1000;

function frame(event: RunStreamEvent): string {
  return `event: ${event.event}\ndata: ${JSON.stringify(event.data)}\n\n`;
}

/** Streams run `runId`'s events until its end (or the client leaves); a finished run: its final state and end. */
export async function streamRunEvents(response: ServerResponse, options: { runId: number; bus: RunEventBus; catalog: Catalog; signal: AbortSignal }): Promise<void> {
  const { runId, bus, catalog, signal } = options;
  response.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
  response.write('retry: 2000\n\n');
  let lagging = false;
  let currentState: (() => RunLiveState) | undefined;
  let finished!: () => void;
  const done = new Promise<void>((resolve) => (finished = resolve));
  const send = (event: RunStreamEvent) => {
    if (response.writableEnded || response.destroyed) return;
    if (event.event === 'end') {
      lagging = false;
      response.end(frame(event));
      finished();
      return;
    }
    if (lagging) return;
    if (response.writableLength > BUFFER_MAX_BYTES) {
      lagging = true;
      response.once('drain', () => {
        lagging = false;
        if (currentState) send({ event: 'state', data: currentState() });
      });
      return;
    }
    response.write(frame(event));
  };
  signal.addEventListener('abort', () => finished(), { once: true });
  const keepAlive = setInterval(() => {
    if (!lagging && !response.writableEnded) response.write(': keep-alive\n\n');
  }, KEEPALIVE_MS);
  try {
    const live = bus.subscribe(runId, send);
    if (live) {
      currentState = live.state;
      send({ event: 'state', data: live.state() });
      try {
        await done;
      } finally {
        live.unsubscribe();
      }
      return;
    }
    // Not at work in this daemon: finished, or run by another process (vcbt job run from cron).
    for (let first = true; ; first = false) {
      const run = await catalog.run(runId);
      if (!run) break;
      if (first || run.status !== 'running') send({ event: 'state', data: stateFromCatalog(run, await catalog.tasks(runId)) });
      if (run.status !== 'running') {
        send({ event: 'end', data: { status: run.status, endedAt: run.endedAt, error: run.error } });
        break;
      }
      if (signal.aborted) break;
      await sleep(FOREIGN_POLL_MS, undefined, { signal }).catch(() => undefined);
    }
  } finally {
    clearInterval(keepAlive);
    if (!response.writableEnded) response.end();
  }
}
