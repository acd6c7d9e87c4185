import type { Knex } from 'knex'
import { installRowLevelSecurity } from '../access/row-level-security.js'
import { ConfigError } from '../errors/index.js'
import { toDataError } from '../errors/driver-errors.js'
import { migrationSource } from '../migrations/index.js'
import type { ResolvedConfig } from './config.js'

/**
 * The state of the library's migrations.
 *
 * @example
 * ```ts
 * const { pending } = await db.migrate.status()
 * if (pending.length > 0) throw new Error(`run migrations first: ${pending.join(', ')}`)
 * ```
 */
export interface MigrationStatus {
  /** Applied migrations, oldest first. */
  readonly applied: readonly string[]
  /** Migrations not applied yet, in the order they would run. */
  readonly pending: readonly string[]
}

/**
 * What a migration run did.
 *
 * @example
 * ```ts
 * const { migrations } = await db.migrate.latest()
 * console.log(migrations.length ? `applied ${migrations.join(', ')}` : 'already up to date')
 * ```
 */
export interface MigrationResult {
  /** The batch number knex recorded: for `latest()` with nothing pending, the last one; 0 for an empty `rollback()`. */
  readonly batch: number
  /** The migrations applied or rolled back, in the order they ran. */
  readonly migrations: readonly string[]
}

/**
 * `db.migrate`: the library's migrations, recorded in the `wincloud_data_migrations` table.
 *
 * @example
 * ```ts
 * await db.migrate.latest()
 * await db.migrate.rollback({ all: true })
 * ```
 */
export interface Migrator {
  /** Applies every pending migration, in one batch. */
  latest(): Promise<MigrationResult>
  /** Rolls back the last batch, or every batch with `{ all: true }`. */
  rollback(options?: { all?: boolean }): Promise<MigrationResult>
  /** Lists applied and pending migrations. */
  status(): Promise<MigrationStatus>
  /**
   * Installs (or refreshes) row-level security for every model of the registry whose table exists: the library's,
   * and the host's own (`createDatabase({ models })`), each from its policy and the roles, as `latest()` does for
   * the library's tables with `rls: true`. Run it after the host's own migrations have created their tables, or
   * inside one of them by passing its `knex` (the migration's transaction). Needs `rls: true` and the tables'
   * owner. Returns the tables it installed, and the registered tables it did not find.
   *
   * @example
   * ```ts
   * const db = await createDatabase({ connection: process.env.DATABASE_URL, rls: true, models: [Domain] })
   * await db.migrate.latest()
   * await hostKnex.migrate.latest() // creates domains
   * const { installed } = await db.migrate.installRowLevelSecurity() // ['users', 'droplets', 'audit_logs', 'domains']
   * ```
   */
  installRowLevelSecurity(options?: {
    readonly knex?: Knex | Knex.Transaction
  }): Promise<{ readonly installed: readonly string[]; readonly missing: readonly string[] }>
}

/**
 * Runs `work`, with a driver's error mapped to the library's (`toDataError`).
 *
 * @internal
 */
export async function withDataErrors<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work()
  } catch (error) {
    throw toDataError(error)
  }
}

/**
 * `db.migrate` on the primary's knex: the library's migrations, and row-level security for the model registry.
 *
 * @internal
 */
export function createMigrator(knex: Knex, config: ResolvedConfig): Migrator {
  const migrator = knex.migrate
  // Row-level security for the registered models whose tables exist (a host's may come later, from its migrations).
  const installRegistered = async (runner: Knex | Knex.Transaction) => {
    const { rows } = await runner.raw<{ rows: { table: string; found: boolean }[] }>(
      `select t.name as table, to_regclass(quote_ident(t.name)) is not null as found from unnest(?::text[]) t(name)`,
      [config.models.map((m) => m.tableName)],
    )
    const found = new Set(rows.filter((r) => r.found).map((r) => r.table))
    await installRowLevelSecurity(
      runner,
      config.models.filter((m) => found.has(m.tableName)),
      config.roles,
    )
    return {
      installed: config.models.map((m) => m.tableName).filter((t) => found.has(t)),
      missing: config.models.map((m) => m.tableName).filter((t) => !found.has(t)),
    }
  }
  return Object.freeze({
    installRowLevelSecurity: (options: { knex?: Knex | Knex.Transaction } = {}) =>
      withDataErrors(async () => {
        if (!config.rls) {
          throw new ConfigError('rls', 'is off: row-level security is installed only with rls: true.')
        }
        return await installRegistered(options.knex ?? knex)
      }),
    latest: () =>
      withDataErrors(async () => {
        const [batch, log] = (await migrator.latest()) as [number, string[]]
        if (config.rls) await installRegistered(knex)
        return { batch, migrations: log }
      }),
    rollback: (options: { all?: boolean } = {}) =>
      withDataErrors(async () => {
        const [batch, log] = (await migrator.rollback(undefined, options.all === true)) as [number, string[]]
        return { batch, migrations: log }
      }),
    status: () =>
      withDataErrors(async () => {
        const [completed, pending] = (await migrator.list()) as [{ name: string }[], { name: string }[]]
        return {
          applied: completed.map((m) => m.name),
          pending: pending.map((m) => migrationSource.getMigrationName(m as never)),
        }
      }),
  })
}
