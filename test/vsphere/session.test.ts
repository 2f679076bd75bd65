// Session behaviour against a small scripted HTTPS endpoint: which calls are retried after
// a dropped connection (idempotent reads only), the session cookie on every request, the
// keep-alive, cancellation and HTTP errors without a SOAP fault.
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { connect, type ConnectOptions } from '../../src/vsphere/vsphere.ts';
import { makeTestCert } from './test-cert.ts';
import { faultReply, reply } from './fake-session.ts';
import { sleep } from '../../src/vsphere/sleep.ts';

const serviceContent = reply(
  'RetrieveServiceContent',
  '<returnval><rootFolder type="Folder">group-d1</rootFolder><propertyCollector type="PropertyCollector">propertyCollector</propertyCollector>' +
    '<viewManager type="ViewManager">ViewManager</viewManager><about><fullName>scripted</fullName><apiType>HostAgent</apiType><apiVersion>8.0.2.0</apiVersion></about>' +
    '<sessionManager type="SessionManager">SessionManager</sessionManager><searchIndex type="SearchIndex">SearchIndex</searchIndex></returnval>',
);

/** vCenter's answer to a property read of an ended session: HTTP 200, NotAuthenticated per property. */
const missingSetNotAuthenticated =
  '<returnval><objects><obj type="VirtualMachine">vm-1</obj><missingSet><path>name</path><fault><fault xsi:type="NotAuthenticated">' +
  '<object type="VirtualMachine">vm-1</object><privilegeId>System.View</privilegeId></fault><localizedMessage></localizedMessage></fault></missingSet></objects></returnval>';

interface Seen {
  method: string;
  cookie: string | undefined;
  soapAction: string | undefined;
}

let server: https.Server;
let port: number;
let sha256: string;
let seen: Seen[];
/** Per method: how to misbehave on its next N requests. */
let script: Record<string, Array<'reset' | 503 | 'hang' | 'notAuthenticated' | 'missingSet' | 'endless' | 'announceHuge' | 'stallAfterHeaders'>>;
/** Body bytes the server managed to write for its last 'endless' answer, and whether the client hung up. */
let endless: { writtenBytes: number; closed: Promise<void> } | undefined;

beforeEach(() => {
  seen = [];
  script = {};
});

before(async () => {
  const cert = makeTestCert();
  sha256 = cert.sha256;
  server = https.createServer({ key: cert.key, cert: cert.cert }, (request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => {
      const method = /<(\w+) xmlns="urn:vim25">/.exec(body)?.[1] ?? '?';
      seen.push({ method, cookie: request.headers.cookie, soapAction: request.headers.soapaction as string | undefined });
      const misbehave = script[method]?.shift();
      if (misbehave === 'reset') return request.socket.destroy();
      if (misbehave === 'hang') return;
      if (misbehave === 503) return response.writeHead(503).end('busy');
      if (misbehave === 'notAuthenticated') return response.writeHead(500).end(faultReply('NotAuthenticated', 'The session is not authenticated.'));
      if (misbehave === 'missingSet') return response.end(reply(method, missingSetNotAuthenticated));
      if (misbehave === 'announceHuge') {
        response.writeHead(200, { 'Content-Length': String(700 * 1024 * 1024) });
        return response.write(reply(method, '<returnval>'));
      }
      if (misbehave === 'stallAfterHeaders') {
        response.writeHead(200, { 'Content-Type': 'text/xml' });
        return response.write(reply(method, '').slice(0, 100));
      }
      if (misbehave === 'endless') {
        // A well-formed start, then element after element for as long as the client reads.
        response.writeHead(200, { 'Content-Type': 'text/xml' });
        const block = Buffer.from('<returnval>x</returnval>'.repeat(4096));
        const state = { writtenBytes: 0, closed: new Promise<void>((resolve) => response.on('close', resolve)) };
        endless = state;
        const pump = () => {
          while (!response.destroyed && state.writtenBytes < 4 * 2 ** 30) {
            state.writtenBytes += block.length;
            if (!response.write(block)) return void response.once('drain', pump);
          }
        };
        return pump();
      }
      if (method === 'RetrieveServiceContent') return response.end(serviceContent);
      if (method === 'Login') {
        response.setHeader('Set-Cookie', 'vmware_soap_session="52abc"; Path=/; HttpOnly; Secure');
        return response.end(reply('Login', '<returnval><key>52abc</key><userName>u</userName></returnval>'));
      }
      if (method === 'CurrentTime') return response.end(reply('CurrentTime', '<returnval>2026-01-01T00:00:00Z</returnval>'));
      if (method === 'Logout') return response.end(reply('Logout', ''));
      if (method === 'RetrievePropertiesEx') return response.end(reply(method, '<returnval><objects><obj type="VirtualMachine">vm-1</obj><propSet><name>name</name><val xsi:type="xsd:string">one</val></propSet></objects></returnval>'));
      if (method === 'CreateSnapshot_Task') return response.end(reply(method, '<returnval type="Task">task-1</returnval>'));
      response.writeHead(500).end('unknown');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

after(() => {
  endless = undefined;
  server.closeAllConnections();
  server.close();
});

function options(extra: Partial<ConnectOptions> = {}): ConnectOptions {
  return { server: `127.0.0.1:${port}`, username: 'u', password: 'p', thumbprint: sha256, keepAliveIntervalMs: 0, ...extra };
}

test('an idempotent read is retried after a dropped connection or a 503; the cookie and API version go on every later request', async () => {
  script.RetrieveServiceContent = ['reset', 503];
  const session = await connect(options());
  try {
    assert.deepEqual(seen.map((s) => s.method), ['RetrieveServiceContent', 'RetrieveServiceContent', 'RetrieveServiceContent', 'Login']);
    assert.equal(session.cookieHeader(), 'vmware_soap_session="52abc"');
    await session.call('CurrentTime', { type: 'ServiceInstance', value: 'ServiceInstance' }, {}, { idempotent: true });
    assert.equal(seen.at(-1)?.cookie, 'vmware_soap_session="52abc"');
    assert.equal(seen.at(-1)?.soapAction, '"urn:vim25/8.0.2.0"');
  } finally {
    await session.logout();
  }
});

test('relogin() (for the datastore HTTP reader after a 401) logs in once for concurrent callers', async () => {
  const session = await connect(options());
  try {
    await Promise.all([session.relogin(), session.relogin(), session.relogin()]);
    assert.equal(seen.filter((s) => s.method === 'Login').length, 2);
    assert.equal(session.reloginCount, 1);
    assert.equal(session.cookieHeader(), 'vmware_soap_session="52abc"');
    assert.deepEqual(seen.filter((s) => s.method === 'Login').map((s) => s.cookie), [undefined, undefined], 'Login opens a new session: no old cookie');
  } finally {
    await session.logout();
  }
});

test('NotAuthenticated in either shape (SOAP fault, or HTTP 200 with it in missingSet) re-logs in once and repeats the call, tasks too; a cut task call is never repeated', async () => {
  const causes: string[] = [];
  const session = await connect(options({ onRelogin: (cause) => causes.push(cause) }));
  const vm = { type: 'VirtualMachine', value: 'vm-1' };
  const read = { specSet: { propSet: [{ type: 'VirtualMachine', pathSet: ['name'] }], objectSet: [{ obj: { $ref: vm } }] } };
  try {
    script.RetrievePropertiesEx = ['missingSet'];
    const answer = await session.call('RetrievePropertiesEx', session.serviceContent.propertyCollector, read, { idempotent: true });
    assert.match(JSON.stringify(answer), /one/);
    // NotAuthenticated means the server refused before executing: repeating a task is safe.
    script.CreateSnapshot_Task = ['notAuthenticated'];
    await session.call('CreateSnapshot_Task', vm, { name: 's' });
    assert.deepEqual(seen.slice(2).map((s) => s.method), ['RetrievePropertiesEx', 'Login', 'RetrievePropertiesEx', 'CreateSnapshot_Task', 'Login', 'CreateSnapshot_Task']);
    assert.deepEqual(causes, ['RetrievePropertiesEx answered NotAuthenticated', 'CreateSnapshot_Task answered NotAuthenticated']);
    assert.equal(session.reloginCount, 2);
    // A cut connection leaves open whether the server executed it: never repeated.
    script.CreateSnapshot_Task = ['reset'];
    await assert.rejects(session.call('CreateSnapshot_Task', vm, { name: 's' }), { code: 'VSPHERE_UNREACHABLE' });
    assert.equal(seen.filter((s) => s.method === 'CreateSnapshot_Task').length, 3);
    // A session that stays ended after the re-login is an error, not a loop.
    script.RetrievePropertiesEx = ['missingSet', 'missingSet'];
    await assert.rejects(session.call('RetrievePropertiesEx', session.serviceContent.propertyCollector, read, { idempotent: true }), { code: 'VSPHERE_NOT_AUTHENTICATED' });
  } finally {
    await session.logout();
  }
});

test('a SOAP response past the size cap fails with VSPHERE_RESPONSE_TOO_LARGE naming server and method, keeping nothing past the cap', async () => {
  const maxResponseBytes = 1024 * 1024;
  const session = await connect(options({ maxResponseBytes }));
  try {
    const serviceInstance = { type: 'ServiceInstance', value: 'ServiceInstance' };
    script.CurrentTime = ['endless'];
    await assert.rejects(session.call('CurrentTime', serviceInstance, {}, { idempotent: true }), (e: unknown) => {
      assert.equal((e as { code: string }).code, 'VSPHERE_RESPONSE_TOO_LARGE');
      assert.match((e as Error).message, new RegExp(`^CurrentTime: the response passed 1048576 bytes, more than the 1048576-byte cap .*\\(server 127\\.0\\.0\\.1:${port}\\)$`));
      assert.equal((e as { context: { receivedBytes: number } }).context.receivedBytes > maxResponseBytes, true);
      return true;
    });
    // The client hung up at the cap: the server could not push much more than the socket buffers hold.
    await endless!.closed;
    assert.ok(endless!.writtenBytes < maxResponseBytes + 32 * 1024 * 1024, `server wrote ${endless!.writtenBytes} bytes before the client hung up`);
    assert.equal(seen.filter((s) => s.method === 'CurrentTime').length, 1, 'not retried');
    // An announced length past the cap fails before any body is read.
    script.CurrentTime = ['announceHuge'];
    await assert.rejects(session.call('CurrentTime', serviceInstance, {}, { idempotent: true }), { code: 'VSPHERE_RESPONSE_TOO_LARGE', message: /announced a 734003200-byte response/ });
    // The session still works.
    await session.call('CurrentTime', serviceInstance, {}, { idempotent: true });
  } finally {
    await session.logout();
  }
});

test('a SOAP answer that stalls (after the headers, or before them) hits the inactivity deadline: VSPHERE_TIMEOUT, idempotent reads retried', async () => {
  const session = await connect(options({ ioTimeoutMs: 100, requestTimeoutMs: 60_000 }));
  try {
    const serviceInstance = { type: 'ServiceInstance', value: 'ServiceInstance' };
    script.CurrentTime = ['stallAfterHeaders', 'hang'];
    await session.call('CurrentTime', serviceInstance, {}, { idempotent: true });
    assert.equal(seen.filter((s) => s.method === 'CurrentTime').length, 3, 'two stalls, then an answer');
    script.CurrentTime = ['stallAfterHeaders', 'hang', 'hang'];
    await assert.rejects(session.call('CurrentTime', serviceInstance, {}, { idempotent: true }), (e: unknown) => {
      assert.equal((e as { code: string }).code, 'VSPHERE_TIMEOUT');
      assert.match((e as Error).message, /^CurrentTime: no data for 100 ms before the response headers/);
      return true;
    });
    // Not idempotent: a stall is not repeated (the server may have executed it).
    script.CreateSnapshot_Task = ['stallAfterHeaders'];
    await assert.rejects(session.call('CreateSnapshot_Task', { type: 'VirtualMachine', value: 'vm-1' }, { name: 's' }), { code: 'VSPHERE_TIMEOUT', message: /after \d+ body bytes/ });
    assert.equal(seen.filter((s) => s.method === 'CreateSnapshot_Task').length, 1);
  } finally {
    await session.logout();
  }
});

test('a call that is not idempotent (Login) is never retried after a dropped connection', async () => {
  script.Login = ['reset'];
  await assert.rejects(connect(options()), { code: 'VSPHERE_UNREACHABLE' });
  assert.deepEqual(seen.map((s) => s.method), ['RetrieveServiceContent', 'Login']);
});

test('HTTP errors without a SOAP fault are VSPHERE_HTTP with the status', async () => {
  script.RetrieveServiceContent = [503, 503, 503];
  await assert.rejects(connect(options()), (e: unknown) => {
    assert.equal((e as { code: string }).code, 'VSPHERE_HTTP');
    assert.match((e as Error).message, /HTTP 503 busy/);
    return true;
  });
  assert.equal(seen.length, 3, 'first try plus two retries');
});

test('the keep-alive calls CurrentTime while the session is idle, and stops at logout', async () => {
  const session = await connect(options({ keepAliveIntervalMs: 10 }));
  while (seen.filter((s) => s.method === 'CurrentTime').length < 2) await sleep(5);
  await session.logout();
  const count = seen.filter((s) => s.method === 'CurrentTime').length;
  await sleep(50);
  assert.equal(seen.filter((s) => s.method === 'CurrentTime').length, count);
  assert.equal(seen.find((s) => s.method === 'CurrentTime')?.cookie, 'vmware_soap_session="52abc"');
});

test("the caller's AbortSignal cancels a call in flight: VSPHERE_CANCELLED, not retried", async () => {
  const session = await connect(options());
  try {
    script.CurrentTime = ['hang'];
    const controller = new AbortController();
    const pending = session.call('CurrentTime', { type: 'ServiceInstance', value: 'ServiceInstance' }, {}, { idempotent: true, signal: controller.signal });
    while (!seen.some((s) => s.method === 'CurrentTime')) await sleep(5);
    controller.abort(new Error('Ctrl-C'));
    await assert.rejects(pending, { code: 'VSPHERE_CANCELLED' });
    assert.equal(seen.filter((s) => s.method === 'CurrentTime').length, 1);
  } finally {
    await session.logout();
  }
});

test('server URLs: bare host gets https and /sdk; credentials in the URL and plain http are refused', async () => {
  const { sdkUrlOf } = await import('../../src/vsphere/session.ts');
  assert.equal(sdkUrlOf('vc.example').href, 'https://vc.example/sdk');
  assert.equal(sdkUrlOf('https://vc.example:8443/').href, 'https://vc.example:8443/sdk');
  assert.throws(() => sdkUrlOf('https://user:secret@vc.example/sdk'), (e: unknown) => (e as { code: string }).code === 'USAGE' && !(e as Error).message.includes('secret'));
  assert.throws(() => sdkUrlOf('http://vc.example/sdk'), { code: 'USAGE' });
});
