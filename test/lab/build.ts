// Builds the lab's Go programs (test/lab/go: the lab; test/lab/govmomi-client: the govmomi
// test client) with Debian's Go and govmomi in GOPATH mode, no downloads. Binaries are
// cached in .lab-cache/ under a name carrying the hash of their Go sources, so a build only
// happens when a source changed; each build writes a temporary name and renames it, so
// several test processes building at once never see a half-written binary.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { access, mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const repoRoot = resolve(import.meta.dirname, '..', '..');
export const labCacheDir = join(repoRoot, '.lab-cache');

/** Building a lab program failed (Go missing, compile error). */
/** Test harness only, so not a VcbtError: its code is not one of the product's ErrorCodes. */
export class LabBuildError extends Error {
  readonly code = 'LAB_BUILD';
  readonly context: Readonly<Record<string, unknown>>;
  constructor(message: string, context: Record<string, unknown>, cause?: unknown) {
    super(message, { cause });
    this.name = 'LabBuildError';
    this.context = context;
  }
}

export interface LabBinaries {
  /** The lab server (vcsim plus disks, CBT, snapshots, control API, NBD). */
  lab: string;
  /** The govmomi test client (see test/lab/govmomi-client/main.go for its commands). */
  govmomi: string;
}

async function sourceHash(dir: string): Promise<string> {
  const names = (await readdir(dir)).filter((n) => n.endsWith('.go')).sort();
  const hash = createHash('sha256');
  for (const name of names) {
    hash.update(name).update('\0').update(await readFile(join(dir, name))).update('\0');
  }
  return hash.digest('hex').slice(0, 16);
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

async function buildOne(packageDir: string, binaryName: string): Promise<string> {
  const sources = join(repoRoot, 'test', 'lab', packageDir);
  const output = join(labCacheDir, `${binaryName}-${await sourceHash(sources)}`);
  if (await exists(output)) return output;
  await mkdir(labCacheDir, { recursive: true });
  const temporary = `${output}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await run('go', ['build', '-o', temporary, `./test/lab/${packageDir}`], {
      cwd: repoRoot,
      env: {
        ...process.env,
        GO111MODULE: 'off',
        GOPATH: '/usr/share/gocode',
        GOCACHE: join(labCacheDir, 'gocache'),
        GOFLAGS: '',
        GOTOOLCHAIN: 'local',
      },
      maxBuffer: 16 * 1024 * 1024,
    });
    await rename(temporary, output);
    await pruneOlderBuilds(binaryName, output);
  } catch (error) {
    await rm(temporary, { force: true });
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new LabBuildError(`building ${packageDir} failed: ${stderr.trim() || String(error)}`, { packageDir }, error);
  }
  return output;
}

/** Removes binaries built from earlier sources (running ones keep their inode). */
async function pruneOlderBuilds(binaryName: string, keep: string): Promise<void> {
  const pattern = new RegExp(`^${binaryName}-[0-9a-f]{16}$`);
  for (const name of await readdir(labCacheDir)) {
    const path = join(labCacheDir, name);
    if (pattern.test(name) && path !== keep) await rm(path, { force: true });
  }
}

/** Builds (or finds cached) both lab programs. */
export async function buildLabBinaries(): Promise<LabBinaries> {
  const [lab, govmomi] = await Promise.all([buildOne('go', 'vcbt-lab'), buildOne('govmomi-client', 'vcbt-govmomi')]);
  return { lab, govmomi };
}
