// The project's error base class. Every error vcbt raises on purpose is a VcbtError with a
// stable machine-readable `code` (documented next to the class that throws it) and the
// context a user needs to act: which VM, disk, offset, server, file. The CLI prints
// `code: message` and, with --json, the context object. Secrets never go into either.

export class VcbtError extends Error {
  readonly code: string;
  readonly context: Readonly<Record<string, unknown>>;

  constructor(code: string, message: string, context: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.context = context;
  }
}

/** A command line that cannot be acted on (unknown flag, missing value, bad number). */
export class UsageError extends VcbtError {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super('USAGE', message, context);
  }
}

export function isVcbtError(error: unknown): error is VcbtError {
  return error instanceof VcbtError;
}
