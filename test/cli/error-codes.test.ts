// The error codes are a public contract: every code in `ErrorCode` (src/errors.ts) is
// documented in a "code" table of the README or of a doc the README links, every code the
// source passes to an error constructor is in `ErrorCode`, and no table documents a code that
// does not exist. The type check catches most undeclared codes; this test also catches codes
// that reach errors through untyped paths (worker replies, plain objects).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { errorCodes, isErrorCode } from '../../src/errors.ts';

const root = resolve(import.meta.dirname, '..', '..');
/** How docs spell the one code family that is a pattern (NbdErrnoCode). */
const NBD_ERRNO_ROW = 'NBD_E<errno>';

/** First-column codes of every markdown table whose first header cell is "code". */
function documentedCodes(markdown: string): Set<string> {
  const codes = new Set<string>();
  let inCodeTable = false;
  for (const line of markdown.split('\n')) {
    if (!line.startsWith('|')) {
      inCodeTable = false;
      continue;
    }
    const firstCell = line.split('|')[1]?.trim() ?? '';
    if (firstCell === 'code') inCodeTable = true;
    else if (inCodeTable) for (const [, code] of firstCell.matchAll(/`([A-Z][A-Za-z0-9_<>]+)`/g)) codes.add(code);
  }
  return codes;
}

async function readmeAndLinkedDocs(): Promise<Map<string, string>> {
  const readme = await readFile(join(root, 'README.md'), 'utf8');
  const files = new Map([['README.md', readme]]);
  for (const [, link] of readme.matchAll(/\]\((docs\/[A-Za-z0-9_-]+\.md)(?:#[^)]*)?\)/g)) {
    if (!files.has(link)) files.set(link, await readFile(join(root, link), 'utf8'));
  }
  return files;
}

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile() && e.name.endsWith('.ts')).map((e) => join(e.parentPath, e.name));
}

/** `'CODE'` literals given to error constructors, error helpers or `code:` fields in src. */
async function thrownCodes(): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const patterns = [
    /new \w*(?:Error|Fault)\(\s*'([A-Z][A-Z0-9_]{2,})'/g, // new RepositoryError('REPO_CORRUPT', ...)
    /\b\w*(?:[Ee]rror|fail|Fail)\(\s*'([A-Z][A-Z0-9_]{2,})'/g, // fail('NBD_PROTOCOL', ...), chunkError('REPO_MISSING', ...)
    /\bcode: '([A-Z][A-Z0-9_]{2,})'/g, // { code: 'REPO_MISSING', message }
    /\? '([A-Z][A-Z0-9_]{2,})' : '([A-Z][A-Z0-9_]{2,})'/g, // const code = c ? 'EXTENT_UNSORTED' : 'EXTENT_OVERLAP'
  ];
  for (const file of await sourceFiles(join(root, 'src'))) {
    const text = await readFile(file, 'utf8');
    for (const pattern of patterns) {
      for (const match of text.matchAll(pattern)) {
        for (const code of match.slice(1)) {
          // Node's own errno-shaped codes (ETIMEDOUT on a synthetic socket error) are not ours.
          if (code !== undefined && !/^E[A-Z]+$/.test(code)) found.set(code, file.slice(root.length + 1));
        }
      }
    }
  }
  return found;
}

test('error codes: every code in ErrorCode is documented in the README or a doc it links', async () => {
  const documented = new Set<string>();
  for (const text of (await readmeAndLinkedDocs()).values()) for (const code of documentedCodes(text)) documented.add(code);
  const missing = errorCodes.filter((code) => !documented.has(code));
  assert.deepEqual(missing, [], `codes without a row in a "code" table (README.md or docs/errors.md): ${missing.join(', ')}`);
  assert.ok(documented.has(NBD_ERRNO_ROW), `the NBD errno family needs a row spelled \`${NBD_ERRNO_ROW}\``);
});

test('error codes: no table documents a code that does not exist', async () => {
  for (const [file, text] of await readmeAndLinkedDocs()) {
    const stale = [...documentedCodes(text)].filter((code) => code !== NBD_ERRNO_ROW && !isErrorCode(code));
    assert.deepEqual(stale, [], `${file} documents codes missing from ErrorCode in src/errors.ts`);
  }
});

test('error codes: every code the source passes to an error is in ErrorCode', async () => {
  const found = await thrownCodes();
  assert.ok(found.size > 50, `the scan should find the codes thrown today (found ${found.size}); did the patterns break?`);
  const unknown = [...found].filter(([code]) => !isErrorCode(code)).map(([code, file]) => `${code} (${file})`);
  assert.deepEqual(unknown, [], 'codes thrown in src but missing from ErrorCode in src/errors.ts');
});

test('error codes: every code in ErrorCode is used somewhere in src (no stale entries)', async () => {
  const texts = await Promise.all((await sourceFiles(join(root, 'src'))).filter((f) => !f.endsWith(join('src', 'errors.ts'))).map((f) => readFile(f, 'utf8')));
  const all = texts.join('\n');
  const unused = errorCodes.filter((code) => !all.includes(`'${code}'`));
  assert.deepEqual(unused, [], 'codes in ErrorCode that no source file raises');
});

test('error codes: isErrorCode knows the list and the NBD errno family, nothing else', () => {
  assert.ok(isErrorCode('REPO_CORRUPT'));
  assert.ok(isErrorCode('NBD_EIO'));
  assert.ok(isErrorCode('NBD_E99'));
  assert.ok(!isErrorCode('EACCES'));
  assert.ok(!isErrorCode('NBD_'));
  assert.ok(!isErrorCode('REPO_CORUPT'));
});
