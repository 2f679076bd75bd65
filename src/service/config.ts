// The service configuration: one YAML file declaring vSphere *servers*, backup *repositories*,
// the *catalog* and protection *jobs* (docs/service.md lists every key).
//
// Vocabulary
// - configuration file: parsed once, here, into typed values (ServiceConfig); nothing else
//   reads YAML. Every problem names `file:line:column` and the key's path (`jobs.nightly.vms`).
//   All problems of a file are reported together (ConfigError's context `problems`).
// - secret source: where a password or passphrase comes from: a file (`passwordFile`) or an
//   environment variable (`passwordEnv`). Secrets are never written in the file itself; a
//   `password:` key is an error. They are read when a run needs them (secrets.ts), never by
//   `config check`, which only warns when a file or variable is missing.
// - job: what to protect (a VM selection, selection.ts), how (backup into a repository or
//   replicate onto targets, transport, quiesce), when (schedule.ts), and its policies:
//   retention, retries, limits, CBT, waiting for a busy VM, its verify schedule and whom it
//   notifies.
// - notifier: a named receiver of run summaries (`notifiers.NAME`): a webhook (JSON POST, or
//   the Slack/Teams `{"text"}` form) or e-mail over SMTP. A job's `notify` rules say which
//   notifiers hear about which results (failed, warning, success).
import { homedir } from 'node:os';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Node, type Scalar } from 'yaml';
import { VcbtError } from '../errors.ts';
import { transportNames, type TransportName } from '../jobs/snapshot-source.ts';
import type { RetentionPolicy } from '../repository/retention.ts';
import { scheduleProblem, type Schedule } from './schedule.ts';
import { parseVmRule, type VmRule } from './selection.ts';

/** One problem in a configuration file, where it is. */
export interface ConfigProblem {
  file: string;
  line: number;
  column: number;
  /** Dotted key path (`jobs.nightly.retention.keepLast`), empty for the document. */
  path: string;
  message: string;
}

/** Codes: CONFIG_INVALID (context `file`, `problems`), CONFIG_UNREADABLE (context `file`, `errno`). */
export class ConfigError extends VcbtError {}

export function formatProblem(p: ConfigProblem): string {
  return `${p.file}:${p.line}:${p.column}: ${p.path ? `${p.path}: ` : ''}${p.message}`;
}

export type SecretSource = { file: string } | { env: string };

export interface ServerConfig {
  name: string;
  url: string;
  user: string;
  password: SecretSource;
  thumbprint: string | undefined;
}

export interface RepositoryConfig {
  name: string;
  path: string;
  /** Absent: the repository is not encrypted (or VCBT_PASSPHRASE is set). */
  passphrase: SecretSource | undefined;
}

export interface TransportConfig {
  type: TransportName;
  nbdUri: string | undefined;
  vddk: { libdir: string; transports: string[] | undefined; nbdkit: string | undefined } | undefined;
  datastoreDirs: ReadonlyMap<string, string>;
  ioTimeoutMs: number | undefined;
}

export interface VmSelection {
  include: VmRule[];
  exclude: VmRule[];
  /** Per VM (a name pattern), device keys never copied. */
  excludeDisks: Array<{ vm: string; diskKeys: number[] }>;
}

export interface RetryPolicy {
  /** Further attempts after the first (0: none). */
  count: number;
  /** Wait before the first retry; each later one waits `factor` times longer. */
  delayMs: number;
  factor: number;
}

export interface LimitsConfig {
  /** VMs processed at once by one run. */
  total: number;
  /** VMs at once on one ESXi host (each holds a snapshot and NFC streams). */
  perHost: number;
  /** VMs at once whose disks live on one datastore. */
  perDatastore: number;
}

/** Which restore points a scheduled verification reads: the newest of each VM, all, or N at random. */
export type VerifyPoints = 'latest' | 'all' | { random: number };

export interface VerifyConfig {
  schedule: Schedule;
  points: VerifyPoints;
  /** Decode and re-hash every chunk (`verify --read-data`); false: chunks present with their length. */
  readData: boolean;
}

export type NotifyOn = 'success' | 'warning' | 'failed';

export interface NotifyRule {
  notifier: string;
  /** The run results that send a message; `failed` covers interrupted runs and runs that could not start. */
  on: NotifyOn[];
}

export interface WebhookNotifierConfig {
  name: string;
  type: 'webhook';
  /** The URL itself (no secret in it), or where it is kept (a chat webhook URL is a secret). */
  url: { text: string } | SecretSource;
  /** `json`: the run summary document; `text`: `{"text": ...}` as Slack and Teams incoming webhooks take. */
  format: 'json' | 'text';
  timeoutMs: number;
}

export interface EmailNotifierConfig {
  name: string;
  type: 'email';
  from: string;
  to: string[];
  smtp: {
    host: string;
    port: number;
    /** `starttls` (required; default), `tls` (implicit, usually port 465), `none` (plain; loopback relays only). */
    tls: 'starttls' | 'tls' | 'none';
    /** Extra CA certificates (PEM) that may sign the server's certificate; the system CAs otherwise. */
    caFile: string | undefined;
    user: string | undefined;
    /** Required with `user`. */
    password: SecretSource | undefined;
  };
  timeoutMs: number;
}

export type NotifierConfig = WebhookNotifierConfig | EmailNotifierConfig;

export interface JobConfig {
  name: string;
  type: 'backup' | 'replicate';
  server: string;
  /** backup: the repository's name. */
  repository: string | undefined;
  /** replicate: target per disk, placeholders {vm} {moref} {disk}; replica state directory. */
  replica: { target: string; stateDir: string | undefined } | undefined;
  vms: VmSelection;
  transport: TransportConfig;
  quiesce: boolean;
  schedule: Schedule | undefined;
  retention: RetentionPolicy | undefined;
  retries: RetryPolicy;
  limits: LimitsConfig;
  /** A VM whose CBT is off: `enable` it (default) or `report` it and leave it untouched (the VM fails). */
  cbt: 'enable' | 'report';
  /** How long a VM another vcbt run owns is waited for before VM_BUSY. */
  waitBusyMs: number;
  resetCbtOnResize: boolean;
  /**
   * Recovery point objective: a VM of the job whose newest good restore point is older is in
   * breach. Undefined: derived from the schedule (schedule.ts `rpoOf`).
   */
  rpoMs: number | undefined;
  /** Backup jobs: a scheduled `verify` of this job's restore points. */
  verify: VerifyConfig | undefined;
  notify: NotifyRule[];
}

export interface CatalogConfig {
  /** The SQLite file of the run history. */
  path: string;
  /** Runs that ended longer ago are deleted with their tasks and log lines. */
  keepHistoryMs: number;
}

export interface DaemonConfig {
  /** Where the HTTP API listens: host and port (port 0: any free one). */
  listen: { host: string; port: number };
  /** On SIGTERM, how long running VMs may go on before they are aborted. */
  stopTimeoutMs: number;
  /** How long the API reuses a server's VM inventory before asking vSphere again. */
  inventoryCacheMs: number;
  /** The only directory (and below) the API restores disks into; undefined: no restore to a file through the API. */
  restoreDirectory: string | undefined;
  /** HTTPS with this certificate chain and key (PEM files); absent: plain HTTP. */
  tls: { certificateFile: string; keyFile: string } | undefined;
}

export interface ServiceConfig {
  file: string;
  daemon: DaemonConfig;
  servers: ReadonlyMap<string, ServerConfig>;
  repositories: ReadonlyMap<string, RepositoryConfig>;
  jobs: ReadonlyMap<string, JobConfig>;
  notifiers: ReadonlyMap<string, NotifierConfig>;
  catalog: CatalogConfig;
}

/**
 * Where the catalog lives when the configuration names none: /var/lib/vcbt for root (the
 * service), the user's state directory ($XDG_STATE_HOME, else ~/.local/state) otherwise, so
 * that `vcbt job run` works for a user without extra setup.
 */
export function defaultCatalogPath(env: NodeJS.ProcessEnv = process.env): string {
  if (process.getuid?.() === 0) return '/var/lib/vcbt/catalog.sqlite';
  return join(env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'vcbt', 'catalog.sqlite');
}
export const DEFAULT_KEEP_HISTORY_MS = 90 * 86_400_000;
export const DEFAULT_LISTEN = { host: '127.0.0.1', port: 8420 };
export const DEFAULT_STOP_TIMEOUT_MS = 5 * 60_000;
/** How long the API reuses a VM inventory (GET /api/vms polled by the console) before asking vSphere again. */
export const DEFAULT_INVENTORY_CACHE_MS = 30_000;
export const defaultRetries: RetryPolicy = { count: 2, delayMs: 60_000, factor: 2 };
export const defaultLimits: LimitsConfig = { total: 4, perHost: 2, perDatastore: 4 };
export const DEFAULT_WAIT_BUSY_MS = 10 * 60_000;
export const DEFAULT_NOTIFY_ON: readonly NotifyOn[] = ['failed', 'warning'];
export const DEFAULT_NOTIFY_TIMEOUT_MS = 30_000;

/** Reads and checks a configuration file; CONFIG_UNREADABLE or CONFIG_INVALID (every problem at once). */
export async function loadConfig(file: string): Promise<ServiceConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const errno = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new ConfigError('CONFIG_UNREADABLE', `cannot read the configuration file ${file} (${errno})`, { file, errno }, { cause: error });
  }
  return parseConfig(text, file);
}

/** Parses configuration text; `file` names it in problems and anchors relative paths. */
export function parseConfig(text: string, file: string): ServiceConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const reader = new Reader(file, lines);
  for (const e of [...doc.errors, ...doc.warnings]) {
    const pos = lines.linePos(e.pos[0]);
    reader.problems.push({ file, line: pos.line, column: pos.col, path: '', message: `YAML: ${e.message.split('\n')[0]}` });
  }
  if (reader.problems.length > 0) reader.throwIfProblems();
  const config = readConfig(reader, doc.contents as Node | null, file);
  reader.throwIfProblems();
  return config as ServiceConfig;
}

/** A map node's entries by key, with the key nodes (for positions). */
type Entries = Map<string, { key: Scalar; value: Node | null }>;

/** Walks the YAML nodes, collecting problems with their positions. */
class Reader {
  readonly problems: ConfigProblem[] = [];
  readonly #file: string;
  readonly #lines: LineCounter;
  constructor(file: string, lines: LineCounter) {
    this.#file = file;
    this.#lines = lines;
  }

  problem(node: Node | null | undefined, path: string, message: string): undefined {
    const offset = node?.range?.[0] ?? 0;
    const pos = this.#lines.linePos(offset);
    this.problems.push({ file: this.#file, line: pos.line, column: pos.col, path, message });
    return undefined;
  }

  throwIfProblems(): void {
    if (this.problems.length === 0) return;
    this.problems.sort((a, b) => a.line - b.line || a.column - b.column);
    const shown = this.problems.slice(0, 20).map(formatProblem).join('\n  ');
    const more = this.problems.length > 20 ? `\n  (${this.problems.length - 20} more)` : '';
    throw new ConfigError('CONFIG_INVALID', `${this.problems.length} problem${this.problems.length === 1 ? '' : 's'} in ${this.#file}:\n  ${shown}${more}`, { file: this.#file, problems: this.problems });
  }

  /** A map's entries; unknown keys are problems. */
  map(node: Node | null | undefined, path: string, known: readonly string[] | undefined): Entries | undefined {
    if (!isMap(node)) return this.problem(node, path, `must be a mapping (key: value)`);
    const entries: Entries = new Map();
    for (const pair of node.items) {
      const key = pair.key as Node;
      if (!isScalar(key) || typeof key.value !== 'string') {
        this.problem(key, path, 'keys must be plain strings');
        continue;
      }
      const name = key.value;
      const at = path ? `${path}.${name}` : name;
      if (known && !known.includes(name)) {
        const hint = secretHints[name] ? `: ${secretHints[name]}` : ` (known keys: ${known.join(', ')})`;
        this.problem(key, at, `unknown key "${name}"${hint}`);
        continue;
      }
      entries.set(name, { key, value: (pair.value as Node | null) ?? null });
    }
    return entries;
  }

  string(node: Node | null | undefined, path: string): string | undefined {
    if (!isScalar(node) || typeof node.value !== 'string' || node.value === '') return this.problem(node, path, 'must be a non-empty string');
    return node.value;
  }

  integer(node: Node | null | undefined, path: string, min: number): number | undefined {
    if (!isScalar(node) || typeof node.value !== 'number' || !Number.isSafeInteger(node.value) || node.value < min) {
      return this.problem(node, path, `must be a whole number, at least ${min}`);
    }
    return node.value;
  }

  number(node: Node | null | undefined, path: string, min: number): number | undefined {
    if (!isScalar(node) || typeof node.value !== 'number' || !Number.isFinite(node.value) || node.value < min) return this.problem(node, path, `must be a number, at least ${min}`);
    return node.value;
  }

  boolean(node: Node | null | undefined, path: string): boolean | undefined {
    if (!isScalar(node) || typeof node.value !== 'boolean') return this.problem(node, path, 'must be true or false');
    return node.value;
  }

  /** `90` (seconds), `90s`, `10m`, `1.5h`, `2d`; zero allowed when asked. */
  duration(node: Node | null | undefined, path: string, allowZero: boolean): number | undefined {
    const value = isScalar(node) ? node.value : undefined;
    const ms = typeof value === 'number' ? value * 1000 : typeof value === 'string' ? durationMs(value) : undefined;
    if (ms === undefined || !Number.isFinite(ms) || ms < 0 || (ms === 0 && !allowZero)) {
      return this.problem(node, path, `must be a duration such as 30s, 10m, 2h or 1d${allowZero ? '' : ' (more than 0)'}`);
    }
    return Math.round(ms);
  }

  strings(node: Node | null | undefined, path: string): Array<{ text: string; node: Node }> | undefined {
    if (isScalar(node) && typeof node.value === 'string') return [{ text: node.value, node }];
    if (!isSeq(node)) return this.problem(node, path, 'must be a string or a list of strings');
    const out: Array<{ text: string; node: Node }> = [];
    node.items.forEach((item, i) => {
      const text = this.string(item as Node, `${path}[${i}]`);
      if (text !== undefined) out.push({ text, node: item as Node });
    });
    return out;
  }
}

const secretHints: Record<string, string> = {
  password: 'secrets are never written in the configuration; use passwordFile (a file holding it) or passwordEnv (an environment variable name)',
  passphrase: 'secrets are never written in the configuration; use passphraseFile or passphraseEnv',
};

const durationUnitsMs: Record<string, number> = { '': 1000, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

function durationMs(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*(s|m|h|d|)$/.exec(text.trim());
  return match ? Number(match[1]) * (durationUnitsMs[match[2]] as number) : undefined;
}

function anchored(file: string, path: string): string {
  return isAbsolute(path) ? path : resolve(dirname(resolve(file)), path);
}

function readConfig(r: Reader, root: Node | null, file: string): ServiceConfig | undefined {
  const top = r.map(root, '', ['servers', 'repositories', 'jobs', 'catalog', 'daemon', 'notifiers']);
  if (!top) return undefined;
  const servers = new Map<string, ServerConfig>();
  const repositories = new Map<string, RepositoryConfig>();
  const jobs = new Map<string, JobConfig>();
  const serverEntries = top.has('servers') ? r.map(top.get('servers')?.value, 'servers', undefined) : r.problem(root, 'servers', 'is required: at least one vSphere server');
  for (const [name, { value }] of serverEntries ?? []) {
    const server = readServer(r, value, `servers.${name}`, name, file);
    if (server) servers.set(name, server);
  }
  const repoEntries = top.has('repositories') ? r.map(top.get('repositories')?.value, 'repositories', undefined) : undefined;
  for (const [name, { value }] of repoEntries ?? []) {
    const repository = readRepository(r, value, `repositories.${name}`, name, file);
    if (repository) repositories.set(name, repository);
  }
  const catalog: CatalogConfig = { path: defaultCatalogPath(), keepHistoryMs: DEFAULT_KEEP_HISTORY_MS };
  if (top.has('catalog')) {
    const entries = r.map(top.get('catalog')?.value, 'catalog', ['path', 'keepHistory']);
    const path = entries?.has('path') ? r.string(entries.get('path')?.value, 'catalog.path') : undefined;
    if (path) catalog.path = anchored(file, path);
    const keep = entries?.has('keepHistory') ? r.duration(entries.get('keepHistory')?.value, 'catalog.keepHistory', false) : undefined;
    if (keep !== undefined) catalog.keepHistoryMs = keep;
  }
  const daemon: DaemonConfig = { listen: { ...DEFAULT_LISTEN }, stopTimeoutMs: DEFAULT_STOP_TIMEOUT_MS, inventoryCacheMs: DEFAULT_INVENTORY_CACHE_MS, restoreDirectory: undefined, tls: undefined };
  if (top.has('daemon')) {
    const entries = r.map(top.get('daemon')?.value, 'daemon', ['listen', 'stopTimeout', 'inventoryCache', 'restoreDirectory', 'tls']);
    if (entries?.has('tls')) {
      const node = entries.get('tls')?.value;
      const te = r.map(node, 'daemon.tls', ['certificateFile', 'keyFile']);
      const cert = te?.has('certificateFile') ? r.string(te.get('certificateFile')?.value, 'daemon.tls.certificateFile') : r.problem(node, 'daemon.tls.certificateFile', 'is required: the PEM file of the certificate (chain)');
      const key = te?.has('keyFile') ? r.string(te.get('keyFile')?.value, 'daemon.tls.keyFile') : r.problem(node, 'daemon.tls.keyFile', 'is required: the PEM file of its private key (mode 0600)');
      if (cert !== undefined && key !== undefined) daemon.tls = { certificateFile: anchored(file, cert), keyFile: anchored(file, key) };
    }
    if (entries?.has('listen')) {
      const node = entries.get('listen')?.value;
      const text = r.string(node, 'daemon.listen');
      const match = text === undefined ? null : /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text);
      if (text !== undefined && (!match || Number(match[3]) > 65535)) r.problem(node, 'daemon.listen', 'must be HOST:PORT (127.0.0.1:8420, [::1]:8420; port 0 picks a free one)');
      else if (match) daemon.listen = { host: (match[1] ?? match[2]) as string, port: Number(match[3]) };
    }
    const stop = entries?.has('stopTimeout') ? r.duration(entries.get('stopTimeout')?.value, 'daemon.stopTimeout', true) : undefined;
    if (stop !== undefined) daemon.stopTimeoutMs = stop;
    const inventoryCache = entries?.has('inventoryCache') ? r.duration(entries.get('inventoryCache')?.value, 'daemon.inventoryCache', true) : undefined;
    if (inventoryCache !== undefined) daemon.inventoryCacheMs = inventoryCache;
    const restoreDirectory = entries?.has('restoreDirectory') ? r.string(entries.get('restoreDirectory')?.value, 'daemon.restoreDirectory') : undefined;
    if (restoreDirectory !== undefined) daemon.restoreDirectory = anchored(file, restoreDirectory);
  }
  const notifiers = new Map<string, NotifierConfig>();
  const notifierEntries = top.has('notifiers') ? r.map(top.get('notifiers')?.value, 'notifiers', undefined) : undefined;
  for (const [name, { value }] of notifierEntries ?? []) {
    const notifier = readNotifier(r, value, `notifiers.${name}`, name, file);
    if (notifier) notifiers.set(name, notifier);
  }
  const jobEntries = top.has('jobs') ? r.map(top.get('jobs')?.value, 'jobs', undefined) : undefined;
  for (const [name, { value, key }] of jobEntries ?? []) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) r.problem(key, `jobs.${name}`, 'a job name is letters, digits, ".", "_" and "-"');
    const job = readJob(r, value, `jobs.${name}`, name, file, servers, repositories, serverEntries, repoEntries, notifierEntries);
    if (job) jobs.set(name, job);
  }
  return { file: resolve(file), daemon, servers, repositories, jobs, notifiers, catalog };
}

function readSecret(r: Reader, entries: Entries, path: string, what: 'password' | 'passphrase' | 'url', file: string): SecretSource | undefined {
  const fileKey = `${what}File`;
  const envKey = `${what}Env`;
  if (entries.has(fileKey) && entries.has(envKey)) return r.problem(entries.get(envKey)?.key, `${path}.${envKey}`, `give ${fileKey} or ${envKey}, not both`);
  if (entries.has(fileKey)) {
    const f = r.string(entries.get(fileKey)?.value, `${path}.${fileKey}`);
    return f === undefined ? undefined : { file: anchored(file, f) };
  }
  if (entries.has(envKey)) {
    const name = r.string(entries.get(envKey)?.value, `${path}.${envKey}`);
    if (name !== undefined && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) return r.problem(entries.get(envKey)?.value, `${path}.${envKey}`, 'must be an environment variable name (the secret itself never goes here)');
    return name === undefined ? undefined : { env: name };
  }
  return undefined;
}

function readServer(r: Reader, node: Node | null | undefined, path: string, name: string, file: string): ServerConfig | undefined {
  const e = r.map(node, path, ['url', 'user', 'passwordFile', 'passwordEnv', 'thumbprint']);
  if (!e) return undefined;
  const url = e.has('url') ? r.string(e.get('url')?.value, `${path}.url`) : r.problem(node, `${path}.url`, 'is required');
  const user = e.has('user') ? r.string(e.get('user')?.value, `${path}.user`) : r.problem(node, `${path}.user`, 'is required');
  const thumbprint = e.has('thumbprint') ? r.string(e.get('thumbprint')?.value, `${path}.thumbprint`) : undefined;
  if (thumbprint !== undefined && !/^([0-9A-Fa-f]{2}:?){20}$|^([0-9A-Fa-f]{2}:?){32}$/.test(thumbprint)) {
    r.problem(e.get('thumbprint')?.value, `${path}.thumbprint`, 'must be a SHA-1 or SHA-256 fingerprint in hex (96:09:...)');
  }
  const password = readSecret(r, e, path, 'password', file) ?? { env: 'VCBT_PASSWORD' };
  if (url === undefined || user === undefined) return undefined;
  return { name, url, user, password, thumbprint };
}

function readRepository(r: Reader, node: Node | null | undefined, path: string, name: string, file: string): RepositoryConfig | undefined {
  const e = r.map(node, path, ['path', 'passphraseFile', 'passphraseEnv']);
  if (!e) return undefined;
  const repoPath = e.has('path') ? r.string(e.get('path')?.value, `${path}.path`) : r.problem(node, `${path}.path`, 'is required');
  const passphrase = readSecret(r, e, path, 'passphrase', file);
  if (repoPath === undefined) return undefined;
  return { name, path: anchored(file, repoPath), passphrase };
}

const jobKeys = ['type', 'server', 'repository', 'replica', 'vms', 'transport', 'quiesce', 'schedule', 'retention', 'retries', 'limits', 'cbt', 'waitBusy', 'resetCbtOnResize', 'rpo', 'verify', 'notify'];

function readNotifier(r: Reader, node: Node | null | undefined, path: string, name: string, file: string): NotifierConfig | undefined {
  const typeNode = isMap(node) ? (node.items.find((p) => isScalar(p.key) && p.key.value === 'type')?.value as Node | undefined) : undefined;
  const type = isScalar(typeNode) ? typeNode.value : undefined;
  if (type !== 'webhook' && type !== 'email') {
    if (isMap(node)) r.problem(typeNode ?? node, `${path}.type`, 'is required: webhook or email');
    else r.map(node, path, undefined);
    return undefined;
  }
  const timeoutOf = (e: Entries) => (e.has('timeout') ? (r.duration(e.get('timeout')?.value, `${path}.timeout`, false) ?? DEFAULT_NOTIFY_TIMEOUT_MS) : DEFAULT_NOTIFY_TIMEOUT_MS);
  if (type === 'webhook') {
    const e = r.map(node, path, ['type', 'url', 'urlFile', 'urlEnv', 'format', 'timeout']);
    if (!e) return undefined;
    const given = ['url', 'urlFile', 'urlEnv'].filter((k) => e.has(k));
    if (given.length !== 1) return r.problem(node, `${path}.url`, 'give exactly one of url, urlFile (a file holding it) or urlEnv (an environment variable name); a chat webhook URL is a secret: keep it in a file');
    let url: WebhookNotifierConfig['url'] | undefined;
    if (e.has('url')) {
      const text = r.string(e.get('url')?.value, `${path}.url`);
      if (text !== undefined && !/^https?:\/\/[^\s]+$/.test(text)) r.problem(e.get('url')?.value, `${path}.url`, 'must be an http:// or https:// URL');
      else if (text !== undefined) url = { text };
    } else url = readSecret(r, e, path, 'url', file);
    let format: WebhookNotifierConfig['format'] = 'json';
    if (e.has('format')) {
      const f = r.string(e.get('format')?.value, `${path}.format`);
      if (f === 'json' || f === 'text') format = f;
      else if (f !== undefined) r.problem(e.get('format')?.value, `${path}.format`, 'must be json (the run summary document) or text ({"text": ...} for Slack and Teams)');
    }
    const timeoutMs = timeoutOf(e);
    return url === undefined ? undefined : { name, type, url, format, timeoutMs };
  }
  const e = r.map(node, path, ['type', 'from', 'to', 'smtp', 'timeout']);
  if (!e) return undefined;
  const from = e.has('from') ? r.string(e.get('from')?.value, `${path}.from`) : r.problem(node, `${path}.from`, 'is required: the sender address');
  const to = e.has('to') ? r.strings(e.get('to')?.value, `${path}.to`)?.map((s) => s.text) : r.problem(node, `${path}.to`, 'is required: one or more recipient addresses');
  for (const [i, address] of (to ?? []).entries()) if (!/^[^\s@]+@[^\s@]+$/.test(address)) r.problem(e.get('to')?.value, `${path}.to[${i}]`, `"${address}" is not an e-mail address`);
  if (from !== undefined && !/^[^\s@<>]+@[^\s@<>]+$|^[^<>]*<[^\s@<>]+@[^\s@<>]+>$/.test(from)) r.problem(e.get('from')?.value, `${path}.from`, `"${from}" is not an e-mail address`);
  const smtpNode = e.get('smtp')?.value;
  const se = e.has('smtp') ? r.map(smtpNode, `${path}.smtp`, ['host', 'port', 'tls', 'caFile', 'user', 'passwordFile', 'passwordEnv']) : r.problem(node, `${path}.smtp`, 'is required: host (and port, tls, user, passwordFile)');
  if (!se) return undefined;
  const host = se.has('host') ? r.string(se.get('host')?.value, `${path}.smtp.host`) : r.problem(smtpNode, `${path}.smtp.host`, 'is required');
  let tls: EmailNotifierConfig['smtp']['tls'] = 'starttls';
  if (se.has('tls')) {
    const t = r.string(se.get('tls')?.value, `${path}.smtp.tls`);
    if (t === 'starttls' || t === 'tls' || t === 'none') tls = t;
    else if (t !== undefined) r.problem(se.get('tls')?.value, `${path}.smtp.tls`, 'must be starttls (default), tls (implicit TLS, port 465) or none');
  }
  const port = se.has('port') ? (r.integer(se.get('port')?.value, `${path}.smtp.port`, 1) ?? 0) : tls === 'tls' ? 465 : tls === 'none' ? 25 : 587;
  if (port > 65535) r.problem(se.get('port')?.value, `${path}.smtp.port`, 'must be at most 65535');
  const caText = se.has('caFile') ? r.string(se.get('caFile')?.value, `${path}.smtp.caFile`) : undefined;
  const user = se.has('user') ? r.string(se.get('user')?.value, `${path}.smtp.user`) : undefined;
  const password = readSecret(r, se, `${path}.smtp`, 'password', file);
  if (user !== undefined && password === undefined) r.problem(smtpNode, `${path}.smtp.passwordFile`, 'is required with user (or passwordEnv)');
  if (user === undefined && password !== undefined) r.problem(smtpNode, `${path}.smtp.user`, 'is required with a password');
  const timeoutMs = timeoutOf(e);
  if (from === undefined || to === undefined || host === undefined) return undefined;
  return { name, type, from, to, smtp: { host, port, tls, caFile: caText === undefined ? undefined : anchored(file, caText), user, password }, timeoutMs };
}

function readNotify(r: Reader, node: Node | null | undefined, path: string, notifierEntries: Entries | undefined): NotifyRule[] {
  if (!isSeq(node)) return (r.problem(node, path, 'must be a list of notifier names or {notifier: NAME, on: [failed, warning, success]}'), []);
  const rules: NotifyRule[] = [];
  node.items.forEach((item, i) => {
    const at = `${path}[${i}]`;
    let name: string | undefined;
    let nameNode: Node | null | undefined = item as Node;
    let on: NotifyOn[] = [...DEFAULT_NOTIFY_ON];
    if (isMap(item)) {
      const e = r.map(item as Node, at, ['notifier', 'on']);
      nameNode = e?.get('notifier')?.value;
      name = e?.has('notifier') ? r.string(nameNode, `${at}.notifier`) : r.problem(item as Node, `${at}.notifier`, 'is required: a name under notifiers');
      if (e?.has('on')) {
        on = [];
        for (const { text, node: n } of r.strings(e.get('on')?.value, `${at}.on`) ?? []) {
          if (text === 'success' || text === 'warning' || text === 'failed') on.push(text);
          else r.problem(n, `${at}.on`, `"${text}" is not a run result: failed, warning or success`);
        }
      }
    } else name = r.string(item as Node, at);
    if (name === undefined) return;
    if (!notifierEntries?.has(name)) {
      r.problem(nameNode, at, `no notifier "${name}" under notifiers (there: ${[...(notifierEntries?.keys() ?? [])].join(', ') || 'none'})`);
      return;
    }
    rules.push({ notifier: name, on });
  });
  return rules;
}

function readVerify(r: Reader, node: Node | null | undefined, path: string): VerifyConfig | undefined {
  const e = r.map(node, path, ['schedule', 'points', 'readData']);
  if (!e) return undefined;
  const schedule = e.has('schedule') ? readSchedule(r, e.get('schedule')?.value, `${path}.schedule`) : r.problem(node, `${path}.schedule`, 'is required: when to verify (cron)');
  let points: VerifyPoints = 'latest';
  if (e.has('points')) {
    const n = e.get('points')?.value;
    const value = isScalar(n) ? n.value : undefined;
    if (value === 'latest' || value === 'all') points = value;
    else if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 1) points = { random: value };
    else r.problem(n, `${path}.points`, 'must be latest (the newest point of each VM), all, or a number of points picked at random');
  }
  const readData = e.has('readData') ? (r.boolean(e.get('readData')?.value, `${path}.readData`) ?? true) : true;
  return schedule === undefined ? undefined : { schedule, points, readData };
}

function readJob(
  r: Reader,
  node: Node | null,
  path: string,
  name: string,
  file: string,
  servers: ReadonlyMap<string, ServerConfig>,
  repositories: ReadonlyMap<string, RepositoryConfig>,
  serverEntries: Entries | undefined,
  repoEntries: Entries | undefined,
  notifierEntries: Entries | undefined,
): JobConfig | undefined {
  const e = r.map(node, path, jobKeys);
  if (!e) return undefined;
  const get = (key: string) => e.get(key)?.value;
  const typeText = e.has('type') ? r.string(get('type'), `${path}.type`) : r.problem(node, `${path}.type`, 'is required: backup or replicate');
  let type: JobConfig['type'] | undefined;
  if (typeText === 'backup' || typeText === 'replicate') type = typeText;
  else if (typeText !== undefined) r.problem(get('type'), `${path}.type`, `must be backup or replicate, not "${typeText}"`);

  const server = e.has('server') ? r.string(get('server'), `${path}.server`) : r.problem(node, `${path}.server`, 'is required: the name of an entry under servers');
  if (server !== undefined && !servers.has(server) && !serverEntries?.has(server)) {
    r.problem(get('server'), `${path}.server`, `no server "${server}" under servers (there: ${[...(serverEntries?.keys() ?? [])].join(', ') || 'none'})`);
  }
  let repository: string | undefined;
  let replica: JobConfig['replica'];
  if (type === 'backup') {
    if (e.has('replica')) r.problem(e.get('replica')?.key, `${path}.replica`, 'belongs to replicate jobs; a backup job has a repository');
    repository = e.has('repository') ? r.string(get('repository'), `${path}.repository`) : r.problem(node, `${path}.repository`, 'is required for a backup job');
    if (repository !== undefined && !repositories.has(repository) && !repoEntries?.has(repository)) {
      r.problem(get('repository'), `${path}.repository`, `no repository "${repository}" under repositories (there: ${[...(repoEntries?.keys() ?? [])].join(', ') || 'none'})`);
    }
  } else if (type === 'replicate') {
    if (e.has('repository')) r.problem(e.get('repository')?.key, `${path}.repository`, 'belongs to backup jobs; a replicate job has replica.target');
    if (e.has('retention')) r.problem(e.get('retention')?.key, `${path}.retention`, 'belongs to backup jobs (a replica keeps one state)');
    const re = e.has('replica') ? r.map(get('replica'), `${path}.replica`, ['target', 'stateDir']) : r.problem(node, `${path}.replica`, 'is required for a replicate job');
    if (re) {
      const target = re.has('target') ? r.string(re.get('target')?.value, `${path}.replica.target`) : r.problem(get('replica'), `${path}.replica.target`, 'is required');
      if (target !== undefined && !target.includes('{disk}')) r.problem(re.get('target')?.value, `${path}.replica.target`, 'must contain {disk} (and usually {vm}) so that every disk gets its own target');
      const stateDir = re.has('stateDir') ? r.string(re.get('stateDir')?.value, `${path}.replica.stateDir`) : undefined;
      if (target !== undefined) replica = { target: /^[a-z]+:\/\//.test(target) ? target : anchored(file, target), stateDir: stateDir === undefined ? undefined : anchored(file, stateDir) };
    }
  }

  const vms = e.has('vms') ? readSelection(r, get('vms'), `${path}.vms`) : r.problem(node, `${path}.vms`, 'is required: which VMs (vms.include)');
  const transport = e.has('transport') ? readTransport(r, get('transport'), `${path}.transport`, file) : defaultTransport();
  const quiesce = e.has('quiesce') ? (r.boolean(get('quiesce'), `${path}.quiesce`) ?? false) : false;
  const resetCbtOnResize = e.has('resetCbtOnResize') ? (r.boolean(get('resetCbtOnResize'), `${path}.resetCbtOnResize`) ?? true) : true;
  const schedule = e.has('schedule') ? readSchedule(r, get('schedule'), `${path}.schedule`) : undefined;
  const retention = e.has('retention') ? readRetention(r, get('retention'), `${path}.retention`) : undefined;
  const retries = e.has('retries') ? readRetries(r, get('retries'), `${path}.retries`) : { ...defaultRetries };
  const limits = e.has('limits') ? readLimits(r, get('limits'), `${path}.limits`) : { ...defaultLimits };
  let cbt: JobConfig['cbt'] = 'enable';
  if (e.has('cbt')) {
    const text = r.string(get('cbt'), `${path}.cbt`);
    if (text === 'enable' || text === 'report') cbt = text;
    else if (text !== undefined) r.problem(get('cbt'), `${path}.cbt`, `must be enable (switch CBT on where it is off) or report (leave the VM untouched), not "${text}"`);
  }
  const waitBusyMs = e.has('waitBusy') ? (r.duration(get('waitBusy'), `${path}.waitBusy`, true) ?? 0) : DEFAULT_WAIT_BUSY_MS;
  const rpoMs = e.has('rpo') ? r.duration(get('rpo'), `${path}.rpo`, false) : undefined;
  if (type === 'replicate' && e.has('verify')) r.problem(e.get('verify')?.key, `${path}.verify`, 'belongs to backup jobs (it reads restore points)');
  const verify = e.has('verify') && type === 'backup' ? readVerify(r, get('verify'), `${path}.verify`) : undefined;
  const notify = e.has('notify') ? readNotify(r, get('notify'), `${path}.notify`, notifierEntries) : [];
  if (type === undefined || server === undefined || vms === undefined || transport === undefined) return undefined;
  return { name, type, server, repository, replica, vms, transport, quiesce, schedule, retention, retries, limits, cbt, waitBusyMs, resetCbtOnResize, rpoMs, verify, notify };
}

function defaultTransport(): TransportConfig {
  return { type: 'http', nbdUri: undefined, vddk: undefined, datastoreDirs: new Map(), ioTimeoutMs: undefined };
}

function readSelection(r: Reader, node: Node | null | undefined, path: string): VmSelection | undefined {
  const e = r.map(node, path, ['include', 'exclude', 'excludeDisks']);
  if (!e) return undefined;
  const rules = (key: 'include' | 'exclude'): VmRule[] => {
    const items = r.strings(e.get(key)?.value, `${path}.${key}`) ?? [];
    const out: VmRule[] = [];
    items.forEach(({ text, node: item }, i) => {
      const rule = parseVmRule(text);
      if (typeof rule === 'string') r.problem(item, `${path}.${key}[${i}]`, rule);
      else out.push(rule);
    });
    return out;
  };
  const include = e.has('include') ? rules('include') : (r.problem(node, `${path}.include`, 'is required: names, patterns, folder:, host:, cluster:, pool:, attribute: or moref: rules'), []);
  if (e.has('include') && include.length === 0 && r.problems.length === 0) r.problem(e.get('include')?.value, `${path}.include`, 'selects nothing: give at least one rule');
  const exclude = e.has('exclude') ? rules('exclude') : [];
  const excludeDisks: VmSelection['excludeDisks'] = [];
  if (e.has('excludeDisks')) {
    const list = e.get('excludeDisks')?.value;
    if (!isSeq(list)) r.problem(list, `${path}.excludeDisks`, 'must be a list of {vm: PATTERN, disks: [KEY, ...]}');
    else {
      list.items.forEach((item, i) => {
        const at = `${path}.excludeDisks[${i}]`;
        const de = r.map(item as Node, at, ['vm', 'disks']);
        if (!de) return;
        const vm = de.has('vm') ? r.string(de.get('vm')?.value, `${at}.vm`) : r.problem(item as Node, `${at}.vm`, 'is required: a VM name or pattern');
        const disksNode = de.get('disks')?.value;
        const keys: number[] = [];
        if (!isSeq(disksNode)) r.problem(disksNode ?? (item as Node), `${at}.disks`, 'is required: a list of device keys (2000, 2001, ...)');
        else disksNode.items.forEach((k, j) => {
          const key = r.integer(k as Node, `${at}.disks[${j}]`, 1);
          if (key !== undefined) keys.push(key);
        });
        if (vm !== undefined) excludeDisks.push({ vm, diskKeys: keys });
      });
    }
  }
  return { include, exclude, excludeDisks };
}

function readTransport(r: Reader, node: Node | null | undefined, path: string, file: string): TransportConfig | undefined {
  const e = r.map(node, path, ['type', 'nbdUri', 'vddkLibdir', 'vddkTransports', 'nbdkit', 'datastoreDirs', 'ioTimeout']);
  if (!e) return undefined;
  const t = defaultTransport();
  if (e.has('type')) {
    const text = r.string(e.get('type')?.value, `${path}.type`);
    if (text !== undefined && !(transportNames as readonly string[]).includes(text)) r.problem(e.get('type')?.value, `${path}.type`, `must be one of ${transportNames.join(', ')}`);
    else if (text !== undefined) t.type = text as TransportName;
  }
  if (e.has('nbdUri')) t.nbdUri = r.string(e.get('nbdUri')?.value, `${path}.nbdUri`);
  if (e.has('ioTimeout')) t.ioTimeoutMs = r.duration(e.get('ioTimeout')?.value, `${path}.ioTimeout`, false);
  if (e.has('vddkLibdir')) {
    const libdir = r.string(e.get('vddkLibdir')?.value, `${path}.vddkLibdir`);
    const transports = e.has('vddkTransports') ? r.strings(e.get('vddkTransports')?.value, `${path}.vddkTransports`)?.map((s) => s.text) : undefined;
    const nbdkit = e.has('nbdkit') ? r.string(e.get('nbdkit')?.value, `${path}.nbdkit`) : undefined;
    if (libdir !== undefined) t.vddk = { libdir: anchored(file, libdir), transports, nbdkit };
  }
  if (e.has('datastoreDirs')) {
    const dirs = new Map<string, string>();
    for (const [name, { value }] of r.map(e.get('datastoreDirs')?.value, `${path}.datastoreDirs`, undefined) ?? []) {
      const dir = r.string(value, `${path}.datastoreDirs.${name}`);
      if (dir !== undefined) dirs.set(name, anchored(file, dir));
    }
    t.datastoreDirs = dirs;
  }
  if (t.type === 'nbd' && !t.nbdUri) r.problem(node, `${path}.nbdUri`, 'is required with type nbd (e.g. nbd://proxy/{snapshot}/{disk})');
  if (t.type === 'vddk' && !t.vddk) r.problem(node, `${path}.vddkLibdir`, 'is required with type vddk (the unpacked VMware VDDK)');
  if (t.type === 'file' && t.datastoreDirs.size === 0) r.problem(node, `${path}.datastoreDirs`, 'is required with type file (datastore name: local directory)');
  return t;
}

function readSchedule(r: Reader, node: Node | null | undefined, path: string): Schedule | undefined {
  let cron: string | undefined;
  let timezone: string | undefined;
  let cronNode: Node | null | undefined = node;
  if (isMap(node)) {
    const e = r.map(node, path, ['cron', 'timezone']);
    cronNode = e?.get('cron')?.value;
    cron = e?.has('cron') ? r.string(cronNode, `${path}.cron`) : r.problem(node, `${path}.cron`, 'is required');
    timezone = e?.has('timezone') ? r.string(e.get('timezone')?.value, `${path}.timezone`) : undefined;
  } else {
    cron = r.string(node, path);
  }
  if (cron === undefined) return undefined;
  const schedule = { cron, timezone };
  const problem = scheduleProblem(schedule);
  if (problem) return r.problem(cronNode, path, problem);
  return schedule;
}

function readRetention(r: Reader, node: Node | null | undefined, path: string): RetentionPolicy | undefined {
  const e = r.map(node, path, ['keepLast', 'keepDaily', 'keepWeekly', 'keepMonthly']);
  if (!e) return undefined;
  let malformed = false;
  const count = (key: string) => {
    if (!e.has(key)) return 0;
    const n = r.integer(e.get(key)?.value, `${path}.${key}`, 0);
    if (n === undefined) malformed = true;
    return n ?? 0;
  };
  const policy = { keepLast: count('keepLast'), keepDaily: count('keepDaily'), keepWeekly: count('keepWeekly'), keepMonthly: count('keepMonthly') };
  if (malformed) return undefined;
  if (policy.keepLast + policy.keepDaily + policy.keepWeekly + policy.keepMonthly === 0) {
    return r.problem(node, path, 'keeps nothing: give at least one of keepLast, keepDaily, keepWeekly, keepMonthly above 0 (a policy that keeps nothing would delete every restore point)');
  }
  return policy;
}

function readRetries(r: Reader, node: Node | null | undefined, path: string): RetryPolicy {
  const e = r.map(node, path, ['count', 'delay', 'factor']);
  const policy = { ...defaultRetries };
  if (!e) return policy;
  if (e.has('count')) policy.count = r.integer(e.get('count')?.value, `${path}.count`, 0) ?? policy.count;
  if (e.has('delay')) policy.delayMs = r.duration(e.get('delay')?.value, `${path}.delay`, true) ?? policy.delayMs;
  if (e.has('factor')) policy.factor = r.number(e.get('factor')?.value, `${path}.factor`, 1) ?? policy.factor;
  return policy;
}

function readLimits(r: Reader, node: Node | null | undefined, path: string): LimitsConfig {
  const e = r.map(node, path, ['total', 'perHost', 'perDatastore']);
  const limits = { ...defaultLimits };
  if (!e) return limits;
  for (const key of ['total', 'perHost', 'perDatastore'] as const) {
    if (e.has(key)) limits[key] = r.integer(e.get(key)?.value, `${path}.${key}`, 1) ?? limits[key];
  }
  return limits;
}

/** The job by name, or JOB_NOT_FOUND naming the jobs there are. */
export function jobByName(config: ServiceConfig, name: string): JobConfig {
  const job = config.jobs.get(name);
  if (!job) throw new ConfigError('JOB_NOT_FOUND', `no job "${name}" in ${config.file} (jobs: ${[...config.jobs.keys()].join(', ') || 'none'})`, { job: name, file: config.file });
  return job;
}
