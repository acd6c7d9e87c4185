import { startEmbeddedPostgres, type EmbeddedServer } from '../../src/db/embedded-postgres.js'

declare module 'vitest' {
  export interface ProvidedContext {
    /** A superuser URL of the server every test file gets its own database on. */
    adminDatabaseUrl: string
    /** In the PgBouncer run: PgBouncer's URL, through which the library connects; '' otherwise. */
    pgbouncerUrl: string
  }
}

/**
 * Starts one throwaway PostgreSQL for the whole run (or uses TEST_DATABASE_URL), and stops it at the end.
 * Each test file then creates its own database on it (see ./database.ts), so files never see each other's rows.
 */
export default async function setup(project: {
  provide(key: 'adminDatabaseUrl' | 'pgbouncerUrl', value: string): void
}): Promise<() => Promise<void>> {
  let server: EmbeddedServer | undefined
  let url = process.env.TEST_DATABASE_URL
  if (!url) {
    server = await startEmbeddedPostgres({
      settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', max_connections: '200' },
    })
    url = server.url
  }
  project.provide('adminDatabaseUrl', url)
  project.provide('pgbouncerUrl', '')
  return async () => {
    await server?.stop()
  }
}
