import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseXml, tokenize, escapeXml, XmlSyntaxError, XSI_NAMESPACE } from '../../src/vsphere/xml.ts';

test('namespaces: prefixes and default namespace resolve; attributes keyed by namespace', () => {
  const root = parseXml(
    `<?xml version="1.0"?><s:Envelope xmlns:s="urn:env" xmlns:xsi="${XSI_NAMESPACE}"><s:Body><R xmlns="urn:vim25"><v xsi:type="xsd:long" type="T">5</v></R></s:Body></s:Envelope>`,
  );
  assert.equal(root.name, 'Envelope');
  assert.equal(root.namespace, 'urn:env');
  const r = root.children[0].children[0];
  assert.equal(r.namespace, 'urn:vim25');
  const v = r.children[0];
  assert.equal(v.namespace, 'urn:vim25');
  assert.equal(v.xsiType, 'long');
  assert.equal(v.attributes.get('type'), 'T');
  assert.equal(v.attributes.get(`{${XSI_NAMESPACE}}type`), 'xsd:long');
});

test('a prefix redeclared in a child only applies inside it', () => {
  const root = parseXml('<a:x xmlns:a="one"><a:y xmlns:a="two"/><a:z/></a:x>');
  assert.deepEqual(root.children.map((c) => c.namespace), ['two', 'one']);
});

test('entities, character references and CDATA decode into text', () => {
  const root = parseXml('<a>&lt;&gt;&amp;&quot;&apos;&#65;&#x42;<![CDATA[<raw & text>]]></a>');
  assert.equal(root.text, `<>&"'AB<raw & text>`);
  const attr = parseXml(`<a v="x&amp;y&#x2F;"/>`);
  assert.equal(attr.attributes.get('v'), 'x&y/');
});

test('escapeXml round-trips through the parser', () => {
  const tricky = `p<a&s"s'w>rd`;
  assert.equal(parseXml(`<a v="${escapeXml(tricky)}">${escapeXml(tricky)}</a>`).text, tricky);
  assert.equal(parseXml(`<a v="${escapeXml(tricky)}"/>`).attributes.get('v'), tricky);
});

test('comments and processing instructions are skipped; whitespace around root allowed', () => {
  const root = parseXml('\uFEFF<?xml version="1.0"?>\n<!-- c --><a><!-- inside --><b/></a>\n');
  assert.equal(root.children.length, 1);
});

test('malformed documents are XmlSyntaxError with an offset', () => {
  const bad = [
    '<a><b></a>',
    '<a>',
    '<a></a><b/>',
    'text<a/>',
    '<a>&bogus;</a>',
    '<a>& x</a>',
    '<a x="1" x="2"/>',
    '<a x=1/>',
    '<a x="<"/>',
    '<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>',
    '<p:a/>',
    '<a>&#0;</a>',
    '<a><![CDATA[x</a>',
    '',
  ];
  for (const text of bad) {
    assert.throws(() => parseXml(text), (e: unknown) => e instanceof XmlSyntaxError && e.code === 'XML_SYNTAX' && typeof e.context.offset === 'number', text);
  }
});

test('tokenize streams events in document order', () => {
  const kinds = [...tokenize('<a x="1"><b/>t</a>')].map((t) => (t.kind === 'text' ? `text:${t.value}` : `${t.kind}:${t.qname}`));
  assert.deepEqual(kinds, ['open:a', 'open:b', 'text:t', 'close:a']);
});
