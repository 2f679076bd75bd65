import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateAreas, ExtentError } from '../../src/extents/validate.ts';
import { formatCsv, parseCsv } from '../../src/extents/csv.ts';

const source = 'QueryChangedDiskAreas vm-1 disk 2000';

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ExtentError, `expected ExtentError, got ${String(error)}`);
    return error.code;
  }
  assert.fail('expected an error');
}

test('valid areas come back merged', () => {
  const areas = [
    { offsetBytes: 0, lengthBytes: 65536 },
    { offsetBytes: 65536, lengthBytes: 65536 },
    { offsetBytes: 1048576, lengthBytes: 1024 },
  ];
  assert.deepEqual(validateAreas(areas, { capacityBytes: 1049600, source, requireSorted: true }), [
    { offsetBytes: 0, lengthBytes: 131072 },
    { offsetBytes: 1048576, lengthBytes: 1024 },
  ]);
});

test('each kind of bad area is named', () => {
  const cap = { capacityBytes: 1000, source, requireSorted: true };
  assert.equal(codeOf(() => validateAreas([{ offsetBytes: -1, lengthBytes: 5 }], cap)), 'EXTENT_INVALID');
  assert.equal(codeOf(() => validateAreas([{ offsetBytes: 0, lengthBytes: 0 }], cap)), 'EXTENT_INVALID');
  assert.equal(codeOf(() => validateAreas([{ offsetBytes: 0.5, lengthBytes: 1 }], cap)), 'EXTENT_INVALID');
  assert.equal(codeOf(() => validateAreas([{ offsetBytes: 990, lengthBytes: 11 }], cap)), 'EXTENT_OUTSIDE_DISK');
  assert.equal(codeOf(() => validateAreas([{ offsetBytes: 500, lengthBytes: 1 }, { offsetBytes: 100, lengthBytes: 1 }], cap)), 'EXTENT_UNSORTED');
  assert.equal(codeOf(() => validateAreas([{ offsetBytes: 100, lengthBytes: 50 }, { offsetBytes: 120, lengthBytes: 1 }], cap)), 'EXTENT_OVERLAP');
  assert.throws(() => validateAreas([{ offsetBytes: 990, lengthBytes: 11 }], cap), /area #0 \(offset 990, length 11\) ends at 1001, beyond the disk's 1000 bytes/);
});

test('CSV round trip in the seed format', () => {
  const areas = [
    { offsetBytes: 1048576, lengthBytes: 65536 },
    { offsetBytes: 135266304, lengthBytes: 131072 },
    { offsetBytes: 511705088, lengthBytes: 1703936 },
  ];
  const text = formatCsv(areas);
  assert.equal(text, '1048576,65536\n135266304,131072\n511705088,1703936\n');
  assert.deepEqual(parseCsv(text, 'areas.csv'), areas);
  assert.deepEqual(parseCsv('# comment\r\n1,2\r\n\r\n', 'x.csv'), [{ offsetBytes: 1, lengthBytes: 2 }]);
});

test('CSV syntax errors name file and line', () => {
  assert.throws(() => parseCsv('1,2\n3;4\n', 'areas.csv'), /areas\.csv:2: expected "offset,length" in bytes, got "3;4"/);
  assert.throws(() => parseCsv('1,2,3\n', 'a.csv'), (err: unknown) => err instanceof ExtentError && err.code === 'EXTENT_CSV_SYNTAX');
  assert.throws(() => parseCsv('99999999999999999999,1\n', 'a.csv'), /too large to be exact/);
});
