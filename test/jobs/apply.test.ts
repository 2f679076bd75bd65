import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, writeFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCli } from '../helpers/cli-runner.ts';
import { startFakeServer } from '../nbd/fake-server.ts';
import { hostileReplies } from '../nbd/hostile-replies.ts';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function vcbt(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const { code, stdout, stderr } = await runCli(args);
  return { code, out: stdout, err: stderr };
}

/** A source image, an older copy differing exactly inside `areas`, and the CSV. */
async function fixture(dir: string) {
  const sizeBytes = 5 * 1024 * 1024 + 3 * 1024; // not a multiple of 1 MiB or 64 KiB
  const source = randomBytes(sizeBytes);
  source.fill(0, 1024 * 1024, 2 * 1024 * 1024); // a zero run inside an area
  const areas = [
    [0, 512],
    [65536 - 512, 1024], // straddles a 64 KiB boundary
    [1024 * 1024 - 4096, 1024 * 1024 + 8192], // covers the zero run, odd length
    [4 * 1024 * 1024 + 512, 777 * 512], // odd number of sectors
    [sizeBytes - 3 * 1024, 3 * 1024], // the short last bit of the disk
  ].filter(([o, l]) => l > 0 && o + l <= sizeBytes);
  const older = Buffer.from(source);
  for (const [o, l] of areas) randomBytes(l).copy(older, o);
  await writeFile(join(dir, 'src.raw'), source);
  await writeFile(join(dir, 'dst.raw'), older);
  await writeFile(join(dir, 'areas.csv'), areas.map(([o, l]) => `${o},${l}`).join('\n') + '\n');
  return { source, older, areas };
}

test('apply copies every listed area completely, file to file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vcbt-apply-'));
  try {
    const { source, areas } = await fixture(dir);
    const result = await vcbt(['apply', '--areas', join(dir, 'areas.csv'), '--from', join(dir, 'src.raw'), '--to', join(dir, 'dst.raw'), '--json']);
    assert.equal(result.code, 0, result.err);
    const summary = JSON.parse(result.out) as { areas: number; bytesCopied: number };
    assert.equal(summary.bytesCopied, areas.reduce((s, [, l]) => s + l, 0));
    assert.equal(sha(await readFile(join(dir, 'dst.raw'))), sha(source));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('apply writes to an NBD target served by qemu-nbd', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vcbt-apply-'));
  const socket = join(dir, 'nbd.sock');
  const { source } = await fixture(dir);
  const server = spawn('qemu-nbd', ['-f', 'raw', '-k', socket, '-e', '4', '--cache=none', join(dir, 'dst.raw')], { stdio: 'ignore' });
  try {
    for (let i = 0; i < 200 && !(await stat(socket).then(() => true, () => false)); i++) await sleep(25);
    const result = await vcbt(['apply', '--areas', join(dir, 'areas.csv'), '--from', join(dir, 'src.raw'), '--to', `nbd+unix:///?socket=${socket}`]);
    assert.equal(result.code, 0, result.err);
    assert.match(result.out, /^applied 5 areas, \d+ bytes/);
    server.kill();
    assert.equal(sha(await readFile(join(dir, 'dst.raw'))), sha(source));
  } finally {
    server.kill();
    await rm(dir, { recursive: true, force: true });
  }
});

test('bad areas are refused before anything is written', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vcbt-apply-'));
  try {
    const { older } = await fixture(dir);
    const size = older.length;
    const cases: Array<[string, RegExp]> = [
      [`0,512\n${size - 512},1024\n`, /EXTENT_OUTSIDE_DISK: .*area #1 \(offset \d+, length 1024\) ends at \d+, beyond the disk's \d+ bytes/],
      ['0,512\n100,3\n', /EXTENT_MISALIGNED: .*area #1 \(offset 100, length 3\) is not aligned to 512-byte sectors/],
      ['0,512\nseven,8\n', /EXTENT_CSV_SYNTAX: .*areas\.csv:2/],
    ];
    for (const [csv, expected] of cases) {
      await writeFile(join(dir, 'areas.csv'), csv);
      const result = await vcbt(['apply', '--areas', join(dir, 'areas.csv'), '--from', join(dir, 'src.raw'), '--to', join(dir, 'dst.raw')]);
      assert.equal(result.code, 1);
      assert.match(result.err, expected);
      assert.equal(sha(await readFile(join(dir, 'dst.raw'))), sha(older), 'target untouched');
    }
    await writeFile(join(dir, 'small.raw'), Buffer.alloc(4096));
    await writeFile(join(dir, 'areas.csv'), '0,512\n');
    const small = await vcbt(['apply', '--areas', join(dir, 'areas.csv'), '--from', join(dir, 'src.raw'), '--to', join(dir, 'small.raw')]);
    assert.match(small.err, /APPLY_TARGET_SMALLER/);
    const missing = await vcbt(['apply', '--areas', join(dir, 'areas.csv'), '--from', join(dir, 'src.raw')]);
    assert.equal(missing.code, 2);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

for (const [name, reply] of Object.entries(hostileReplies)) {
  test(`apply from an NBD server whose read reply has ${name} fails with NBD_PROTOCOL and writes nothing wrong`, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vcbt-apply-'));
    const fake = await startFakeServer(dir, 1024 * 1024, reply);
    try {
      const before = randomBytes(1024 * 1024);
      await writeFile(join(dir, 'dst.raw'), before);
      await writeFile(join(dir, 'areas.csv'), '65536,65536\n');
      const result = await vcbt(['apply', '--areas', join(dir, 'areas.csv'), '--from', fake.uri, '--to', join(dir, 'dst.raw')]);
      assert.equal(result.code, 1, result.err);
      assert.match(result.err, /NBD_PROTOCOL: .*protocol violation/);
      assert.equal(sha(await readFile(join(dir, 'dst.raw'))), sha(before), 'target untouched');
    } finally {
      await fake.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
}

test('apply against an NBD server that stalls in the handshake ends with NBD_TIMEOUT after --io-timeout', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vcbt-apply-'));
  const fake = await startFakeServer(dir, 1024 * 1024, () => {}, { stall: 'after-greeting' });
  try {
    await writeFile(join(dir, 'dst.raw'), Buffer.alloc(1024 * 1024));
    await writeFile(join(dir, 'areas.csv'), '0,4096\n');
    const result = await vcbt(['apply', '--areas', join(dir, 'areas.csv'), '--from', fake.uri, '--to', join(dir, 'dst.raw'), '--io-timeout', '0.3']);
    assert.equal(result.code, 1, result.err);
    assert.match(result.err, /NBD_TIMEOUT: nbd\+unix:.*no complete NBD handshake within 0\.3 s/);
    const bad = await vcbt(['apply', '--areas', join(dir, 'areas.csv'), '--from', fake.uri, '--to', join(dir, 'dst.raw'), '--io-timeout', 'soon']);
    assert.equal(bad.code, 2, bad.err);
  } finally {
    await fake.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('apply: an absurd --in-flight is a usage error; a directory as --from or --to is a named error, not INTERNAL', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vcbt-apply-'));
  try {
    const { older } = await fixture(dir);
    const areas = join(dir, 'areas.csv');
    const huge = await vcbt(['apply', '--areas', areas, '--from', join(dir, 'src.raw'), '--to', join(dir, 'dst.raw'), '--in-flight', '99999999999']);
    assert.equal(huge.code, 2, huge.err);
    assert.match(huge.err, /--in-flight must be at most 1024/);
    const fromDir = await vcbt(['apply', '--areas', areas, '--from', dir, '--to', join(dir, 'dst.raw')]);
    assert.equal(fromDir.code, 1, fromDir.err);
    assert.match(fromDir.err, /FILE_OPEN: .* is a directory; vcbt reads and writes regular files only/);
    const toDir = await vcbt(['apply', '--areas', areas, '--from', join(dir, 'src.raw'), '--to', dir]);
    assert.equal(toDir.code, 1, toDir.err);
    assert.match(toDir.err, /FILE_OPEN: /);
    for (const result of [huge, fromDir, toDir]) assert.doesNotMatch(result.err, /INTERNAL|\n\s+at /);
    assert.equal(sha(await readFile(join(dir, 'dst.raw'))), sha(older), 'target untouched');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
