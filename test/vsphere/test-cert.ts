// A throw-away self-signed certificate (openssl) for local TLS servers in tests, valid for
// localhost and 127.0.0.1 (so clients that verify the name accept it once they trust it).
import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCert {
  key: Buffer;
  cert: Buffer;
  sha1: string;
  sha256: string;
}

export function makeTestCert(): TestCert {
  const dir = mkdtempSync(join(tmpdir(), 'vcbt-cert-'));
  try {
    const keyFile = join(dir, 'key.pem');
    const certFile = join(dir, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', certFile, '-subj', '/CN=vcbt-test', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-days', '1'], { stdio: 'ignore' });
    const cert = readFileSync(certFile);
    const der = new X509Certificate(cert).raw;
    return { key: readFileSync(keyFile), cert, sha1: createHash('sha1').update(der).digest('hex'), sha256: createHash('sha256').update(der).digest('hex') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
