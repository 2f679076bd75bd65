// Minimal raw HTTPS access to a lab, for tests that must see the wire: SOAP Login (to get
// the vmware_soap_session cookie), a raw SOAP call, and datastore /folder GETs with Range.
// The server certificate is pinned to the lab's SHA-256 fingerprint.
import { request } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { LabError, type LabInfo } from './lab.ts';

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** True when the connection ended before Content-Length bytes arrived. */
  truncated: boolean;
}

export function httpsRequest(info: LabInfo, method: string, path: string, headers: Record<string, string>, body?: string): Promise<RawResponse> {
  const base = new URL(info.sdk);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: base.hostname, port: base.port, method, path, headers, rejectUnauthorized: false, agent: false },
      (res) => {
        const socket = res.socket as TLSSocket;
        const fingerprint = socket.getPeerCertificate().fingerprint256;
        if (fingerprint !== info.fingerprintSha256) {
          res.destroy();
          reject(new LabError(`lab certificate fingerprint ${fingerprint} is not ${info.fingerprintSha256}`));
          return;
        }
        const chunks: Buffer[] = [];
        let truncated = false;
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('aborted', () => (truncated = true));
        res.on('error', () => (truncated = true));
        res.on('close', () => {
          const bodyBytes = Buffer.concat(chunks);
          const expected = Number(res.headers['content-length'] ?? bodyBytes.length);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: bodyBytes, truncated: truncated || bodyBytes.length < expected });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function envelope(inner: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>${inner}</soapenv:Body></soapenv:Envelope>`;
}

export function soapCall(info: LabInfo, inner: string, cookie?: string): Promise<RawResponse> {
  const headers: Record<string, string> = { 'Content-Type': 'text/xml; charset=utf-8', SOAPAction: '"urn:vim25/6.5"' };
  if (cookie) headers.Cookie = cookie;
  return httpsRequest(info, 'POST', '/sdk', headers, envelope(inner));
}

/** Logs in and returns the Cookie header value ("vmware_soap_session=..."). */
export async function login(info: LabInfo): Promise<string> {
  const xmlEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const res = await soapCall(
    info,
    `<Login xmlns="urn:vim25"><_this type="SessionManager">SessionManager</_this><userName>${xmlEscape(info.username)}</userName><password>${xmlEscape(info.password)}</password></Login>`,
  );
  const setCookie = res.headers['set-cookie'];
  const cookie = (Array.isArray(setCookie) ? setCookie : [setCookie ?? '']).find((c) => c.startsWith('vmware_soap_session='));
  if (res.status !== 200 || !cookie) throw new LabError(`lab login failed: HTTP ${res.status}`);
  return cookie.split(';')[0];
}

/** GET /folder/<path>?dcPath=&dsName= with an optional Range "a-b". */
export function folderGet(info: LabInfo, datastorePath: string, cookie: string | undefined, range?: string): Promise<RawResponse> {
  const match = /^\[([^\]]+)\] (.+)$/.exec(datastorePath);
  if (!match) throw new LabError(`not a datastore path: ${datastorePath}`);
  const headers: Record<string, string> = {};
  if (cookie) headers.Cookie = cookie;
  if (range) headers.Range = `bytes=${range}`;
  const path = `/folder/${match[2].split('/').map(encodeURIComponent).join('/')}?dcPath=${encodeURIComponent(info.datacenter)}&dsName=${encodeURIComponent(match[1])}`;
  return httpsRequest(info, 'GET', path, headers);
}
