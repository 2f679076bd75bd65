// vim25 SOAP envelopes: building a request from typed values and reading a response
// (its return element, or its fault).
//
// Request values: strings, integers (number or bigint), booleans, morefs (`ref(m)`), data
// objects (plain objects whose key order is the XML Schema sequence order the server
// expects; `$type` becomes `xsi:type`, which polymorphic types such as ObjectSpec's
// TraversalSpec or VirtualMachineConfigSpec need) and arrays (repeated elements).
// `undefined` fields are left out. A value of a field typed `xsd:anyType` (OptionValue's
// `value`) must say its type: `xsdString(text)` sends `<value xsi:type="xsd:string">`. A value
// the server returned can be sent back unchanged with `echo(element)` (an ImportSpec from
// CreateImportSpec to ImportVApp): its element tree, text and xsi:types are written again.
import { escapeXml, parseXml, XSI_NAMESPACE, type XmlElement } from './xml.ts';
import { child, children, optionalText, SoapDecodeError, type MoRef } from './decode.ts';

export type SoapValue = string | number | bigint | boolean | SoapRef | SoapTypedText | SoapEcho | SoapObject | readonly SoapValue[] | undefined;
/** An element the server sent, to send back as it was (under the field's own name). */
export interface SoapEcho {
  readonly $echo: XmlElement;
}
export interface SoapRef {
  readonly $ref: MoRef;
}
/** Text with an explicit XML Schema type, for fields declared `xsd:anyType`. */
export interface SoapTypedText {
  readonly $xsd: 'string';
  readonly $text: string;
}
export interface SoapObject {
  readonly $type?: string;
  readonly [field: string]: SoapValue;
}

export function ref(m: MoRef): SoapRef {
  return { $ref: m };
}

const SOAP_ENVELOPE = 'http://schemas.xmlsoap.org/soap/envelope/';
const VIM25 = 'urn:vim25';

function isRef(value: object): value is SoapRef {
  return '$ref' in value;
}

/** A string sent as `xsi:type="xsd:string"` (OptionValue.value and other anyType fields). */
export function xsdString(text: string): SoapTypedText {
  return { $xsd: 'string', $text: text };
}

function isTypedText(value: object): value is SoapTypedText {
  return '$xsd' in value;
}

export function echo(element: XmlElement): SoapEcho {
  return { $echo: element };
}

function isEcho(value: object): value is SoapEcho {
  return '$echo' in value;
}

const XSI_TYPE_ATTRIBUTE = `{${XSI_NAMESPACE}}type`;

/** An element tree written back: XML Schema types keep the `xsd:` prefix, vim25 types go unprefixed (the default namespace). */
function encodeEcho(name: string, element: XmlElement): string {
  const rawType = element.attributes.get(XSI_TYPE_ATTRIBUTE)?.trim();
  let attributes = '';
  if (rawType) {
    const [prefix, local] = rawType.includes(':') ? rawType.split(':', 2) : ['', rawType];
    attributes += ` xsi:type="${escapeXml(prefix === 'xsd' || prefix === 'xs' ? `xsd:${local}` : local)}"`;
  }
  const moType = element.attributes.get('type');
  if (moType !== undefined) attributes += ` type="${escapeXml(moType)}"`;
  const inner = element.children.length > 0 ? element.children.map((c) => encodeEcho(c.name, c)).join('') : escapeXml(element.text);
  return `<${name}${attributes}>${inner}</${name}>`;
}

export function encodeValue(name: string, value: SoapValue): string {
  if (value === undefined) return '';
  if (Array.isArray(value)) return value.map((v: SoapValue) => encodeValue(name, v)).join('');
  if (typeof value === 'string') return `<${name}>${escapeXml(value)}</${name}>`;
  if (typeof value === 'bigint') return `<${name}>${value}</${name}>`;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new RangeError(`SOAP field ${name}: ${value} is not an exact integer`);
    return `<${name}>${value}</${name}>`;
  }
  if (typeof value === 'boolean') return `<${name}>${value}</${name}>`;
  const object = value as SoapRef | SoapTypedText | SoapEcho | SoapObject;
  if (isEcho(object)) return encodeEcho(name, object.$echo);
  if (isTypedText(object)) return `<${name} xsi:type="xsd:${object.$xsd}">${escapeXml(object.$text)}</${name}>`;
  if (isRef(object)) return `<${name} type="${escapeXml(object.$ref.type)}">${escapeXml(object.$ref.value)}</${name}>`;
  const typeAttribute = object.$type ? ` xsi:type="${escapeXml(object.$type)}"` : '';
  let inner = '';
  for (const [field, fieldValue] of Object.entries(object)) {
    if (field !== '$type') inner += encodeValue(field, fieldValue);
  }
  return `<${name}${typeAttribute}>${inner}</${name}>`;
}

/** The whole request document for `method` on managed object `thisRef`. */
export function buildEnvelope(method: string, thisRef: MoRef, params: Readonly<Record<string, SoapValue>> = {}): string {
  let body = encodeValue('_this', ref(thisRef));
  for (const [name, value] of Object.entries(params)) body += encodeValue(name, value);
  return (
    '<?xml version="1.0" encoding="UTF-8"?>' +
    `<soapenv:Envelope xmlns:soapenv="${SOAP_ENVELOPE}" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="${XSI_NAMESPACE}">` +
    `<soapenv:Body><${method} xmlns="${VIM25}">${body}</${method}></soapenv:Body></soapenv:Envelope>`
  );
}

/** A fault as the server described it: the vim25 type name and its message. */
export interface FaultInfo {
  faultType: string;
  faultMessage: string;
  /** The fault's data object (e.g. FileFault's <file>), for callers that need a field. */
  detail: XmlElement | undefined;
}

export type SoapResponse = { kind: 'result'; response: XmlElement } | { kind: 'fault'; fault: FaultInfo };

function bodyOf(envelope: XmlElement): XmlElement {
  if (envelope.name !== 'Envelope' || envelope.namespace !== SOAP_ENVELOPE) throw new SoapDecodeError(`expected a SOAP Envelope, got <${envelope.name}>`);
  const body = envelope.children.find((c) => c.name === 'Body' && c.namespace === SOAP_ENVELOPE);
  if (!body) throw new SoapDecodeError('SOAP Envelope has no Body');
  return body;
}

/** A vim25 fault's type: its xsi:type, else its element name without the `Fault` suffix. */
export function faultTypeOf(element: XmlElement): string {
  return element.xsiType ?? element.name.replace(/Fault$/, '');
}

/** Reads a response document: `<MethodResponse>` or a SOAP Fault. */
export function parseResponse(xml: string): SoapResponse {
  const body = bodyOf(parseXml(xml));
  const first = body.children[0];
  if (!first) throw new SoapDecodeError('SOAP Body is empty');
  if (first.name === 'Fault' && first.namespace === SOAP_ENVELOPE) {
    const detailElement = child(first, 'detail');
    const detail = detailElement?.children[0];
    return {
      kind: 'fault',
      fault: {
        faultType: detail ? faultTypeOf(detail) : (optionalText(first, 'faultcode') ?? 'UnknownFault').trim(),
        faultMessage: (optionalText(first, 'faultstring') ?? '').trim(),
        detail,
      },
    };
  }
  return { kind: 'result', response: first };
}

/** The `returnval` elements of a response (none, one, or many). */
export function returnValues(response: XmlElement): XmlElement[] {
  return children(response, 'returnval');
}

/** A LocalizedMethodFault (task info.error, missingSet fault) as a FaultInfo. */
export function localizedFault(element: XmlElement): FaultInfo {
  const fault = child(element, 'fault');
  return {
    faultType: fault ? faultTypeOf(fault) : 'UnknownFault',
    faultMessage: (optionalText(element, 'localizedMessage') ?? '').trim(),
    detail: fault,
  };
}

/**
 * The NotAuthenticated fault of a property read whose session has ended, if the response is
 * one: vCenter answers such a read with HTTP 200 and, per object, `missingSet` entries whose
 * fault is NotAuthenticated (RetrievePropertiesEx/ContinueRetrievePropertiesEx: returnval
 * holds `objects`; RetrieveProperties: each returnval is an object).
 */
export function notAuthenticatedInMissingSet(response: XmlElement): FaultInfo | undefined {
  for (const result of returnValues(response)) {
    for (const objectContent of [result, ...children(result, 'objects')]) {
      for (const missing of children(objectContent, 'missingSet')) {
        const faultElement = child(missing, 'fault');
        if (!faultElement) continue;
        const fault = localizedFault(faultElement);
        if (fault.faultType === 'NotAuthenticated') return fault;
      }
    }
  }
  return undefined;
}
