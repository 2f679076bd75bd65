// Real receivers of notifications for tests: an HTTP server recording every request (the
// webhook side) and the SMTP server of smtp-receiver.py (Debian's python3-aiosmtpd) with
// STARTTLS and AUTH, recording every message.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import type { TestCert } from '../vsphere/test-cert.ts';

export interface ReceivedRequest {
  method: string;
  path: string;
  contentType: string | undefined;
  body: string;
}

/** An HTTP server on 127.0.0.1 answering `statusFor(path)` (default 204) and recording each request. */
export async function startHttpReceiver(statusFor: (path: string) => number = () => 204): Promise<{ url: string; requests: ReceivedRequest[]; close(): Promise<void> }> {
  const requests: ReceivedRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '/';
      requests.push({ method: req.method ?? '', path, contentType: req.headers['content-type'], body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(statusFor(path)).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export interface ReceivedMail {
  from: string;
  to: string[];
  /** The raw message (headers and body). */
  data: string;
  /** The session was upgraded with STARTTLS. */
  tls: boolean;
  /** The user that logged in. */
  user: string | null;
}

/** smtp-receiver.py on a free port of 127.0.0.1 with `cert`, accepting `user`/`password`. */
export async function startSmtpReceiver(cert: TestCert, user: string, password: string): Promise<{ port: number; messages(): Promise<ReceivedMail[]>; stop(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'vcbt-smtp-'));
  await writeFile(join(dir, 'cert.pem'), cert.cert);
  await writeFile(join(dir, 'key.pem'), cert.key, { mode: 0o600 });
  const out = join(dir, 'mail');
  await mkdir(out);
  const child = spawn('/usr/bin/python3', [join(import.meta.dirname, 'smtp-receiver.py'), out, join(dir, 'cert.pem'), join(dir, 'key.pem'), user, password], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      const match = /^(\d+)\n/.exec(stdout);
      if (match) resolve(Number(match[1]));
    });
    child.on('exit', (code) => reject(new Error(`smtp-receiver.py exited ${code} (is python3-aiosmtpd installed? scripts/install-system-packages.sh):\n${stderr}`)));
  });
  return {
    port,
    async messages() {
      const names = (await readdir(out)).filter((n) => n.endsWith('.json')).sort();
      return Promise.all(names.map(async (n) => JSON.parse(await readFile(join(out, n), 'utf8')) as ReceivedMail));
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
