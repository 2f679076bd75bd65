// Lint rules: typescript-eslint's recommended set plus the type-aware rules that catch
// the async mistakes style.md forbids (floating promises, misused promises), and the layer
// rules: which folder of src/ may import which (docs/architecture.md). Arrows point one way:
//   cli -> api -> service -> jobs -> (vsphere, transport, vddk, repository) -> (vmdk, extents, nbd, pipeline) -> errors.ts
//   (cli -> service and jobs too; api -> jobs too)
// The CLI reaches everything through src/api, src/service and src/jobs (values); the CLI,
// the API and the service may name any type.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const folders = ['cli', 'api', 'service', 'jobs', 'vsphere', 'transport', 'vmdk', 'vddk', 'repository', 'pipeline', 'nbd', 'extents'];
/** Per folder of src/: the folders it may import from (besides itself and src/errors.ts). */
const allowed = {
  cli: ['api', 'service', 'jobs'],
  api: ['service', 'jobs'],
  service: ['jobs'],
  jobs: ['vsphere', 'transport', 'vmdk', 'vddk', 'repository', 'pipeline', 'nbd', 'extents'],
  vsphere: ['extents'],
  transport: ['vmdk', 'nbd', 'extents'],
  vmdk: ['extents'],
  vddk: ['nbd'],
  repository: ['pipeline', 'extents'],
  pipeline: [],
  nbd: ['extents'],
  extents: [],
};
const layerRules = Object.entries(allowed).map(([folder, may]) => {
  const forbidden = folders.filter((f) => f !== folder && !may.includes(f));
  return {
    files: [`src/${folder}/**/*.ts`],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: forbidden.map((f) => `**/${f}/*`),
              message: `src/${folder} may import only from ${may.length ? may.map((f) => `src/${f}`).join(', ') : 'itself'} and src/errors.ts (layer rules in eslint.config.js, docs/architecture.md)`,
              // The CLI, the API and the service may name any type; their values come through src/jobs.
              allowTypeImports: folder === 'cli' || folder === 'api' || folder === 'service',
            },
          ],
        },
      ],
    },
  };
});

export default tseslint.config(
  { ignores: ['node_modules/**', 'test/lab/go/**', '.lab-cache/**', 'console/dist/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        // node:test's test()/describe()/it() return promises the runner itself awaits.
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite'] }] },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  ...layerRules,
  { files: ['**/*.js'], ...tseslint.configs.disableTypeChecked },
);
