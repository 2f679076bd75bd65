// The datastore HTTP reader against the lab's /folder (vcsim's file server behind the lab's
// session check): frozen bytes at a snapshot, exact-byte resume after a cut response,
// re-login after the session expired, and a clear refusal of a delta chain.
// Then against a hostile `/folder` server written here (real HTTPS, real Range answers): a
// response that stalls after its headers and 100 bytes, a server that never answers, one that
// stalls every time, a slow trickle that keeps progressing, a stalled descriptor, and cookie
// renewal. Deadlines are short through options; nothing waits long.
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { createHash, randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { startLab, type Lab } from '../lab/lab.ts';
import { connect, createSnapshot, datacenterOf, findVm, readSnapshotDisks, removeSnapshot, type VmInfo, type VsphereSession } from '../../src/vsphere/vsphere.ts';
import { openSnapshotDisk } from '../../src/jobs/snapshot-source.ts';
import { DatastoreHttpDisk, openDatastoreDisk, type DatastoreDiskOptions } from '../../src/transport/datastore-http.ts';
import { CheckedAgent, parseFingerprint } from '../../src/vsphere/tls.ts';
import { makeTestCert } from '../vsphere/test-cert.ts';

const VM = 'DC0_H0_VM0';
let lab: Lab;
let session: VsphereSession;
let vm: VmInfo;

before(async () => {
  lab = await startLab({ diskSizes: [6 * 1048576 + 5120, 2 * 1048576] });
  session = await connect({ server: lab.info.sdk, username: lab.info.username, password: lab.info.password, thumbprint: lab.info.thumbprintSha1 });
  vm = await findVm(session, { name: VM });
});

after(async () => {
  await session?.logout();
  await lab?.stop();
});

async function openAt(snapshot: { type: string; value: string }, key: number) {
  const disk = (await readSnapshotDisks(session, vm, snapshot)).find((d) => d.key === key)!;
  const datacenter = (await datacenterOf(session, vm.moref)).name;
  return openSnapshotDisk({ session, vm, snapshot, disk, datacenter }, { transport: 'http' });
}

test('reads the frozen disk at a snapshot, through a cut response and an expired session', async () => {
  const key = lab.info.vms.find((v) => v.name === VM)!.disks[0].key;
  await lab.write(VM, key, 0, randomBytes(3 * 1048576));
  await lab.write(VM, key, 6 * 1048576, randomBytes(5120)); // the short tail of the disk
  const snapshot = await createSnapshot(session, vm, { purpose: 'test' });
  try {
    await lab.write(VM, key, 0, randomBytes(1048576)); // after the snapshot: must not be seen
    const frozen = await lab.content(VM, key, snapshot.value);
    const reader = await openAt(snapshot, key);
    assert.ok(reader instanceof DatastoreHttpDisk);
    assert.equal(reader.sizeBytes, frozen.length);

    await lab.faults({ httpCutAfterBytes: 700_000 });
    const whole = new Uint8Array(reader.sizeBytes);
    await reader.read(0, whole);
    assert.deepEqual(await lab.faultsArmed(), {}, 'the cut happened');
    assert.ok(reader.resumedRequests >= 1, 'the reader resumed after the cut');
    assert.ok(Buffer.from(whole).equals(frozen), 'bytes equal the frozen snapshot');

    const relogins = session.reloginCount;
    await lab.expireSessions();
    const tail = new Uint8Array(5120 + 100);
    await reader.read(reader.sizeBytes - tail.length, tail);
    assert.ok(Buffer.from(tail).equals(frozen.subarray(frozen.length - tail.length)));
    assert.equal(session.reloginCount, relogins + 1, 'a 401 made the session log in again');

    await assert.rejects(reader.read(reader.sizeBytes - 10, new Uint8Array(11)), { code: 'DISK_RANGE' });
    await reader.close();
  } finally {
    await removeSnapshot(session, vm, snapshot);
  }
});

test('a snapshot whose disk is a delta chain reads through the chain, each snapshot its own bytes', async () => {
  const key = lab.info.vms.find((v) => v.name === VM)!.disks[1].key;
  const first = await createSnapshot(session, vm, { purpose: 'test' });
  await lab.write(VM, key, 700_000, randomBytes(3000));
  await lab.unmap(VM, key, 65_536, 8192);
  const second = await createSnapshot(session, vm, { purpose: 'test' });
  try {
    for (const snapshot of [first, second]) {
      const reader = await openAt(snapshot, key);
      const bytes = new Uint8Array(reader.sizeBytes);
      for (let at = 0; at < bytes.length; at += 300_000) await reader.read(at, bytes.subarray(at, Math.min(bytes.length, at + 300_000)));
      assert.equal(createHash('sha256').update(bytes).digest('hex'), (await lab.sha256(VM, key, snapshot.value)).sha256);
      await reader.close();
    }
  } finally {
    await removeSnapshot(session, vm, second);
    await removeSnapshot(session, vm, first);
  }
});

// --- a hostile /folder server ---

const capacityBytes = 1024 * 1024;
const flat = randomBytes(capacityBytes);
const descriptor = `# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="vmfs"\n\nRW ${capacityBytes / 512} VMFS "disk-flat.vmdk"\n`;

type Behaviour = 'normal' | 'stallAfter100' | 'stallBeforeHeaders' | 'trickle';
interface Seen {
  path: string;
  range: string | undefined;
  cookie: string | undefined;
}

let server: https.Server;
let agent: CheckedAgent;
let origin: URL;
/** Per file name: how to answer its next requests (then 'normal'). */
let script: Record<string, Behaviour[]>;
let seen: Seen[];
/** Cookies the server accepts; anything else gets 401. */
let validCookies: Set<string>;
let cookie: string;
let logins: number;

beforeEach(() => {
  script = {};
  seen = [];
  cookie = 'vmware_soap_session="1"';
  validCookies = new Set([cookie]);
  logins = 0;
});

before(async () => {
  const cert = makeTestCert();
  server = https.createServer({ key: cert.key, cert: cert.cert }, (request, response) => {
    const url = new URL(request.url ?? '/', 'https://x');
    const name = url.pathname.split('/').at(-1) ?? '';
    seen.push({ path: url.pathname, range: request.headers.range, cookie: request.headers.cookie });
    if (!validCookies.has(request.headers.cookie ?? '')) return response.writeHead(401).end('no session');
    const body = name === 'disk.vmdk' ? Buffer.from(descriptor) : name === 'disk-flat.vmdk' ? flat : undefined;
    if (!body) return response.writeHead(404).end();
    const behaviour = script[name]?.shift() ?? 'normal';
    if (behaviour === 'stallBeforeHeaders') return; // never answers
    const range = /^bytes=(\d+)-(\d+)$/.exec(request.headers.range ?? '');
    const start = range ? Number(range[1]) : 0;
    const end = Math.min(range ? Number(range[2]) : body.length - 1, body.length - 1);
    const part = body.subarray(start, end + 1);
    response.writeHead(206, { 'Content-Range': `bytes ${start}-${end}/${body.length}`, 'Content-Length': String(part.length) });
    if (behaviour === 'stallAfter100') return response.write(part.subarray(0, 100)); // then nothing, connection open
    if (behaviour === 'trickle') {
      // Steady progress, slower in total than the inactivity deadline.
      const chunkBytes = Math.ceil(part.length / 20);
      let at = 0;
      const next = () => {
        if (response.destroyed) return;
        response.write(part.subarray(at, at + chunkBytes));
        at += chunkBytes;
        if (at >= part.length) response.end();
        else setTimeout(next, 40);
      };
      return next();
    }
    response.end(part);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = new URL(`https://127.0.0.1:${(server.address() as AddressInfo).port}`);
  agent = new CheckedAgent({ pinnedFingerprint: parseFingerprint(cert.sha256) });
});

after(() => {
  agent.destroy();
  server.closeAllConnections();
  server.close();
});

function open(extra: Partial<DatastoreDiskOptions> = {}) {
  return openDatastoreDisk({
    access: {
      origin,
      agent,
      cookieHeader: () => cookie,
      reauthenticate: async () => {
        logins++;
        cookie = `vmware_soap_session="${logins + 1}"`;
        validCookies.add(cookie);
      },
    },
    datacenter: 'DC0',
    file: '[ds1] vm/disk.vmdk',
    capacityBytes,
    ioTimeoutMs: 100,
    maxAttempts: 3,
    ...extra,
  });
}

const flatRequests = () => seen.filter((s) => s.path.endsWith('/disk-flat.vmdk'));

test('a response that stalls after its headers and 100 bytes is resumed at byte 100 and the read completes exactly', async () => {
  const disk = await open();
  script['disk-flat.vmdk'] = ['stallAfter100'];
  const target = new Uint8Array(256 * 1024);
  await disk.read(4096, target);
  assert.ok(Buffer.from(target).equals(flat.subarray(4096, 4096 + target.length)));
  assert.deepEqual(flatRequests().map((s) => s.range), [`bytes=4096-${4096 + target.length - 1}`, `bytes=4196-${4096 + target.length - 1}`]);
  assert.equal(disk.resumedRequests, 1);
});

test('a server that never answers, or stalls every time, fails the read with HTTP_STALLED naming the file and offset after maxAttempts', async () => {
  // 500 ms, not the suite's 100 ms: on a loaded machine the first 100 bytes of an attempt must
  // arrive before the deadline for the offsets below to be exact.
  const disk = await open({ ioTimeoutMs: 500 });
  script['disk-flat.vmdk'] = ['stallBeforeHeaders', 'stallBeforeHeaders', 'stallBeforeHeaders'];
  await assert.rejects(disk.read(65536, new Uint8Array(4096)), (e: unknown) => {
    assert.equal((e as { code: string }).code, 'HTTP_STALLED');
    assert.match((e as Error).message, /reading \[ds1\] vm\/disk-flat\.vmdk at offset 65536: no data for 500 ms, 3 times in a row/);
    assert.deepEqual((e as { context: { offsetBytes: number; file: string } }).context.offsetBytes, 65536);
    return true;
  });
  assert.equal(flatRequests().length, 3);

  // Progress does not buy unbounded attempts: 100 bytes then a stall, every time.
  seen = [];
  script['disk-flat.vmdk'] = ['stallAfter100', 'stallAfter100', 'stallAfter100'];
  await assert.rejects(disk.read(0, new Uint8Array(4096)), { code: 'HTTP_STALLED', message: /disk-flat\.vmdk at offset 300: / });
  assert.deepEqual(flatRequests().map((s) => s.range), ['bytes=0-4095', 'bytes=100-4095', 'bytes=200-4095']);
});

test('a slow trickle that keeps progressing never hits the inactivity deadline, though it takes longer in total', async () => {
  const disk = await open({ ioTimeoutMs: 400 });
  script['disk-flat.vmdk'] = ['trickle'];
  const target = new Uint8Array(200 * 1024);
  await disk.read(0, target);
  assert.ok(Buffer.from(target).equals(flat.subarray(0, target.length)));
  assert.equal(flatRequests().length, 1, 'one request, never resumed');
  assert.equal(disk.resumedRequests, 0);
});

test('a stalled descriptor is retried, then HTTP_STALLED naming the descriptor', async () => {
  script['disk.vmdk'] = ['stallBeforeHeaders'];
  const disk = await open();
  assert.equal(disk.sizeBytes, capacityBytes);
  script['disk.vmdk'] = ['stallBeforeHeaders', 'stallAfter100', 'stallBeforeHeaders'];
  await assert.rejects(open(), { code: 'HTTP_STALLED', message: /^GET descriptor \[ds1\] vm\/disk\.vmdk: no data for 100 ms, 3 times in a row/ });
});

test('the session cookie is renewed once it is cookieRenewMs old; a 401 logs in again; reads stay exact', async () => {
  const disk = await open({ cookieRenewMs: 1 });
  const target = new Uint8Array(8192);
  await disk.read(0, target);
  assert.equal(logins, 0);
  await new Promise((resolve) => setTimeout(resolve, 5));
  await disk.read(8192, target);
  assert.ok(Buffer.from(target).equals(flat.subarray(8192, 16384)));
  assert.equal(disk.cookieRenewals, 1);
  assert.equal(flatRequests().at(-1)?.cookie, 'vmware_soap_session="2"', 'the renewed cookie is used');

  // The server forgets every session: a 401, one login, the same read succeeds.
  const quiet = await open();
  validCookies.clear();
  await quiet.read(16384, target);
  assert.ok(Buffer.from(target).equals(flat.subarray(16384, 24576)));
  assert.equal(logins, 2);
});
