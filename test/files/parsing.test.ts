// The pure parts of file-level restore, without an appliance (fast, part of `npm test`):
// guestfish's struct-list output, name globs, and the NBD URI form libguestfs accepts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { globToRegExp, parseStructList } from '../../src/jobs/files.ts';
import { libguestfsNbdUri } from '../../src/jobs/guestfish.ts';

test('parseStructList reads guestfish struct lists, one record per [i] block, values verbatim', () => {
  const text = '[0] = {\n  part_num: 1\n  part_start: 1048576\n  part_size: 12582912\n}\n[1] = {\n  part_num: 2\n  part_start: 13631488\n  part_size: 10485760\n}\n';
  assert.deepEqual(parseStructList(text), [
    { part_num: '1', part_start: '1048576', part_size: '12582912' },
    { part_num: '2', part_start: '13631488', part_size: '10485760' },
  ]);
  assert.deepEqual(parseStructList(''), []);
});

test('globToRegExp: * and ? match within a name, everything else literally', () => {
  const re = globToRegExp('*.tx?');
  assert.equal(re.test('notes.txt'), true);
  assert.equal(re.test('notes.tx'), false);
  assert.equal(re.test('notesAtxt'), false);
  assert.equal(globToRegExp('a+b(1).[x]').test('a+b(1).[x]'), true);
  assert.equal(globToRegExp('data.bin').test('dataXbin'), false);
});

test('libguestfsNbdUri turns vcbt\'s nbd+unix URI into the nbd:///NAME?socket= form and leaves others alone', () => {
  assert.equal(libguestfsNbdUri('nbd+unix:///disk?socket=/tmp/x/nbd.sock'), 'nbd:///disk?socket=/tmp/x/nbd.sock');
  assert.equal(libguestfsNbdUri('nbd://127.0.0.1:10809/disk'), 'nbd://127.0.0.1:10809/disk');
});
