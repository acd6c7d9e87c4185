import type { Knex } from 'knex'
import { installRowLevelSecurity } from '../access/row-level-security.js'
import { ConfigError, ConflictError } from '../errors/index.js'
import { toDataError } from '../errors/driver-errors.js'
import { quoteIdentifier } from '../internal/identifiers.js'
import { migrationSource, MIGRATIONS_TABLE } from '../migrations/index.js'
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
 * A table a rollback would drop, and what it holds.
 *
 * @example
 * ```ts
 * const { tables } = await db.migrate.planRollback({ all: true })
 * for (const t of tables) console.log(`${t.name}: ${t.rows} rows${t.holdsData ? '' : ' (nothing to lose)'}`)
 * ```
 */
export interface RollbackTable {
  /** The table's name. */
  readonly name: string
  /** How many rows it holds now. */
  readonly rows: number
  /**
   * Whether the rollback would lose rows the application wrote: false for an empty table, and for
   * `wincloud_audit_chain` while it holds only the head row `0002_audit` made (the hash chain never enabled).
   */
  readonly holdsData: boolean
}

/**
 * An object outside the library that depends on a table a rollback would drop: PostgreSQL cannot drop the table
 * while it is there, so the rollback refuses to start.
 *
 * @example
 * ```ts
 * const { dependents } = await db.migrate.planRollback()
 * for (const d of dependents) console.log(d.description) // droplet_snapshots.droplet_id references droplets
 * ```
 */
export interface RollbackDependent {
  /** A foreign key to the table, a view (or materialized view) over it, or any other object (a rule, a function of its row type…). */
  readonly kind: 'foreign-key' | 'view' | 'other'
  /** The object: `droplet_snapshots.droplet_id` for a foreign key, the view's name, PostgreSQL's description otherwise. */
  readonly object: string
  /** The library's table it depends on. */
  readonly table: string
  /** The foreign key's constraint; undefined for any other kind. */
  readonly constraint: string | undefined
  /** In words: `droplet_snapshots.droplet_id references droplets`, `view active_users depends on users`. */
  readonly description: string
}

/**
 * What a rollback would do, found without changing anything: the migrations it would undo, the tables it would
 * drop with their rows, and the objects outside the library that would make it refuse.
 *
 * @example
 * ```ts
 * const plan = await db.migrate.planRollback({ all: true })
 * if (plan.dependents.length > 0) throw new Error(plan.dependents.map((d) => d.description).join('; '))
 * if (!plan.tables.some((t) => t.holdsData)) await db.migrate.rollback({ all: true })
 * ```
 */
export interface RollbackPlan {
  /** The migrations it would undo, in the order it would undo them; empty when there is nothing to roll back. */
  readonly migrations: readonly string[]
  /** The tables it would drop, in the order it would drop them (only those that exist). */
  readonly tables: readonly RollbackTable[]
  /** The objects outside the library in the way; the rollback refuses while there is any. */
  readonly dependents: readonly RollbackDependent[]
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
  /**
   * Rolls back the last batch, or every batch with `{ all: true }`, newest migration first, all or nothing: the
   * whole rollback is one transaction, so a failure leaves every table and the `wincloud_data_migrations` rows as
   * they were. Before dropping anything it looks for objects outside the library that depend on the tables it would
   * drop (foreign keys to them, views over them; see {@link Migrator.planRollback}) and refuses with a
   * `ConflictError` naming each of them. A dependency found only when dropping (a column default that calls one of
   * the library's functions, say) is a `ConflictError` as well, and changes nothing either.
   *
   * @example
   * ```ts
   * try {
   *   await db.migrate.rollback({ all: true })
   * } catch (error) {
   *   // "… droplet_snapshots.droplet_id references droplets: drop or alter it first."
   *   if (error instanceof ConflictError) console.error(error.message)
   * }
   * ```
   */
  rollback(options?: { all?: boolean }): Promise<MigrationResult>
  /**
   * What `rollback(options)` would do, without doing it: the migrations, the tables it would drop with their row
   * counts, and the objects in the way. Counting reads every row of those tables.
   *
   * @example
   * ```ts
   * const plan = await db.migrate.planRollback({ all: true })
   * console.log(plan.tables.map((t) => `${t.name} (${t.rows} rows)`).join(', '))
   * ```
   */
  planRollback(options?: { all?: boolean }): Promise<RollbackPlan>
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
 * The tables each migration's rollback drops, in the order it drops them. A migration that drops no table (it
 * changes columns, functions, triggers) is not listed.
 */
const DROPPED_TABLES: Readonly<Record<string, readonly string[]>> = Object.freeze({
  '0005_legacy_token_inventory': ['wincloud_legacy_token_columns', 'wincloud_legacy_tokens'],
  '0002_audit': ['wincloud_audit_chain'],
  '0001_initial': ['audit_logs', 'droplets', 'users'],
})

/** Which rows of a table are the application's data, for a table a migration fills itself: the chain's head row. */
const DATA_ROWS: Readonly<Record<string, string>> = Object.freeze({
  wincloud_audit_chain: 'enabled_at is not null or last_seq > 0',
})

type Runner = Knex | Knex.Transaction

/** The migrations a rollback would undo, in knex's order: the last batch newest first, or every applied one. */
async function migrationsToUndo(runner: Runner, all: boolean): Promise<string[]> {
  const { rows: found } = await runner.raw<{ rows: { present: boolean }[] }>(
    'select to_regclass(?) is not null as present',
    [MIGRATIONS_TABLE],
  )
  if (found[0]?.present !== true) return []
  const { rows } = await runner.raw<{ rows: { name: string; batch: number }[] }>(
    `select name, batch from ${quoteIdentifier(MIGRATIONS_TABLE)} order by id desc`,
  )
  if (all) {
    const applied = new Set(rows.map((r) => r.name))
    const names = (await migrationSource.getMigrations([])).map((m) => migrationSource.getMigrationName(m))
    return names.filter((name) => applied.has(name)).reverse()
  }
  const last = Math.max(...rows.map((r) => r.batch))
  return rows.filter((r) => r.batch === last).map((r) => r.name)
}

/** The tables that undoing `migrations` drops and that exist, in the order they would be dropped. */
async function tablesToDrop(runner: Runner, migrations: readonly string[]): Promise<string[]> {
  const names = migrations.flatMap((m) => DROPPED_TABLES[m] ?? [])
  if (names.length === 0) return []
  const { rows } = await runner.raw<{ rows: { name: string }[] }>(
    `select t.name from unnest(?::text[]) with ordinality t(name, n)
     where to_regclass(quote_ident(t.name)) is not null order by t.n`,
    [names],
  )
  return rows.map((r) => r.name)
}

/** How many rows each table holds, and how many of them are data (see {@link DATA_ROWS}). */
async function countRows(runner: Runner, tables: readonly string[]): Promise<RollbackTable[]> {
  if (tables.length === 0) return []
  const columns = tables.map((table, i) => {
    const from = quoteIdentifier(table)
    return `(select count(*) from ${from})::text as rows_${i}, (select count(*) from ${from} where ${DATA_ROWS[table] ?? 'true'})::text as data_${i}`
  })
  const { rows } = await runner.raw<{ rows: Record<string, string>[] }>(`select ${columns.join(', ')}`)
  const counts = rows[0] ?? {}
  return tables.map((name, i) => ({
    name,
    rows: Number(counts[`rows_${i}`] ?? 0),
    holdsData: Number(counts[`data_${i}`] ?? 0) > 0,
  }))
}

/**
 * The objects outside `tables` that depend on them (PostgreSQL's normal dependencies, on a table or on its row
 * type): foreign keys from other tables, views, and anything else. Objects that belong to one of the tables (its
 * own constraints, indexes, triggers, policies, defaults) go with it and are not listed.
 */
async function dependentsOf(runner: Runner, tables: readonly string[]): Promise<RollbackDependent[]> {
  if (tables.length === 0) return []
  const { rows } = await runner.raw<{
    rows: { kind: RollbackDependent['kind']; object: string; table: string; constraint: string | null; label: string }[]
  }>(
    `with dropped as (
       select c.oid, c.reltype, t.name from unnest(?::text[]) t(name) join pg_class c on c.oid = to_regclass(quote_ident(t.name))
     ), deps as (
       select distinct d.classid, d.objid, d.objsubid, t.name as target from pg_depend d
       join dropped t on (d.refclassid = 'pg_class'::regclass and d.refobjid = t.oid)
                      or (d.refclassid = 'pg_type'::regclass and d.refobjid = t.reltype)
       where d.deptype = 'n'
     ), owned as (
       select deps.*, case deps.classid
           when 'pg_constraint'::regclass then (select nullif(conrelid, 0) from pg_constraint where oid = deps.objid)
           when 'pg_rewrite'::regclass then (select ev_class from pg_rewrite where oid = deps.objid)
           when 'pg_trigger'::regclass then (select tgrelid from pg_trigger where oid = deps.objid)
           when 'pg_policy'::regclass then (select polrelid from pg_policy where oid = deps.objid)
           when 'pg_attrdef'::regclass then (select adrelid from pg_attrdef where oid = deps.objid)
           when 'pg_statistic_ext'::regclass then (select stxrelid from pg_statistic_ext where oid = deps.objid)
           when 'pg_class'::regclass then deps.objid
         end as relation
       from deps
     )
     select o.target as table,
       case when con.contype = 'f' then 'foreign-key'
            when o.classid = 'pg_rewrite'::regclass and rel.relkind in ('v', 'm') then 'view'
            else 'other' end as kind,
       case when con.contype = 'f' then con.conrelid::regclass::text || '.' || (
              select string_agg(a.attname, ', ' order by k.n) from unnest(con.conkey) with ordinality k(attnum, n)
              join pg_attribute a on a.attrelid = con.conrelid and a.attnum = k.attnum)
            when o.classid = 'pg_rewrite'::regclass and rel.relkind in ('v', 'm') then rel.oid::regclass::text
            else pg_describe_object(o.classid, o.objid, o.objsubid) end as object,
       case when con.contype = 'f' then con.conname end as constraint,
       case rel.relkind when 'm' then 'materialized view' else 'view' end as label
     from owned o
     left join pg_constraint con on o.classid = 'pg_constraint'::regclass and con.oid = o.objid
     left join pg_class rel on rel.oid = o.relation
     where o.relation is null or o.relation not in (select oid from dropped)
     order by array_position(?::text[], o.target), 2, 3`,
    [[...tables], [...tables]],
  )
  return rows.map((r) => ({
    kind: r.kind,
    object: r.object,
    table: r.table,
    constraint: r.constraint ?? undefined,
    description:
      r.kind === 'foreign-key'
        ? `${r.object} references ${r.table}`
        : r.kind === 'view'
          ? `${r.label} ${r.object} depends on ${r.table}`
          : `${r.object} depends on ${r.table}`,
  }))
}

/** What undoing the last batch (or every batch) would do, read through `runner`; without row counts unless asked. */
async function planOn(runner: Runner, all: boolean, counts: boolean): Promise<RollbackPlan> {
  const migrations = await migrationsToUndo(runner, all)
  const tables = await tablesToDrop(runner, migrations)
  return {
    migrations,
    tables: counts ? await countRows(runner, tables) : tables.map((name) => ({ name, rows: 0, holdsData: false })),
    dependents: await dependentsOf(runner, tables),
  }
}

const ADVICE = 'drop or alter it first'

/** The refusal of a rollback that objects outside the library are in the way of. */
function blockedBy(dependents: readonly RollbackDependent[]): ConflictError {
  const first = dependents[0]
  return new ConflictError(
    `Rollback refused, nothing was changed: ${dependents.map((d) => `${d.description}: ${ADVICE}`).join('; ')}.`,
    'foreign-key',
    first?.table,
    [],
    first?.constraint,
  )
}

/**
 * A drop that PostgreSQL refused because other objects depend on what it drops (SQLSTATE 2BP01: a column default
 * calling one of the library's functions, a view over a column a migration drops), as the same refusal: its detail
 * names each object. Any other error is returned unchanged.
 */
function dropRefused(error: unknown): unknown {
  const fields = (typeof error === 'object' && error !== null ? error : {}) as { code?: unknown; detail?: unknown }
  if (fields.code !== '2BP01') return error
  const lines = typeof fields.detail === 'string' ? fields.detail.split('\n').filter((line) => line !== '') : []
  const named = lines.length > 0 ? lines : ['another object depends on what it drops']
  return new ConflictError(
    `Rollback refused, nothing was changed: ${named.map((line) => `${line}: ${ADVICE}`).join('; ')}.`,
    'foreign-key',
    undefined,
    [],
    undefined,
    { cause: error },
  )
}

/**
 * The rollback, in one transaction: knex's lock row taken against other runs, the objects in the way looked for,
 * then knex's own rollback run on the transaction, so each migration's `down` and the removal of its row in
 * `wincloud_data_migrations` commit together or not at all.
 */
async function rollbackAtomically(knex: Knex, all: boolean): Promise<MigrationResult> {
  return await knex.transaction(async (trx) => {
    // knex's lock row, held from here to the end: another run that applies or rolls back migrations (in a transaction,
    // as db.migrate does) waits until this one ends, so the plan below stays true. knex takes the same row first too,
    // so the two cannot deadlock; a run that holds knex's lock outside a transaction makes this one fail, changing
    // nothing ("Migration table is already locked").
    const lockTable = `${MIGRATIONS_TABLE}_lock`
    const { rows } = await trx.raw<{ rows: { present: boolean }[] }>('select to_regclass(?) is not null as present', [
      lockTable,
    ])
    if (rows[0]?.present === true) await trx.raw(`select from ${quoteIdentifier(lockTable)} for update`)
    const plan = await planOn(trx, all, false)
    if (plan.dependents.length > 0) throw blockedBy(plan.dependents)
    try {
      // knex's migrator on a transaction runs every `down` in a savepoint of it, and commits nothing itself.
      const [batch, log] = (await trx.migrate.rollback(undefined, all)) as [number, string[]]
      return { batch, migrations: log }
    } catch (error) {
      throw dropRefused(error)
    }
  })
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
    rollback: (options: { all?: boolean } = {}) => withDataErrors(() => rollbackAtomically(knex, options.all === true)),
    planRollback: (options: { all?: boolean } = {}) => withDataErrors(() => planOn(knex, options.all === true, true)),
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
