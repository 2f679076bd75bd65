// The registry of CLI commands, in the order `vcbt help` lists them.
//
// Each entry names a command and says what it does; its module (flags, usage text, the jobs
// it calls and everything below them) is imported only when that command runs or prints its
// own --help. `vcbt help` and `vcbt --version` load no command at all: importing every
// command module up front cost about 1 s of a 1.4 s `vcbt help` on a busy machine (type
// stripping and compiling the whole tree; bench/README.md, "Start-up").
import type { Command } from '../command.ts';

export interface CommandEntry {
  name: string;
  /** One line for `vcbt help`. */
  summary: string;
  load(): Promise<Command>;
}

export const commands: CommandEntry[] = [
  { name: 'vms', summary: 'list VMs with power state, CBT state and disks', load: async () => (await import('./vms.ts')).vmsCommand },
  { name: 'cbt', summary: 'enable, disable or reset Changed Block Tracking on a VM', load: async () => (await import('./cbt.ts')).cbtCommand },
  { name: 'changes', summary: 'print the changed or allocated areas of a disk (CSV or JSON)', load: async () => (await import('./changes.ts')).changesCommand },
  { name: 'apply', summary: 'copy the changed areas listed in a CSV from one disk to another', load: async () => (await import('./apply.ts')).applyCommand },
  { name: 'replicate', summary: 'replicate a VM\'s changed blocks onto target disks (snapshot, CBT, copy, record)', load: async () => (await import('./replicate.ts')).replicateCommand },
  { name: 'init', summary: 'create a backup repository (chunk size, compression, optional encryption)', load: async () => (await import('./init.ts')).initCommand },
  { name: 'backup', summary: 'store a restore point of a VM in a repository (incremental with CBT)', load: async () => (await import('./backup.ts')).backupCommand },
  { name: 'points', summary: 'list restore points in a repository', load: async () => (await import('./points.ts')).pointsCommand },
  { name: 'restore', summary: 'restore one disk of a restore point to a file or NBD export', load: async () => (await import('./restore.ts')).restoreCommand },
  { name: 'restore-vm', summary: 'restore a restore point as a new VM in vSphere (OVF import, no VDDK)', load: async () => (await import('./restore-vm.ts')).restoreVmCommand },
  { name: 'export', summary: 'serve a restore point\'s disk read-only over NBD', load: async () => (await import('./export.ts')).exportCommand },
  { name: 'files', summary: 'list, find and extract files in a restore point (file-level restore)', load: async () => (await import('./files.ts')).filesCommand },
  { name: 'verify', summary: 'check restore points (structure, or every chunk with --read-data)', load: async () => (await import('./verify.ts')).verifyCommand },
  { name: 'copy', summary: 'copy restore points between repositories (only missing chunks, re-encrypted, verified)', load: async () => (await import('./copy.ts')).copyCommand },
  { name: 'prune', summary: 'delete restore points a retention policy drops, then collect garbage', load: async () => (await import('./prune.ts')).pruneCommand },
  { name: 'unlock', summary: 'remove stale repository locks (or one named lock with --force)', load: async () => (await import('./unlock.ts')).unlockCommand },
  { name: 'config', summary: 'validate a service configuration file (config check FILE)', load: async () => (await import('./config.ts')).configCommand },
  { name: 'job', summary: 'list and run the protection jobs of a service configuration', load: async () => (await import('./job.ts')).jobCommand },
  { name: 'serve', summary: 'the daemon: job schedules, the run catalog and the HTTP API', load: async () => (await import('./serve.ts')).serveCommand },
  { name: 'token', summary: 'create, list or revoke API tokens of the daemon (shown once, stored hashed)', load: async () => (await import('./token.ts')).tokenCommand },
];
