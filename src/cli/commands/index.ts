// The registry of CLI commands, in the order `vcbt help` lists them.
import type { Command } from '../command.ts';
import { applyCommand } from './apply.ts';
import { replicateCommand } from './replicate.ts';
import { vmsCommand } from './vms.ts';
import { cbtCommand } from './cbt.ts';
import { changesCommand } from './changes.ts';
import { initCommand } from './init.ts';
import { verifyCommand } from './verify.ts';
import { pruneCommand } from './prune.ts';
import { backupCommand } from './backup.ts';
import { pointsCommand } from './points.ts';
import { restoreCommand } from './restore.ts';
import { exportCommand } from './export.ts';
import { unlockCommand } from './unlock.ts';
import { configCommand } from './config.ts';
import { jobCommand } from './job.ts';

export const commands: Command[] = [
  vmsCommand,
  cbtCommand,
  changesCommand,
  applyCommand,
  replicateCommand,
  initCommand,
  backupCommand,
  pointsCommand,
  restoreCommand,
  exportCommand,
  verifyCommand,
  pruneCommand,
  unlockCommand,
  configCommand,
  jobCommand,
];
