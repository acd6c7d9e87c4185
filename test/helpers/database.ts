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

/**
 * A login role with exactly the grants docs/migrations.md lists for the application's role (and `wincloud_scoped`
 * with row-level security), on the test database at `url` (a superuser URL). Returns its name and a URL that logs in
 * as it, straight to the server: the role exists there, not in PgBouncer's authentication.
 */
export async function createApplicationRole(
  url: string,
  options: { rls: boolean },
): Promise<{ role: string; url: string }> {
  const role = `app_${randomBytes(5).toString('hex')}`
  const password = randomBytes(12).toString('hex')
  await adminQuery(`create role ${role} login password '${password}'`)
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    await client.query(`grant select, insert, update, delete on users, droplets to ${role}`)
    await client.query(`grant select, insert on audit_logs to ${role}`)
    await client.query(`grant select on wincloud_audit_chain to ${role}`)
    await client.query(`grant select on wincloud_data_migrations, wincloud_data_migrations_lock to ${role}`)
    if (options.rls) await client.query(`grant wincloud_scoped to ${role}`)
  } finally {
    await client.end()
  }
  const connection = new URL(url)
  connection.username = role
  connection.password = password
  return { role, url: connection.toString() }
}
