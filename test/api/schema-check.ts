// A JSON Schema checker for the subset the API's OpenAPI document uses (type, with type
// arrays for null; enum; required; properties; additionalProperties: false; items; oneOf;
// local $ref). Answers the problems found, each with its JSON path; [] means valid. Keywords
// outside the subset (format, minimum, description, default) are ignored, never failed.
type Schema = Record<string, unknown>;

function typeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

export function checkSchema(root: Schema, schema: Schema, value: unknown, path = '$'): string[] {
  if (typeof schema.$ref === 'string') {
    const target = (schema.$ref as string).replace(/^#\//, '').split('/').reduce<unknown>((node, key) => (node as Schema)[key], root);
    if (!target) return [`${path}: unresolved $ref ${schema.$ref as string}`];
    return checkSchema(root, target as Schema, value, path);
  }
  if (Array.isArray(schema.oneOf)) {
    const passing = (schema.oneOf as Schema[]).filter((s) => checkSchema(root, s, value, path).length === 0).length;
    return passing === 1 ? [] : [`${path}: matches ${passing} of the oneOf schemas, not exactly 1 (${JSON.stringify(value)?.slice(0, 200)})`];
  }
  const problems: string[] = [];
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? (schema.type as string[]) : [schema.type as string];
    const actual = typeOf(value);
    if (!types.includes(actual) && !(actual === 'integer' && types.includes('number'))) return [`${path}: is ${actual}, wants ${types.join(' or ')}`];
  }
  if (Array.isArray(schema.enum) && !(schema.enum as unknown[]).includes(value)) problems.push(`${path}: ${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`);
  if (typeOf(value) === 'object') {
    const object = value as Record<string, unknown>;
    const properties = (schema.properties ?? {}) as Record<string, Schema>;
    for (const key of (schema.required ?? []) as string[]) if (!(key in object)) problems.push(`${path}: lacks required "${key}"`);
    for (const [key, v] of Object.entries(object)) {
      if (properties[key]) problems.push(...checkSchema(root, properties[key], v, `${path}.${key}`));
      else if (schema.additionalProperties === false) problems.push(`${path}: has "${key}", which the schema does not allow`);
    }
  }
  if (Array.isArray(value) && schema.items) value.forEach((item, i) => problems.push(...checkSchema(root, schema.items as Schema, item, `${path}[${i}]`)));
  return problems;
}
