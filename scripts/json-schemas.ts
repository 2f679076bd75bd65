// Generates the JSON Schema (draft 2020-12) of every --json document from its TypeScript
// type (src/cli/json-documents.ts, interface JsonDocuments) into docs/json/<type>.schema.json.
//   npm run json-schemas            writes the files
//   generateJsonSchemas()           the same as text, for the drift test
// It reads the types with the TypeScript compiler API (already a dev dependency) and maps
// the small subset the documents use: objects (additionalProperties false unless an index
// signature allows more), arrays, unions, string/number/boolean literals, null, template
// literals (as a pattern), and JSDoc comments as descriptions.
import { writeFile, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import ts from 'typescript';

const root = resolve(import.meta.dirname, '..');
const documentsFile = join(root, 'src', 'cli', 'json-documents.ts');
export const schemaDir = join(root, 'docs', 'json');

type Schema = Record<string, unknown>;

function description(symbol: ts.Symbol | undefined, checker: ts.TypeChecker): string | undefined {
  const text = symbol ? ts.displayPartsToString(symbol.getDocumentationComment(checker)).trim() : '';
  return text === '' ? undefined : text.replace(/\s+/g, ' ');
}

function toSchema(type: ts.Type, checker: ts.TypeChecker, depth = 0): Schema {
  if (depth > 30) throw new Error(`type too deep: ${checker.typeToString(type)}`);
  const flags = type.flags;
  if (flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) return {};
  if (flags & ts.TypeFlags.Null) return { type: 'null' };
  if (flags & ts.TypeFlags.StringLiteral) return { const: (type as ts.StringLiteralType).value };
  if (flags & ts.TypeFlags.NumberLiteral) return { const: (type as ts.NumberLiteralType).value };
  if (flags & ts.TypeFlags.BooleanLiteral) return { const: checker.typeToString(type) === 'true' };
  if (flags & ts.TypeFlags.String) return { type: 'string' };
  if (flags & (ts.TypeFlags.Number | ts.TypeFlags.BigInt)) return { type: 'number' };
  if (flags & ts.TypeFlags.Boolean) return { type: 'boolean' };
  if (flags & ts.TypeFlags.TemplateLiteral) {
    const literal = type as ts.TemplateLiteralType;
    return { type: 'string', pattern: `^${literal.texts[0].replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}` };
  }
  if (type.isUnion()) {
    const members = type.types;
    const hasTrue = members.some((m) => m.flags & ts.TypeFlags.BooleanLiteral && checker.typeToString(m) === 'true');
    const hasFalse = members.some((m) => m.flags & ts.TypeFlags.BooleanLiteral && checker.typeToString(m) === 'false');
    const rest = members.filter((m) => !(m.flags & ts.TypeFlags.BooleanLiteral && hasTrue && hasFalse) && !(m.flags & ts.TypeFlags.Undefined));
    const schemas = rest.map((m) => toSchema(m, checker, depth + 1));
    if (hasTrue && hasFalse) schemas.push({ type: 'boolean' });
    const consts = schemas.filter((s) => 'const' in s && Object.keys(s).length === 1).map((s) => s.const);
    const others = schemas.filter((s) => !('const' in s && Object.keys(s).length === 1));
    // Sorted: the order of a union's members inside the compiler is not part of the contract.
    const merged = consts.length > 1 ? [{ enum: consts.sort() }, ...others] : schemas;
    return merged.length === 1 ? merged[0] : { anyOf: merged };
  }
  if (checker.isArrayType(type)) {
    const [element] = checker.getTypeArguments(type as ts.TypeReference);
    return { type: 'array', items: toSchema(element, checker, depth + 1) };
  }
  if (flags & ts.TypeFlags.Object || type.isIntersection()) {
    const properties: Record<string, Schema> = {};
    const required: string[] = [];
    // The header first (version, type), then the fields in declaration order.
    const header = ['version', 'type'];
    const rank = (name: string) => (header.includes(name) ? header.indexOf(name) : header.length);
    const ordered = checker.getPropertiesOfType(type).toSorted((a, b) => rank(a.name) - rank(b.name));
    for (const property of ordered) {
      const declaration = property.valueDeclaration ?? property.declarations?.[0];
      const propertyType = declaration ? checker.getTypeOfSymbolAtLocation(property, declaration) : checker.getTypeOfSymbol(property);
      const schema = toSchema(propertyType, checker, depth + 1);
      const text = description(property, checker);
      properties[property.name] = text === undefined ? schema : { description: text, ...schema };
      if (!(property.flags & ts.SymbolFlags.Optional)) required.push(property.name);
    }
    const index = checker.getIndexTypeOfType(type, ts.IndexKind.String);
    return {
      type: 'object',
      properties,
      required,
      additionalProperties: index === undefined ? false : toSchema(index, checker, depth + 1),
    };
  }
  throw new Error(`no JSON Schema mapping for ${checker.typeToString(type)}`);
}

/** Every document's schema as the text of its file, by file name. */
export function generateJsonSchemas(): Map<string, string> {
  const program = ts.createProgram([documentsFile], {
    target: ts.ScriptTarget.ESNext,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    allowImportingTsExtensions: true,
    noEmit: true,
    strict: true,
    skipLibCheck: true,
    types: ['node'],
  });
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(documentsFile);
  if (!source) throw new Error(`cannot read ${documentsFile}`);
  const documents = source.statements.find((s): s is ts.InterfaceDeclaration => ts.isInterfaceDeclaration(s) && s.name.text === 'JsonDocuments');
  if (!documents) throw new Error('interface JsonDocuments not found');
  const files = new Map<string, string>();
  for (const member of checker.getPropertiesOfType(checker.getTypeAtLocation(documents))) {
    const type = checker.getTypeOfSymbolAtLocation(member, documents);
    const aliasSymbol = type.aliasSymbol ?? type.getSymbol();
    const schema = {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      $id: `vcbt/json/${member.name}.schema.json`,
      title: `vcbt ${member.name === 'error' ? 'error' : member.name} document`,
      ...(description(aliasSymbol, checker) ? { description: description(aliasSymbol, checker) } : {}),
      ...toSchema(type, checker),
    };
    files.set(`${member.name}.schema.json`, `${JSON.stringify(schema, null, 2)}\n`);
  }
  return files;
}

if (import.meta.main) {
  await mkdir(schemaDir, { recursive: true });
  for (const [name, text] of generateJsonSchemas()) await writeFile(join(schemaDir, name), text);
  console.log(`wrote ${schemaDir}`);
}
