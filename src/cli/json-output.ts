// The --json documents: what every command prints on stdout with --json, one document per
// run. Terms:
// - document: one JSON object; `version` is the format version of every document (bumped
//   only by an incompatible change: a field removed, renamed or retyped; new fields are
//   compatible), `type` says which document it is (the command's name, or "error").
// - error document: printed instead of the command's document when the command fails.
// The TypeScript types of the documents live in src/cli/json-documents.ts; their JSON
// Schemas are generated from those types into docs/json/ (see docs/json.md).
import type { CommandIo } from './command.ts';
import { documentHeader, type BackupDocument, type ErrorDocument, type JsonDocument, type ReplicateDocument } from './json-documents.ts';
import type { BackupResult } from '../jobs/backup.ts';
import type { ReplicateResult } from '../jobs/replicate.ts';
import type { VcbtError } from '../errors.ts';

/**
 * Writes one document on stdout: pretty-printed, or on one line (`compact`) for a document
 * a script reads while vcbt keeps running (export). Bigints become numbers, elapsedMs whole.
 */
export function writeJsonDocument(io: Pick<CommandIo, 'stdout'>, document: JsonDocument, options: { compact?: boolean } = {}): void {
  const text = JSON.stringify(
    document,
    (key, value: unknown) => {
      if (typeof value === 'bigint') return Number(value);
      if (key === 'elapsedMs' && typeof value === 'number') return Math.round(value);
      if (value instanceof Map) return Object.fromEntries(value);
      return value;
    },
    options.compact ? undefined : 2,
  );
  io.stdout.write(`${text}\n`);
}

/** The error document for a failed command; `error` undefined means a bug (INTERNAL). */
export function errorDocument(command: string, error: VcbtError | undefined, thrown: unknown, exitCode: number): ErrorDocument {
  return {
    ...documentHeader('error'),
    command,
    code: error?.code ?? 'INTERNAL',
    message: error?.message ?? (thrown instanceof Error ? thrown.message : String(thrown)),
    context: error ? plainContext(error.context) : {},
    exitCode,
  };
}

/** Context values as JSON can hold them (an Error as its message, bigints as numbers). */
function plainContext(context: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(context)) {
    if (value === undefined) continue;
    out[key] = value instanceof Error ? value.message : typeof value === 'bigint' ? Number(value) : value;
  }
  return out;
}

/** The backup document: the job's result under a header. */
export function backupDocument(result: BackupResult): BackupDocument {
  return { ...documentHeader('backup'), ...result };
}

/** The replicate document: the job's result under a header. */
export function replicateDocument(result: ReplicateResult): ReplicateDocument {
  return { ...documentHeader('replicate'), ...result };
}
