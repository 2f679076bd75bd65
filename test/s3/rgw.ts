// A real object store for tests: a one-node Ceph cluster (one monitor, one OSD on memstore, no
// manager) and its RADOS Gateway, started from scratch in a temporary directory on free
// loopback ports, the way Ceph's own single-node test clusters are built (no systemd, no block
// device). Everything it writes (config, keyring, maps, logs, sockets, pids) stays in that
// directory; `stop` sends SIGTERM to each daemon (SIGKILL after 2 s) and removes it.
//
// Vocabulary
// - endpoint: plain HTTP (most tests); tlsEndpoint: HTTPS with a certificate signed by a CA
//   made for this cluster (caFile), so tests exercise verified TLS.
// - buckets: `plain` (no versioning) and `locked` (created with Object Lock, so versioned).
// - Readiness is a signed S3 request that succeeds, never a sleep.
// Packages: scripts/install-s3-packages.sh.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { CreateBucketCommand, ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';

const run = promisify(execFile);

export interface Rgw {
  dir: string;
  endpoint: string;
  tlsEndpoint: string;
  caFile: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  plainBucket: string;
  lockedBucket: string;
  /** Environment for vcbt (credentials, endpoint, CA) - never argv. */
  env(options?: { tls?: boolean }): NodeJS.ProcessEnv;
  client(): S3Client;
  /** SIGKILL the gateway (the cluster keeps its data). */
  killGateway(): Promise<void>;
  startGateway(): Promise<void>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function until<T>(what: string, timeoutMs: number, attempt: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      return await attempt();
    } catch (error) {
      last = error;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`${what} not ready after ${timeoutMs} ms: ${(last as Error)?.message ?? last}`);
}

export async function startRgw(): Promise<Rgw> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vcbt-rgw-'));
  const conf = path.join(dir, 'ceph.conf');
  const keyring = path.join(dir, 'keyring');
  const [monPort, httpPort, httpsPort] = [await freePort(), await freePort(), await freePort()];
  const fsid = randomUUID();
  const accessKeyId = randomBytes(10).toString('hex').toUpperCase();
  const secretAccessKey = randomBytes(20).toString('base64url');
  const children = new Map<string, ChildProcess>();
  const ceph = (args: string[]) => run('ceph', ['-c', conf, ...args], { timeout: 60_000 });

  const stop = async () => {
    // SIGTERM, then SIGKILL after 2 s (the memstore data is thrown away anyway).
    const live = [...children.values()].filter((c) => c.exitCode === null && c.signalCode === null);
    const exits = live.map((c) => new Promise((r) => c.once('exit', r)));
    for (const child of live) child.kill('SIGTERM');
    const force = setTimeout(() => live.forEach((c) => c.kill('SIGKILL')), 2000);
    await Promise.all(exits);
    clearTimeout(force);
    children.clear();
    await fsp.rm(dir, { recursive: true, force: true });
  };
  const daemon = (name: string, command: string, args: string[]) => {
    const child = spawn(command, ['-f', '-c', conf, ...args], { stdio: ['ignore', 'ignore', 'ignore'] });
    children.set(name, child);
    child.once('exit', () => {
      if (children.get(name) === child) children.delete(name);
    });
    return child;
  };

  try {
    await fsp.mkdir(path.join(dir, 'run'));
    await fsp.mkdir(path.join(dir, 'log'));
    // Certificate for the TLS endpoint, signed by a CA of its own.
    const caKey = path.join(dir, 'ca.key');
    const caFile = path.join(dir, 'ca.pem');
    const key = path.join(dir, 'rgw.key');
    const csr = path.join(dir, 'rgw.csr');
    const cert = path.join(dir, 'rgw.pem');
    await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', caKey, '-out', caFile, '-days', '2', '-subj', '/CN=vcbt test CA']);
    await run('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', '/CN=127.0.0.1']);
    const ext = path.join(dir, 'san.cnf');
    await fsp.writeFile(ext, 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
    await run('openssl', ['x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKey, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext]);

    await fsp.writeFile(conf, `[global]
fsid = ${fsid}
mon host = v2:127.0.0.1:${monPort}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
keyring = ${keyring}
run dir = ${dir}/run
admin socket = ${dir}/run/$name.asok
pid file = ${dir}/run/$name.pid
log file = ${dir}/log/$name.log
mon data = ${dir}/mon.$id
osd data = ${dir}/osd.$id
osd objectstore = memstore
memstore device bytes = 2147483648
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
paxos propose interval = 0.05
paxos min wait = 0.01
mon osd full ratio = 0.99
mon osd nearfull ratio = 0.98
osd failsafe full ratio = 0.995

[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:${httpPort} ssl_endpoint=127.0.0.1:${httpsPort} ssl_certificate=${cert} ssl_private_key=${key}
rgw data = ${dir}/rgw
rgw thread pool size = 64
`);
    await run('ceph-authtool', ['--create-keyring', keyring, '--gen-key', '-n', 'mon.', '--cap', 'mon', 'allow *']);
    await run('ceph-authtool', [keyring, '--gen-key', '-n', 'client.admin', '--cap', 'mon', 'allow *', '--cap', 'osd', 'allow *', '--cap', 'mgr', 'allow *']);
    await run('ceph-authtool', [keyring, '--gen-key', '-n', 'osd.0', '--cap', 'mon', 'allow profile osd', '--cap', 'osd', 'allow *', '--cap', 'mgr', 'allow profile osd']);
    await run('ceph-authtool', [keyring, '--gen-key', '-n', 'client.rgw', '--cap', 'mon', 'allow rw', '--cap', 'osd', 'allow rwx', '--cap', 'mgr', 'allow rw']);
    const monmap = path.join(dir, 'monmap');
    await run('monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', `[v2:127.0.0.1:${monPort}]`, monmap]);
    await run('ceph-mon', ['-c', conf, '--mkfs', '-i', 'a', '--monmap', monmap, '--keyring', keyring]);
    daemon('mon', 'ceph-mon', ['-i', 'a']);

    const osdUuid = randomUUID();
    await until('ceph monitor', 30_000, () => ceph(['osd', 'new', osdUuid]));
    await fsp.mkdir(path.join(dir, 'osd.0'));
    await run('ceph-osd', ['-c', conf, '-i', '0', '--mkfs', '--osd-uuid', osdUuid]);
    daemon('osd', 'ceph-osd', ['-i', '0']);

    const startGateway = async () => {
      daemon('rgw', 'radosgw', ['-n', 'client.rgw']);
    };
    await startGateway();
    await until('radosgw user', 40_000, () =>
      run('radosgw-admin', ['-c', conf, 'user', 'create', '--uid', 'vcbt-test', '--display-name', 'vcbt test', '--access-key', accessKeyId, '--secret-key', secretAccessKey], { timeout: 20_000 }),
    );
    const endpoint = `http://127.0.0.1:${httpPort}`;
    const tlsEndpoint = `https://127.0.0.1:${httpsPort}`;
    const region = 'default';
    const client = () => new S3Client({ endpoint, region, forcePathStyle: true, credentials: { accessKeyId, secretAccessKey }, maxAttempts: 1 });
    const ready = async () => {
      const c = client();
      try {
        await until('radosgw S3 endpoint', 40_000, () => c.send(new ListBucketsCommand({})));
      } finally {
        c.destroy();
      }
    };
    await ready();
    const plainBucket = 'vcbt-plain';
    const lockedBucket = 'vcbt-locked';
    const c = client();
    try {
      await c.send(new CreateBucketCommand({ Bucket: plainBucket }));
      await c.send(new CreateBucketCommand({ Bucket: lockedBucket, ObjectLockEnabledForBucket: true }));
    } finally {
      c.destroy();
    }
    return {
      dir,
      endpoint,
      tlsEndpoint,
      caFile,
      accessKeyId,
      secretAccessKey,
      region,
      plainBucket,
      lockedBucket,
      env: (options = {}) => ({
        AWS_ACCESS_KEY_ID: accessKeyId,
        AWS_SECRET_ACCESS_KEY: secretAccessKey,
        AWS_REGION: region,
        VCBT_S3_ENDPOINT: options.tls ? tlsEndpoint : endpoint,
        ...(options.tls ? { VCBT_S3_CA_FILE: caFile } : {}),
      }),
      client,
      killGateway: async () => {
        const child = children.get('rgw');
        if (!child) return;
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
      },
      startGateway: async () => {
        await startGateway();
        await ready();
      },
      stop,
    };
  } catch (error) {
    const logs = await fsp.readdir(path.join(dir, 'log')).catch(() => []);
    const tails = await Promise.all(logs.map(async (f) => `${f}: ${(await fsp.readFile(path.join(dir, 'log', f), 'utf8').catch(() => '')).split('\n').slice(-15).join('\n')}`));
    await stop();
    throw new Error(`cannot start the test RGW: ${(error as Error).message}\n${tails.join('\n')}`, { cause: error });
  }
}
