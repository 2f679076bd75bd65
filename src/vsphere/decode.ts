// Typed reads from vim25 response elements: the one place where XML text becomes numbers,
// booleans and morefs. Arrays of one are just one repeated child, so `children` always
// returns an array. Longs are parsed exactly (BigInt) and refused above 2^53 - 1 rather than
// rounded. A missing or malformed field is a SoapDecodeError naming the element path.
import { VcbtError } from '../errors.ts';
import { VsphereError, type Target } from './errors.ts';
import type { XmlElement } from './xml.ts';

/** A managed object reference: `<obj type="VirtualMachine">vm-10</obj>`. */
export interface MoRef {
  readonly type: string;
  readonly value: string;
}

export function moRef(type: string, value: string): MoRef {
  return { type, value };
}

/** Code VSPHERE_BAD_RESPONSE, before the caller adds its target (see withTarget). */
export class SoapDecodeError extends VcbtError {
  constructor(message: string) {
    super('VSPHERE_BAD_RESPONSE', message);
  }
}

/** Runs a decode and turns a SoapDecodeError into a VsphereError naming server/VM/disk. */
export async function withTarget<T>(target: Target, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof SoapDecodeError) throw new VsphereError('VSPHERE_BAD_RESPONSE', `unexpected answer: ${error.message}`, target, {}, { cause: error });
    throw error;
  }
}

export function children(element: XmlElement, name: string): XmlElement[] {
  return element.children.filter((c) => c.name === name);
}

export function child(element: XmlElement, name: string): XmlElement | undefined {
  return element.children.find((c) => c.name === name);
}

export function requireChild(element: XmlElement, name: string): XmlElement {
  const found = child(element, name);
  if (!found) throw new SoapDecodeError(`<${element.name}> has no <${name}>`);
  return found;
}

export function optionalText(element: XmlElement, name: string): string | undefined {
  return child(element, name)?.text;
}

export function requireText(element: XmlElement, name: string): string {
  return requireChild(element, name).text;
}

const integerPattern = /^\s*[+-]?\d+\s*$/;
const maxSafe = BigInt(Number.MAX_SAFE_INTEGER);

/** An xsd:long/int as an exact JS number; refuses anything beyond 2^53 - 1 in magnitude. */
export function parseLong(text: string, what: string): number {
  if (!integerPattern.test(text)) throw new SoapDecodeError(`${what}: "${text}" is not an integer`);
  const value = BigInt(text.trim());
  if (value > maxSafe || value < -maxSafe) throw new SoapDecodeError(`${what}: ${text.trim()} does not fit exactly in a JS number`);
  return Number(value);
}

export function longOf(element: XmlElement, name: string): number {
  return parseLong(requireText(element, name), `<${element.name}><${name}>`);
}

export function optionalLong(element: XmlElement, name: string): number | undefined {
  const text = optionalText(element, name);
  return text === undefined ? undefined : parseLong(text, `<${element.name}><${name}>`);
}

export function parseBoolean(text: string, what: string): boolean {
  const trimmed = text.trim();
  if (trimmed === 'true' || trimmed === '1') return true;
  if (trimmed === 'false' || trimmed === '0') return false;
  throw new SoapDecodeError(`${what}: "${text}" is not a boolean`);
}

export function optionalBoolean(element: XmlElement, name: string): boolean | undefined {
  const text = optionalText(element, name);
  return text === undefined ? undefined : parseBoolean(text, `<${element.name}><${name}>`);
}

/** Reads an element that is a ManagedObjectReference (`type` attribute, value as text). */
export function asMoRef(element: XmlElement): MoRef {
  const type = element.attributes.get('type');
  const value = element.text.trim();
  if (!type || !value) throw new SoapDecodeError(`<${element.name}> is not a managed object reference`);
  return moRef(type, value);
}

export function moRefOf(element: XmlElement, name: string): MoRef {
  return asMoRef(requireChild(element, name));
}

export function optionalMoRef(element: XmlElement, name: string): MoRef | undefined {
  const found = child(element, name);
  return found ? asMoRef(found) : undefined;
}
