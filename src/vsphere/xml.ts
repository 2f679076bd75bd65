// A small, strict XML reader for SOAP responses, written for this project (no dependency).
//
// Two layers: `tokenize` turns text into events (open tag with raw attributes, close tag,
// character data) and `parseXml` builds a tree of XmlElement with namespace prefixes
// resolved and entities/CDATA decoded. The tokenizer is a generator, so a consumer that does
// not need a tree can stream events. Anything that is not well-formed (mismatched or
// unclosed tags, unknown entities, bare `<`/`&`, duplicate attributes, text outside the root)
// is an XmlSyntaxError with the offset; DOCTYPE is refused outright (no entity expansion).

import { VcbtError } from '../errors.ts';

export const XSI_NAMESPACE = 'http://www.w3.org/2001/XMLSchema-instance';
const XML_NAMESPACE = 'http://www.w3.org/XML/1998/namespace';
const XSI_TYPE_KEY = `{${XSI_NAMESPACE}}type`;

/** Code XML_SYNTAX: the bytes received are not well-formed XML. */
export class XmlSyntaxError extends VcbtError {
  constructor(message: string, offset: number) {
    super('XML_SYNTAX', `malformed XML at offset ${offset}: ${message}`, { offset });
  }
}

export interface XmlElement {
  /** Local name, without prefix. */
  readonly name: string;
  /** Resolved namespace URI ('' when none is in scope). */
  readonly namespace: string;
  /** Attributes by local name (unprefixed) or `{namespaceUri}local` (prefixed). */
  readonly attributes: ReadonlyMap<string, string>;
  readonly children: readonly XmlElement[];
  /** Decoded character data directly inside this element (CDATA included). */
  readonly text: string;
  /** Local part of `xsi:type` (`VirtualDisk` for `xsi:type="vim25:VirtualDisk"`), if present. */
  readonly xsiType: string | undefined;
}

export type XmlToken =
  | { kind: 'open'; qname: string; attributes: Array<[string, string]>; selfClosing: boolean; offset: number }
  | { kind: 'close'; qname: string; offset: number }
  | { kind: 'text'; value: string; offset: number };

// Sticky: matches a whole XML name starting exactly at lastIndex (one regex run per name,
// not one per character, which is what keeps big property-collector answers fast).
const namePattern = /[A-Za-z_:\u00C0-\uFFFF][A-Za-z0-9_.:\-\u00B7\u00C0-\uFFFF]*/y;

const predefinedEntities: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/** Replaces entity and character references; a bare `&` or unknown entity is an error. */
export function decodeEntities(raw: string, offset: number): string {
  if (!raw.includes('&')) return raw;
  let out = '';
  let at = 0;
  while (true) {
    const amp = raw.indexOf('&', at);
    if (amp < 0) return out + raw.slice(at);
    out += raw.slice(at, amp);
    const semi = raw.indexOf(';', amp);
    if (semi < 0 || semi - amp > 12) throw new XmlSyntaxError('"&" not followed by an entity reference', offset + amp);
    const name = raw.slice(amp + 1, semi);
    if (name.startsWith('#')) {
      const hex = name[1] === 'x';
      const digits = name.slice(hex ? 2 : 1);
      if (!(hex ? /^[0-9A-Fa-f]+$/ : /^[0-9]+$/).test(digits)) throw new XmlSyntaxError(`bad character reference "&${name};"`, offset + amp);
      const codePoint = parseInt(digits, hex ? 16 : 10);
      if (codePoint === 0 || codePoint > 0x10ffff || (codePoint >= 0xd800 && codePoint <= 0xdfff)) {
        throw new XmlSyntaxError(`character reference "&${name};" is not a legal character`, offset + amp);
      }
      out += String.fromCodePoint(codePoint);
    } else {
      const value = predefinedEntities[name];
      if (value === undefined) throw new XmlSyntaxError(`unknown entity "&${name};"`, offset + amp);
      out += value;
    }
    at = semi + 1;
  }
}

function readName(xml: string, at: number): number {
  namePattern.lastIndex = at;
  if (!namePattern.test(xml)) throw new XmlSyntaxError(`expected a name, found "${xml.slice(at, at + 10)}"`, at);
  return namePattern.lastIndex;
}

function isSpace(c: string | undefined): boolean {
  return c === ' ' || c === '\n' || c === '\t' || c === '\r';
}

/** Yields the document's events in order; text events carry decoded text. */
export function* tokenize(xml: string): Generator<XmlToken> {
  let at = 0;
  const length = xml.length;
  if (xml.charCodeAt(0) === 0xfeff) at = 1; // byte order mark
  while (at < length) {
    const lt = xml.indexOf('<', at);
    const textEnd = lt < 0 ? length : lt;
    if (textEnd > at) {
      const raw = xml.slice(at, textEnd);
      if (raw.includes(']]>')) throw new XmlSyntaxError('"]]>" outside CDATA', at);
      yield { kind: 'text', value: decodeEntities(raw, at), offset: at };
    }
    if (lt < 0) return;
    at = lt;
    if (xml.startsWith('<?', at)) {
      const end = xml.indexOf('?>', at + 2);
      if (end < 0) throw new XmlSyntaxError('unterminated processing instruction', at);
      at = end + 2;
    } else if (xml.startsWith('<!--', at)) {
      const end = xml.indexOf('-->', at + 4);
      if (end < 0) throw new XmlSyntaxError('unterminated comment', at);
      at = end + 3;
    } else if (xml.startsWith('<![CDATA[', at)) {
      const end = xml.indexOf(']]>', at + 9);
      if (end < 0) throw new XmlSyntaxError('unterminated CDATA section', at);
      yield { kind: 'text', value: xml.slice(at + 9, end), offset: at };
      at = end + 3;
    } else if (xml.startsWith('<!', at)) {
      throw new XmlSyntaxError('DOCTYPE and other declarations are not accepted', at);
    } else if (xml[at + 1] === '/') {
      const nameEnd = readName(xml, at + 2);
      let end = nameEnd;
      while (isSpace(xml[end])) end++;
      if (xml[end] !== '>') throw new XmlSyntaxError('expected ">" to end the closing tag', end);
      yield { kind: 'close', qname: xml.slice(at + 2, nameEnd), offset: at };
      at = end + 1;
    } else {
      const start = at;
      const nameEnd = readName(xml, at + 1);
      const qname = xml.slice(at + 1, nameEnd);
      const attributes: Array<[string, string]> = [];
      at = nameEnd;
      while (true) {
        const before = at;
        while (isSpace(xml[at])) at++;
        const c = xml[at];
        if (c === '>') {
          yield { kind: 'open', qname, attributes, selfClosing: false, offset: start };
          at++;
          break;
        }
        if (c === '/' && xml[at + 1] === '>') {
          yield { kind: 'open', qname, attributes, selfClosing: true, offset: start };
          at += 2;
          break;
        }
        if (c === undefined) throw new XmlSyntaxError(`unterminated tag <${qname}`, start);
        if (at === before) throw new XmlSyntaxError(`expected whitespace before attribute in <${qname}>`, at);
        const attrEnd = readName(xml, at);
        const attrName = xml.slice(at, attrEnd);
        at = attrEnd;
        while (isSpace(xml[at])) at++;
        if (xml[at] !== '=') throw new XmlSyntaxError(`attribute "${attrName}" without value`, at);
        at++;
        while (isSpace(xml[at])) at++;
        const quote = xml[at];
        if (quote !== '"' && quote !== "'") throw new XmlSyntaxError(`attribute "${attrName}" value not quoted`, at);
        const close = xml.indexOf(quote, at + 1);
        if (close < 0) throw new XmlSyntaxError(`unterminated value of attribute "${attrName}"`, at);
        const raw = xml.slice(at + 1, close);
        if (raw.includes('<')) throw new XmlSyntaxError(`"<" in value of attribute "${attrName}"`, at);
        if (attributes.some(([n]) => n === attrName)) throw new XmlSyntaxError(`duplicate attribute "${attrName}"`, at);
        attributes.push([attrName, decodeEntities(raw, at + 1)]);
        at = close + 1;
      }
    }
  }
}

type BuildingElement = { -readonly [K in keyof XmlElement]: XmlElement[K] } & { children: XmlElement[] };

const noAttributes: ReadonlyMap<string, string> = new Map();

function splitQName(qname: string): [prefix: string, local: string] {
  const colon = qname.indexOf(':');
  return colon < 0 ? ['', qname] : [qname.slice(0, colon), qname.slice(colon + 1)];
}

function isNamespaceDeclaration(name: string): boolean {
  return name === 'xmlns' || name.startsWith('xmlns:');
}

/** Parses a whole document into its root element. */
export function parseXml(xml: string): XmlElement {
  // Open elements as parallel stacks: no per-element bookkeeping object to allocate.
  const openElements: BuildingElement[] = [];
  const openQNames: string[] = [];
  const openScopes: Array<Map<string, string>> = [];
  let root: XmlElement | undefined;
  const rootScope = new Map<string, string>([['xml', XML_NAMESPACE]]);

  const resolve = (prefix: string, scope: Map<string, string>, offset: number): string => {
    const uri = scope.get(prefix);
    if (uri === undefined) {
      if (prefix === '') return '';
      throw new XmlSyntaxError(`undeclared namespace prefix "${prefix}"`, offset);
    }
    return uri;
  };

  for (const token of tokenize(xml)) {
    const depth = openElements.length;
    const parent = depth > 0 ? openElements[depth - 1] : undefined;
    if (token.kind === 'text') {
      if (parent) parent.text += token.value;
      else if (token.value.trim() !== '') throw new XmlSyntaxError('text outside the root element', token.offset);
      continue;
    }
    if (token.kind === 'close') {
      if (!parent) throw new XmlSyntaxError(`closing tag </${token.qname}> without an open element`, token.offset);
      const openQName = openQNames[depth - 1];
      if (openQName !== token.qname) throw new XmlSyntaxError(`closing tag </${token.qname}> does not match <${openQName}>`, token.offset);
      openElements.pop();
      openQNames.pop();
      openScopes.pop();
      if (depth > 1) openElements[depth - 2].children.push(parent);
      else root = parent;
      continue;
    }
    if (!parent && root) throw new XmlSyntaxError('more than one root element', token.offset);
    const inherited = depth > 0 ? openScopes[depth - 1] : rootScope;
    let scope = inherited;
    for (const [name, value] of token.attributes) {
      if (!isNamespaceDeclaration(name)) continue;
      if (scope === inherited) scope = new Map(scope);
      scope.set(name === 'xmlns' ? '' : name.slice(6), value);
    }
    const [prefix, local] = splitQName(token.qname);
    let attributes = noAttributes;
    let xsiType: string | undefined;
    for (const [name, value] of token.attributes) {
      if (isNamespaceDeclaration(name)) continue;
      if (attributes === noAttributes) attributes = new Map();
      const [attrPrefix, attrLocal] = splitQName(name);
      // Unprefixed attributes are in no namespace (not the default one), per the XML namespaces spec.
      const key = attrPrefix === '' ? attrLocal : `{${resolve(attrPrefix, scope, token.offset)}}${attrLocal}`;
      (attributes as Map<string, string>).set(key, value);
      if (key === XSI_TYPE_KEY) xsiType = splitQName(value.trim())[1];
    }
    const element: BuildingElement = { name: local, namespace: resolve(prefix, scope, token.offset), attributes, children: [], text: '', xsiType };
    if (token.selfClosing) {
      if (parent) parent.children.push(element);
      else root = element;
    } else {
      openElements.push(element);
      openQNames.push(token.qname);
      openScopes.push(scope);
    }
  }
  if (openElements.length > 0) throw new XmlSyntaxError(`element <${openQNames[openQNames.length - 1]}> is not closed`, xml.length);
  if (!root) throw new XmlSyntaxError('no root element', 0);
  return root;
}

/** Escapes text for element content or a double-quoted attribute value. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&${c === '&' ? 'amp' : c === '<' ? 'lt' : c === '>' ? 'gt' : c === '"' ? 'quot' : 'apos'};`);
}
