// TLS (nbds://): our client against nbdkit --tls=require with a self-signed certificate made
// here by openssl, trusted by CA file or by pinned fingerprint; refusals are clear errors.
// Our server's STARTTLS is checked by nbdinfo (libnbd) and by our client.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, readFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import path from 'node:path';
import { NbdClient } from '../../src/nbd/client.ts';
import { NbdServer } from '../../src/nbd/server.ts';
import { MemoryDisk } from './memory-disk.ts';
import { startNbdkit, tempDir, tool } from './peers.ts';

async function selfSignedCertificate(dir: string): Promise<{ certFile: string; keyFile: string; fingerprint: string }> {
  const certFile = path.join(dir, 'server-cert.pem');
  const keyFile = path.join(dir, 'server-key.pem');
  await tool('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ]);
  // nbdkit (GnuTLS) wants the CA next to the server certificate; self-signed, it is the same.
  await copyFile(certFile, path.join(dir, 'ca-cert.pem'));
  const fingerprint = new X509Certificate(await readFile(certFile)).fingerprint256;
  return { certFile, keyFile, fingerprint };
}

test('nbds:// to nbdkit --tls=require: trusted by CA file or fingerprint; refused otherwise', async (t) => {
  const dir = await tempDir(t);
  const { certFile, fingerprint } = await selfSignedCertificate(dir);
  const peer = await startNbdkit(['memory', '1M'], { tcp: true, before: ['--tls=require', `--tls-certificates=${dir}`] });
  t.after(() => peer.stop());
  const secureUri = peer.uri.replace(/^nbd:\/\/127\.0\.0\.1/, 'nbds://localhost');

  const byCa = await NbdClient.connect(secureUri, { tls: { caFile: certFile } });
  await byCa.write(4096, Buffer.alloc(4096, 0x5a));
  await byCa.flush();
  await byCa.close();

  const byFingerprint = await NbdClient.connect(secureUri.replace('localhost', '127.0.0.1'), { tls: { fingerprintSha256: fingerprint } });
  const back = Buffer.alloc(4096);
  await byFingerprint.read(4096, back);
  assert.ok(back.equals(Buffer.alloc(4096, 0x5a)));
  await byFingerprint.close();

  await assert.rejects(NbdClient.connect(secureUri), { code: 'NBD_TLS', message: /TLS handshake failed/ });
  await assert.rejects(NbdClient.connect(secureUri, { tls: { fingerprintSha256: 'AA:BB' } }), { code: 'NBD_TLS', message: /does not match the pinned/ });
  await assert.rejects(NbdClient.connect(peer.uri), { code: 'NBD_HANDSHAKE', message: /requires TLS \(use an nbds:\/\/ URI\)/ });
});

test('our server offers STARTTLS: libnbd and our client get in; plain clients are turned away', async (t) => {
  const dir = await tempDir(t);
  const { certFile, keyFile } = await selfSignedCertificate(dir);
  const disk = new MemoryDisk(1024 * 1024, [{ offsetBytes: 0, lengthBytes: 65536 }]);
  const server = await NbdServer.listen({
    exports: [{ name: 'disk', disk }],
    listen: { socketPath: path.join(dir, 'nbd.sock') },
    tls: { cert: await readFile(certFile), key: await readFile(keyFile), require: true },
  });
  t.after(() => server.close());
  assert.match(server.uri('disk'), /^nbds\+unix:/);

  const client = await NbdClient.connect(server.uri('disk'), { tls: { caFile: certFile } });
  const target = Buffer.alloc(65536);
  await client.read(0, target);
  assert.ok(target.equals(disk.bytes.subarray(0, 65536)));
  await client.close();

  const info = JSON.parse(await tool('nbdinfo', ['--json', `${server.uri('disk')}&tls-certificates=${dir}`])) as { TLS: boolean; exports: { 'export-size': number }[] };
  assert.equal(info.TLS, true);
  assert.equal(info.exports[0]['export-size'], 1024 * 1024);

  await assert.rejects(NbdClient.connect(server.uri('disk').replace('nbds+unix', 'nbd+unix')), { code: 'NBD_HANDSHAKE', message: /requires TLS/ });
});
