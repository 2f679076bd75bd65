// TLS pinning against a local TLS server with a throw-away certificate: a mismatching pin
// fails before a single byte of HTTP (so no credential) reaches the server; a matching
// SHA-1 or SHA-256 pin lets the request through; a server that never answers is a timeout.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { connect, parseFingerprint } from '../../src/vsphere/vsphere.ts';
import { makeTestCert } from './test-cert.ts';

let server: tls.Server;
let port: number;
let bytesReceived = 0;
let sha1: string;
let sha256: string;
const password = 'pw-that-must-never-leak';

before(async () => {
  const testCert = makeTestCert();
  ({ sha1, sha256 } = testCert);
  server = tls.createServer({ key: testCert.key, cert: testCert.cert }, (socket) => {
    socket.on('data', (chunk: Buffer) => (bytesReceived += chunk.length)); // and never answer
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

after(() => {
  server.close();
});

function colon(hex: string): string {
  return hex.toUpperCase().match(/../g)!.join(':');
}

test('a wrong pin fails before anything is sent, naming both fingerprints seen', async () => {
  bytesReceived = 0;
  const wrong = '00' + sha1.slice(2);
  await assert.rejects(connect({ server: `127.0.0.1:${port}`, username: 'u', password, thumbprint: colon(wrong) }), (e: unknown) => {
    const error = e as { code: string; message: string; context: Record<string, unknown> };
    assert.equal(error.code, 'TLS_FINGERPRINT_MISMATCH');
    assert.ok(error.message.includes(colon(sha1)) && error.message.includes(colon(sha256)), error.message);
    assert.equal(error.context.seenSha256, colon(sha256));
    assert.ok(!error.message.includes(password));
    return true;
  });
  assert.equal(bytesReceived, 0, 'not one byte of HTTP reached the server');
});

test('without a pin an untrusted certificate is TLS_UNTRUSTED, also before anything is sent', async () => {
  bytesReceived = 0;
  await assert.rejects(connect({ server: `https://127.0.0.1:${port}/sdk`, username: 'u', password }), (e: unknown) => {
    assert.equal((e as { code: string }).code, 'TLS_UNTRUSTED');
    assert.match((e as Error).message, new RegExp(colon(sha1)));
    return true;
  });
  assert.equal(bytesReceived, 0);
});

test('a matching SHA-1 or SHA-256 pin lets the request through; no answer is VSPHERE_TIMEOUT', async () => {
  for (const pin of [colon(sha1), sha256]) {
    bytesReceived = 0;
    await assert.rejects(connect({ server: `127.0.0.1:${port}`, username: 'u', password, thumbprint: pin, requestTimeoutMs: 300, readRetries: 0 }), {
      code: 'VSPHERE_TIMEOUT',
    });
    assert.ok(bytesReceived > 0, 'the request was sent');
  }
});

test('fingerprint syntax: 20 or 32 bytes of hex, colons optional', () => {
  assert.equal(parseFingerprint(colon(sha1)), sha1);
  assert.equal(parseFingerprint(sha256.toUpperCase()), sha256);
  for (const bad of ['', 'zz', sha1.slice(2), `${sha256}00`]) assert.throws(() => parseFingerprint(bad), { code: 'TLS_FINGERPRINT_SYNTAX' });
});
