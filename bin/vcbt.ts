#!/usr/bin/env node
// Entry point of the `vcbt` command: hands argv to the CLI and turns its result into an exit code.
import { enableCompileCache } from 'node:module';

// Node's on-disk code cache (NODE_COMPILE_CACHE, else a directory in the OS temp dir) makes
// every start after the first about four times cheaper; main is imported after enabling it.
enableCompileCache();
const { main } = await import('../src/cli/main.ts');

// A reader that goes away (`vcbt points | head -1`) is not an error of vcbt: the rest of the
// output is simply not wanted. Writes to a closed pipe are dropped and the command finishes
// (and cleans up) as usual; any other stream error is a real fault and is raised.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE' || error.code === 'ERR_STREAM_DESTROYED') return;
    throw error;
  });
}

process.exitCode = await main(process.argv.slice(2));
