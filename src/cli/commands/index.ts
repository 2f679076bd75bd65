// The registry of CLI commands, in the order `vcbt help` lists them.
import type { Command } from '../command.ts';
import { applyCommand } from './apply.ts';

export const commands: Command[] = [
  applyCommand,
];
