import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { inject } from 'vitest'
import { createDatabase, type Database, type DatabaseConfig } from '../../src/index.js'

/** A database of its own for one test file, on the run's server. */
export interface TestDatabase {
  readonly url: string
  readonly name: string
  drop(): Promise<void>
}

export function adminUrl(): string {
  return inject('adminDatabaseUrl')
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.toString()
}

/** Runs one statement on the server's maintenance database. */
export async function adminQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(
  sql: string,
  params: unknown[] = [],
): Promise<pg.QueryResult<R>> {
  const client = new pg.Client({ connectionString: adminUrl() })
  await client.connect()
  try {
    return await client.query<R>(sql, params)
  } finally {
    await client.end()
  }
}

/** Creates an empty database; `drop()` terminates its connections and removes it. */
export async function createTestDatabase(prefix = 't'): Promise<TestDatabase> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`
  await adminQuery(`create database "${name}"`)
  return {
    name,
    url: withDatabase(adminUrl(), name),
    drop: async () => {
      await adminQuery(`drop database if exists "${name}" with (force)`)
    },
  }
}

/** A migrated {@link Database} on a fresh database of its own; `cleanup()` closes it and drops the database. */
export async function openTestDatabase(
  config: Omit<DatabaseConfig, 'connection'> = {},
  options: { migrate?: boolean } = {},
): Promise<{ db: Database; url: string; cleanup: () => Promise<void> }> {
  const testDb = await createTestDatabase()
  // In the PgBouncer run the library goes through PgBouncer (transaction mode); the database is made directly.
  const via = inject('pgbouncerUrl')
  const db = await createDatabase({ ...config, connection: via ? withDatabase(via, testDb.name) : testDb.url })
  if (options.migrate !== false) await db.migrate.latest()
  return {
    db,
    url: testDb.url,
    cleanup: async () => {
      await db.close()
      await testDb.drop()
    },
  }
}

/** Cheap password hashing for tests. */
export const fastHash = { cost: 10 } as const
