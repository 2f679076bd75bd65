// A validator for the subset of JSON Schema that scripts/json-schemas.ts generates (type,
// const, enum, anyOf, pattern, properties/required/additionalProperties, items). Small on
// purpose: the schemas are ours, and a failure names the JSON path that broke.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

type Schema = {
  type?: 'object' | 'array' | 'string' | 'number' | 'boolean' | 'null';
  const?: unknown;
  enum?: unknown[];
  anyOf?: Schema[];
  pattern?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: Schema | false;
  items?: Schema;
};

const schemaDir = resolve(import.meta.dirname, '..', '..', 'docs', 'json');

export function loadSchema(type: string): Schema {
  return JSON.parse(readFileSync(join(schemaDir, `${type}.schema.json`), 'utf8')) as Schema;
}

function typeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

/** The problems of `value` against `schema` (empty when it conforms), each with its path. */
export function schemaProblems(schema: Schema, value: unknown, path = '$'): string[] {
  if ('const' in schema && value !== schema.const) return [`${path}: ${JSON.stringify(value)} is not ${JSON.stringify(schema.const)}`];
  if (schema.enum && !schema.enum.includes(value)) return [`${path}: ${JSON.stringify(value)} is not one of ${schema.enum.join(', ')}`];
  if (schema.anyOf) {
    const each = schema.anyOf.map((s) => schemaProblems(s, value, path));
    return each.some((p) => p.length === 0) ? [] : [`${path}: matches no alternative (${each.map((p) => p.join('; ')).join(' | ')})`];
  }
  if (schema.type !== undefined && typeOf(value) !== schema.type) return [`${path}: ${typeOf(value)}, expected ${schema.type}`];
  if (schema.pattern !== undefined && !new RegExp(schema.pattern).test(value as string)) return [`${path}: "${String(value)}" does not match ${schema.pattern}`];
  const problems: string[] = [];
  if (schema.type === 'array' && schema.items) (value as unknown[]).forEach((item, i) => problems.push(...schemaProblems(schema.items as Schema, item, `${path}[${i}]`)));
  if (schema.type === 'object') {
    const object = value as Record<string, unknown>;
    for (const name of schema.required ?? []) if (!(name in object)) problems.push(`${path}.${name}: missing`);
    for (const [name, field] of Object.entries(object)) {
      const fieldSchema = schema.properties?.[name] ?? schema.additionalProperties;
      if (fieldSchema === false || fieldSchema === undefined) problems.push(`${path}.${name}: not in the schema`);
      else problems.push(...schemaProblems(fieldSchema, field, `${path}.${name}`));
    }
  }
  return problems;
}
