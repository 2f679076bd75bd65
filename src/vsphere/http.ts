// One HTTP POST of a SOAP document over the checked agent, with an AbortSignal.
// Network-level errors are left as Node raised them; the session maps them to
// VsphereError codes because it knows the server and the operation.
import https from 'node:https';

export interface HttpReply {
  status: number;
  body: string;
  setCookies: string[];
}

export function postXml(url: URL, body: string, options: { agent: https.Agent; headers: Record<string, string>; signal: AbortSignal }): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const payload = Buffer.from(body, 'utf8');
    const request = https.request(
      url,
      {
        method: 'POST',
        agent: options.agent,
        signal: options.signal,
        headers: { 'Content-Type': 'text/xml; charset=utf-8', 'Content-Length': String(payload.length), ...options.headers },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () => {
          resolve({
            status: response.statusCode ?? 0,
            body: Buffer.concat(chunks).toString('utf8'),
            setCookies: response.headers['set-cookie'] ?? [],
          });
        });
      },
    );
    request.on('error', reject);
    request.end(payload);
  });
}
