// The console's API types (console/src/api-types.ts) are generated from the OpenAPI document:
// a change of the API without `npm run console:types` fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { consoleApiTypes } from '../../scripts/console-api-types.ts';

test('console/src/api-types.ts matches the OpenAPI document (npm run console:types regenerates it)', async () => {
  const current = await readFile(join(import.meta.dirname, '../../console/src/api-types.ts'), 'utf8');
  assert.equal(current, consoleApiTypes(), 'console/src/api-types.ts is stale: run npm run console:types');
});
