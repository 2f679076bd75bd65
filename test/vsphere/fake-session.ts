// A VsphereSession stand-in for unit tests of the XML layer: every call is encoded with the
// real envelope builder (recorded for assertions) and answered with a canned response body
// that goes through the real response parser and fault mapping. No network.
import { buildEnvelope, parseResponse, type SoapValue } from '../../src/vsphere/soap.ts';
import { VsphereFault, type Target } from '../../src/vsphere/errors.ts';
import { moRef, type MoRef } from '../../src/vsphere/decode.ts';
import type { CallOptions, SessionScope, VsphereSession } from '../../src/vsphere/session.ts';
import type { XmlElement } from '../../src/vsphere/xml.ts';

export interface RecordedCall {
  method: string;
  thisRef: MoRef;
  envelope: string;
}

const ENVELOPE_OPEN =
  '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>';
const ENVELOPE_CLOSE = '</soapenv:Body></soapenv:Envelope>';

/** `<MethodResponse xmlns="urn:vim25">inner</MethodResponse>` in an envelope. */
export function reply(method: string, inner: string): string {
  return `${ENVELOPE_OPEN}<${method}Response xmlns="urn:vim25">${inner}</${method}Response>${ENVELOPE_CLOSE}`;
}

export function faultReply(faultType: string, message: string, fields = ''): string {
  return `${ENVELOPE_OPEN}<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>${message}</faultstring><detail><${faultType}Fault xmlns="urn:vim25" xsi:type="${faultType}">${fields}</${faultType}Fault></detail></soapenv:Fault>${ENVELOPE_CLOSE}`;
}

export function fakeSession(answer: (call: RecordedCall, index: number) => string): { session: VsphereSession; calls: RecordedCall[] } {
  const calls: RecordedCall[] = [];
  const server = 'fake.example:443';
  const fake = {
    server,
    serviceContent: {
      rootFolder: moRef('Folder', 'group-d1'),
      propertyCollector: moRef('PropertyCollector', 'propertyCollector'),
      viewManager: moRef('ViewManager', 'ViewManager'),
      sessionManager: moRef('SessionManager', 'SessionManager'),
      searchIndex: moRef('SearchIndex', 'SearchIndex'),
      about: { apiVersion: '7.0', fullName: 'fake', apiType: 'VirtualCenter' },
    },
    target(extra: Omit<Target, 'server'> = {}): Target {
      return { server, ...extra };
    },
    loginGeneration: 1,
    withSessionObjects<T>(work: (scope: SessionScope) => Promise<T>, outer?: SessionScope): Promise<T> {
      return work(outer ?? { generation: 1 });
    },
    async call(method: string, thisRef: MoRef, params: Readonly<Record<string, SoapValue>> = {}, options: CallOptions = {}): Promise<XmlElement> {
      const call = { method, thisRef, envelope: buildEnvelope(method, thisRef, params) };
      calls.push(call);
      const parsed = parseResponse(answer(call, calls.length - 1));
      if (parsed.kind === 'fault') throw new VsphereFault(parsed.fault, method, { server, ...options.target });
      return parsed.response;
    },
  };
  return { session: fake as unknown as VsphereSession, calls };
}

/** The part of a recorded envelope inside the method element. */
export function bodyOf(call: RecordedCall): string {
  const open = `<${call.method} xmlns="urn:vim25">`;
  const start = call.envelope.indexOf(open);
  const end = call.envelope.lastIndexOf(`</${call.method}>`);
  return call.envelope.slice(start + open.length, end);
}
