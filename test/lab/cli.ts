// `npm run lab -- --state DIR [--disk-sizes N,N] [--other-disk-bytes N]` runs a lab in the
// foreground until SIGINT/SIGTERM, printing its description (also in DIR/lab.json).
// `npm run lab -- --build-only` just builds the lab programs (cached in .lab-cache/).
import { parseArgs } from 'node:util';
import { buildLabBinaries } from './build.ts';
import { startLab } from './lab.ts';

function parseSizes(text: string | undefined): number[] | undefined {
  if (text === undefined) return undefined;
  return text.split(',').map((s) => {
    const n = Number(s.trim());
    if (!Number.isSafeInteger(n) || n <= 0 || n % 1024 !== 0) throw new Error(`--disk-sizes: ${s} is not a positive multiple of 1024`);
    return n;
  });
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      state: { type: 'string' },
      'build-only': { type: 'boolean', default: false },
      'disk-sizes': { type: 'string' },
      'other-disk-bytes': { type: 'string' },
    },
    strict: true,
  });
  if (values['build-only']) {
    const binaries = await buildLabBinaries();
    process.stdout.write(`lab built: ${binaries.lab}\ngovmomi test client built: ${binaries.govmomi}\n`);
    return 0;
  }
  const lab = await startLab({
    stateDir: values.state,
    diskSizes: parseSizes(values['disk-sizes']),
    otherDiskBytes: values['other-disk-bytes'] === undefined ? undefined : Number(values['other-disk-bytes']),
  });
  process.stdout.write(JSON.stringify(lab.info) + '\n');
  process.stderr.write(`lab running (state ${lab.stateDir}); Ctrl-C stops it\n`);
  // The lab's process handles are unref'd (so tests never hang on a forgotten lab): keep
  // this foreground process alive until a signal arrives.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  const signal = await new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  process.stderr.write(`${signal}: stopping the lab\n`);
  await lab.stop();
  clearInterval(keepAlive);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`lab: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
