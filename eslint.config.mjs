import js from '@eslint/js'
import tseslint from 'typescript-eslint'
import layers from './scripts/layers.json' with { type: 'json' }

const folders = Object.keys(layers.allowed)

/**
 * The layers of docs/architecture.md, file by file: each folder of src/ may import values only from the folders
 * scripts/layers.json allows it (type-only imports are free), and never from the face (the top-level entries).
 */
const layerRules = folders.map((folder) => {
  const refused = [...folders, ...layers.face].filter(
    (other) => other !== folder && !layers.allowed[folder].includes(other),
  )
  return {
    files: [`src/${folder}/**/*.ts`],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              // From any depth (db/config/ imports with ../../); the face is the top-level files of src/.
              group: [
                ...refused.filter((f) => f !== 'face').flatMap((f) => [`../${f}/*`, `../../${f}/*`]),
                '../*.js',
                '../../*.js',
              ],
              allowTypeImports: true,
              message: `src/${folder}/ may import values only from ${layers.allowed[folder].join(', ') || 'nothing of ours'} (docs/architecture.md).`,
            },
          ],
        },
      ],
    },
  }
})

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', 'docs/api/', 'examples/express-app/', '.tmp/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: { allowDefaultProject: ['*.mjs', 'scripts/*.mjs'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  ...layerRules,
  {
    // The size rule of docs/architecture.md: a longer function says at its top, in the disable comment, why it is
    // one piece.
    files: ['src/**/*.ts'],
    rules: {
      'max-lines': ['error', { max: 400, skipBlankLines: true, skipComments: true }],
      'max-lines-per-function': ['error', { max: 80, skipBlankLines: true, skipComments: true }],
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts', 'examples/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  {
    files: ['**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
)
