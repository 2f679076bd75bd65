#!/usr/bin/env node
// Entry point of the `vcbt` command: hands argv to the CLI and turns its result into an exit code.
import { main } from '../src/cli/main.ts';

process.exitCode = await main(process.argv.slice(2));
