// The types of the --json documents vcbt prints (one per command, and the error document).
// These types are the contract: docs/json/*.schema.json are generated from them
// (scripts/json-schemas.ts) and test/cli/json-schemas.test.ts fails when they drift.
import type { ErrorCode } from '../errors.ts';

/** The format version of every --json document; bumped only by an incompatible change. */
export const JSON_FORMAT_VERSION = 1;

/** Printed on stdout instead of the command's document when a command fails under --json. */
export interface ErrorDocument {
  version: typeof JSON_FORMAT_VERSION;
  type: 'error';
  /** The command that failed (backup, points, ...). */
  command: string;
  /** A stable code (docs/errors.md); INTERNAL means a bug. */
  code: ErrorCode;
  message: string;
  /** What was wrong, as fields: server, vm, diskKey, path, offsetBytes, ... (varies by code). */
  context: Record<string, unknown>;
  /** The process's exit code (1 failure, 2 usage, 130/143 after a signal). */
  exitCode: number;
}

export type JsonDocument = ErrorDocument | { version: typeof JSON_FORMAT_VERSION; type: string };
