// `vcbt serve --config FILE`: the daemon. Runs the jobs on their schedules (a schedule missed
// while the daemon was down runs once at start), records everything in the catalog and
// serves the HTTP API (docs/api.md) on daemon.listen. SIGTERM / SIGINT stop it gracefully:
// no new run or VM, running VMs get daemon.stopTimeout, then they are aborted (snapshots
// removed, nothing committed) and recorded interrupted. A second signal exits at once.
import { UsageError } from '../../errors.ts';
import { loadConfig } from '../../service/config.ts';
import { openCatalog } from '../../service/catalog/open.ts';
import { recoverCatalog } from '../../service/catalog/record.ts';
import { Daemon } from '../../service/daemon.ts';
import { ServiceMetrics } from '../../service/metrics.ts';
import { startApiServer } from '../../api/server.ts';
import { ExitCode, type Command } from '../command.ts';
import { parseFlags } from '../flags.ts';

const usage = `usage: vcbt serve --config FILE

  Runs the jobs of FILE on their schedules and serves the HTTP API (docs/api.md) and the
  Prometheus metrics (/metrics) on daemon.listen (default 127.0.0.1:8420; HTTPS with
  daemon.tls); every request needs a token. Every run is recorded in the catalog
  (vcbt job status). SIGTERM: stop taking work, let running VMs finish within
  daemon.stopTimeout, abort the rest cleanly, exit 143.

  --config FILE   the service configuration (docs/service.md)`;

export const serveCommand: Command = {
  name: 'serve',
  summary: 'the daemon: job schedules, the run catalog and the HTTP API',
  usage,
  async run(args, io) {
    const { values, positionals } = parseFlags({ args, strict: true, allowPositionals: true, options: { config: { type: 'string' } } });
    if (!values.config || positionals.length > 0) throw new UsageError(`serve needs --config FILE and nothing else\n\n${usage}`);
    const config = await loadConfig(values.config);
    const log = (line: string) => io.stderr.write(`${new Date().toISOString()} ${line}\n`);
    const catalog = openCatalog(config.catalog);
    try {
      const { interrupted, pruned } = await recoverCatalog(catalog, config.catalog.keepHistoryMs);
      for (const r of interrupted) log(`job ${r.job}: run ${r.id} was interrupted (its process, pid ${r.pid}, is gone)`);
      if (pruned > 0) log(`catalog: ${pruned} runs older than catalog.keepHistory deleted`);
      const metrics: ServiceMetrics = new ServiceMetrics({ config, catalog, activeJobs: () => daemon.activeRuns().keys() });
      const daemon: Daemon = new Daemon({ config, catalog, env: io.env, log, onEvent: (job, _runId, event) => metrics.observe(job, event) });
      const api = await startApiServer({ config, catalog, daemon, log, metrics });
      log(`API listening on ${api.url}`);
      await daemon.start();
      log(`vcbt serve: ${config.jobs.size} jobs; catalog ${config.catalog.path}`);
      await new Promise<void>((resolve) => {
        if (io.signal.aborted) resolve();
        else io.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      log('stopping: no new run or VM starts');
      await daemon.stop(config.daemon.stopTimeoutMs);
      await api.close();
      log('stopped');
      return ExitCode.ok;
    } finally {
      await catalog.close();
    }
  },
};
