// Parsing of command lines and flag values shared by commands: numbers and sizes with clear
// usage errors, and one rule for repeated flags.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors.ts';

/**
 * parseArgs, strict, plus the rule for repeated flags: a flag declared `multiple` takes every
 * value given; any other flag given twice is a usage error (never "the last one wins").
 */
export function parseFlags<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  const parsed = parseArgs({ ...config, strict: true, tokens: true });
  const seen = new Set<string>();
  for (const token of parsed.tokens ?? []) {
    if (token.kind !== 'option' || config.options?.[token.name]?.multiple) continue;
    if (seen.has(token.name)) throw new UsageError(`--${token.name} was given more than once; it takes one value`, { flag: `--${token.name}` });
    seen.add(token.name);
  }
  return parsed as unknown as ReturnType<typeof parseArgs<T>>;
}

export function parsePositiveInteger(text: string, flag: string, maxValue = Number.MAX_SAFE_INTEGER): number {
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text)) || Number(text) <= 0) {
    throw new UsageError(`${flag} must be a positive whole number, got "${text}"`, { flag });
  }
  if (Number(text) > maxValue) throw new UsageError(`${flag} must be at most ${maxValue}, got ${text}`, { flag, maxValue });
  return Number(text);
}

/** Each copy in flight holds one piece buffer (256 KiB): 1024 of them is 256 MiB, far past any gain. */
export const MAX_IN_FLIGHT = 1024;

/** --in-flight N: copies in flight at once, 1..MAX_IN_FLIGHT (undefined: the default). */
export function parseInFlight(text: string | undefined): number | undefined {
  return text === undefined ? undefined : parsePositiveInteger(text, '--in-flight', MAX_IN_FLIGHT);
}

const sizeUnits: Record<string, number> = { '': 1, b: 1, k: 1024, kib: 1024, m: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tib: 1024 ** 4 };

/** "4M", "256KiB", "1g", "65536" -> bytes (binary units). */
export function parseSize(text: string, flag: string): number {
  const match = /^(\d+)\s*([a-z]*)$/i.exec(text.trim());
  const unit = match ? sizeUnits[match[2].toLowerCase()] : undefined;
  if (!match || unit === undefined || Number(match[1]) <= 0) {
    throw new UsageError(`${flag} must be a size like 65536, 256K or 4MiB, got "${text}"`, { flag });
  }
  return Number(match[1]) * unit;
}

/** --progress-interval SECONDS, for every command that shows progress. */
export const progressFlags = {
  'progress-interval': { type: 'string' },
} as const;

export const progressUsage = `  --progress-interval S  when stderr is not a terminal: seconds between progress lines
                         (default 10; log lines there carry ISO 8601 timestamps)`;

/** --progress-interval as milliseconds (undefined: the default). */
export function parseProgressInterval(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const seconds = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || !(seconds > 0) || seconds > 86_400) throw new UsageError(`--progress-interval wants seconds between 0 and 86400, got "${text}"`, { flag: '--progress-interval' });
  return Math.round(seconds * 1000);
}
