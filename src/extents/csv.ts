// The seed's CSV of changed areas: one `offset,length` line per area, in bytes, no header.
// Parsing accepts blank lines, a trailing newline, CRLF and `#` comment lines; anything else
// is an ExtentError naming the file and line.
import { ExtentError } from './validate.ts';
import type { Extent } from './extent.ts';

export function formatCsv(extents: Iterable<Extent>): string {
  let text = '';
  for (const e of extents) text += `${e.offsetBytes},${e.lengthBytes}\n`;
  return text;
}

const decimal = /^\d+$/;

export function parseCsv(text: string, sourceName: string): Extent[] {
  const areas: Extent[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const fields = line.split(',').map((f) => f.trim());
    const lineNumber = index + 1;
    if (fields.length !== 2 || !decimal.test(fields[0]) || !decimal.test(fields[1])) {
      throw new ExtentError('EXTENT_CSV_SYNTAX', `${sourceName}:${lineNumber}: expected "offset,length" in bytes, got "${line}"`, { source: sourceName, line: lineNumber });
    }
    const [offsetBytes, lengthBytes] = fields.map(Number);
    if (!Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes)) {
      throw new ExtentError('EXTENT_CSV_SYNTAX', `${sourceName}:${lineNumber}: number too large to be exact: "${line}"`, { source: sourceName, line: lineNumber });
    }
    areas.push({ offsetBytes, lengthBytes });
  });
  return areas;
}
