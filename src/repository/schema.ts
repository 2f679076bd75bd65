// Checking JSON read from the repository against its documented schema (docs/format.md)
// before anything uses it: a manifest, config or lock record that parsed as JSON but has the
// wrong shape (null, `disks: [null]`, a string where a number belongs) is refused with the
// path of the first wrong field, instead of failing later as a TypeError.
//
// A Shape is a small predicate tree; `check` returns the first problem ("disks[0].index.sha256
// is not 64 hex digits") or undefined.

export type Shape = (value: unknown, at: string) => string | undefined;

const label = (at: string): string => (at === '' ? 'the document' : at);
const describe = (value: unknown): string => (value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value);

export const string: Shape = (v, at) => (typeof v === 'string' ? undefined : `${label(at)} is ${describe(v)}, not a string`);
export const safeInteger = (min = 0, max = Number.MAX_SAFE_INTEGER): Shape => (v, at) =>
  Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max ? undefined : `${label(at)} is ${JSON.stringify(v) ?? describe(v)}, not a whole number in ${min}..${max}`;
export const pattern = (re: RegExp, what: string): Shape => (v, at) => (typeof v === 'string' && re.test(v) ? undefined : `${label(at)} is not ${what}`);
export const oneOf = (...values: readonly unknown[]): Shape => (v, at) => (values.includes(v) ? undefined : `${label(at)} is ${JSON.stringify(v) ?? describe(v)}, not one of ${values.map((x) => JSON.stringify(x)).join(', ')}`);
export const timestamp: Shape = (v, at) => (typeof v === 'string' && Number.isFinite(Date.parse(v)) ? undefined : `${label(at)} is not a time`);
export const boolean: Shape = (v, at) => (typeof v === 'boolean' ? undefined : `${label(at)} is ${describe(v)}, not true or false`);
export const anything: Shape = () => undefined;
export const nullable = (shape: Shape): Shape => (v, at) => (v === null ? undefined : shape(v, at));

export function object(fields: Record<string, Shape>): Shape {
  return (v, at) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return `${label(at)} is ${describe(v)}, not an object`;
    for (const [key, shape] of Object.entries(fields)) {
      const problem = shape((v as Record<string, unknown>)[key], at === '' ? key : `${at}.${key}`);
      if (problem) return problem;
    }
    return undefined;
  };
}

export function arrayOf(shape: Shape): Shape {
  return (v, at) => {
    if (!Array.isArray(v)) return `${label(at)} is ${describe(v)}, not an array`;
    for (let i = 0; i < v.length; i++) {
      const problem = shape(v[i], `${at}[${i}]`);
      if (problem) return problem;
    }
    return undefined;
  };
}

/** The first problem of `value` against `shape`, or undefined when it fits. */
export function check(value: unknown, shape: Shape): string | undefined {
  return shape(value, '');
}
