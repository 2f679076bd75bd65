import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatNbdUri, isNbdUri, parseNbdUri } from '../../src/nbd/uri.ts';

test('NBD URIs parse into endpoint, export name and TLS', () => {
  assert.deepEqual(parseNbdUri('nbd://example.com/disk0'), { endpoint: { kind: 'tcp', host: 'example.com', port: 10809 }, exportName: 'disk0', tls: false });
  assert.deepEqual(parseNbdUri('nbds://10.0.0.1:10810/a%20b'), { endpoint: { kind: 'tcp', host: '10.0.0.1', port: 10810 }, exportName: 'a b', tls: true });
  assert.deepEqual(parseNbdUri('nbd://[::1]:9000'), { endpoint: { kind: 'tcp', host: '::1', port: 9000 }, exportName: '', tls: false });
  assert.deepEqual(parseNbdUri('nbd+unix:///vm-1/disk?socket=/run/x.sock'), { endpoint: { kind: 'unix', socketPath: '/run/x.sock' }, exportName: 'vm-1/disk', tls: false });
  assert.deepEqual(parseNbdUri('nbds+unix://?socket=/tmp/s'), { endpoint: { kind: 'unix', socketPath: '/tmp/s' }, exportName: '', tls: true });
});

test('format and parse round-trip', () => {
  for (const uri of ['nbd://h:10809/x', 'nbds://[::1]:1/y%2Fz', 'nbd+unix:///e?socket=/tmp/a b.sock']) {
    const parsed = parseNbdUri(uri);
    assert.deepEqual(parseNbdUri(formatNbdUri(parsed)), parsed);
  }
  // Export names with slashes (the lab's <snapshot>/<disk>) keep them literal; other characters are encoded.
  assert.equal(formatNbdUri({ endpoint: { kind: 'tcp', host: 'h', port: 10809 }, exportName: 'snapshot-78/2000', tls: false }), 'nbd://h:10809/snapshot-78/2000');
  assert.equal(formatNbdUri({ endpoint: { kind: 'tcp', host: 'h', port: 10809 }, exportName: 'a b/c?d', tls: false }), 'nbd://h:10809/a%20b/c%3Fd');
});

test('bad NBD URIs are NBD_BAD_URI errors that say what is wrong', () => {
  const cases: [string, RegExp][] = [
    ['nbd://', /missing host|not a URI/],
    ['nbd+unix:///disk', /missing \?socket=PATH/],
    ['nbd+unix://host/disk?socket=/x', /has no host/],
    ['nbd://h/disk?socket=/x', /only goes with nbd\+unix/],
    ['http://h/disk', /unknown scheme/],
    ['nbd://user:pw@h/disk', /user information/],
    ['nbd://h/%zz', /percent-encoding/],
  ];
  for (const [uri, message] of cases) assert.throws(() => parseNbdUri(uri), { code: 'NBD_BAD_URI', message }, uri);
  assert.throws(() => parseNbdUri('nbd://user:secret@h/disk'), (error: Error) => !error.message.includes('secret') && /\*\*\*@h/.test(error.message));
  assert.equal(isNbdUri('NBDS+UNIX:///x?socket=/s'), true);
  assert.equal(isNbdUri('/var/disk.raw'), false);
});
