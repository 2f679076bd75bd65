// The registry of CLI commands, in the order `vcbt help` lists them.
import type { Command } from '../command.ts';
import { applyCommand } from './apply.ts';
import { vmsCommand } from './vms.ts';
import { cbtCommand } from './cbt.ts';
import { changesCommand } from './changes.ts';

export const commands: Command[] = [
  vmsCommand,
  cbtCommand,
  changesCommand,
  applyCommand,
];
