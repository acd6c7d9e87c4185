import { tsImport } from 'tsx/esm/api'
import { defineConfig } from 'vitest/config'
import type * as Tools from './test/helpers/tools.js'

// The registry of optional tools, loaded as the tests load it (it reaches into scripts/, which are CommonJS).
const { needs } = (await tsImport('./test/helpers/tools.ts', import.meta.url)) as typeof Tools

const deep = process.env.WINCLOUD_TEST_DEEP === '1'

/** The integration files that run a second time with the library connected through PgBouncer (transaction mode). */
const THROUGH_PGBOUNCER = [
  'test/integration/access.test.ts',
  'test/integration/audit.test.ts',
  'test/integration/bulk.test.ts',
  'test/integration/encrypted-columns.test.ts',
  'test/integration/login.test.ts',
  'test/integration/models.test.ts',
  'test/integration/pagination.test.ts',
  'test/integration/rls.test.ts',
  'test/integration/seed.test.ts',
  'test/integration/pgbouncer.test.ts',
  'test/integration/model-registry.test.ts',
  'test/security/**/*.test.ts',
]

// Without PgBouncer or PostgreSQL 15 the PgBouncer run is skipped locally, saying so (test/helpers/tools.ts). CI
// keeps the run, and its setup fails, naming the packages: a run of only the unit tests needs neither.
const pgbouncer =
  Boolean(process.env.CI) || needs(['postgresql-15', 'pgbouncer'], 'the PgBouncer run of the integration suite')

export default defineConfig({
  test: {
    pool: 'forks',
    testTimeout: deep ? 300_000 : 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
    allowOnly: !process.env.CI,
    reporters: ['default'],
    projects: [
      {
        // Needs no database: compilers, codecs, crypto, configuration, the layers. `npm run test:unit`.
        extends: true,
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'] },
      },
      {
        extends: true,
        test: {
          name: 'postgres',
          include: ['test/**/*.test.ts'],
          exclude: ['test/unit/**', 'test/integration/pgbouncer.test.ts'],
          globalSetup: ['./test/helpers/global-setup.ts'],
        },
      },
      ...(pgbouncer
        ? [
            {
              extends: true as const,
              test: {
                name: 'pgbouncer',
                include: THROUGH_PGBOUNCER,
                globalSetup: ['./test/helpers/pgbouncer-setup.ts'],
              },
            },
          ]
        : []),
    ],
  },
})
