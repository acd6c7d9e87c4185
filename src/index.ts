/**
 * `@wincloud/data`: the data layer of WinCloud Builder on PostgreSQL, built on objection and knex.
 *
 * The primitives a host may use outside the models have entries of their own: `@wincloud/data/crypto` (keyring,
 * envelopes, Fernet, blind indexes), `@wincloud/data/passwords` (password hashing) and `@wincloud/data/sql` (SQL
 * normalization).
 *
 * @packageDocumentation
 */
// First: a missing peer dependency (pg, knex, objection) is a ConfigError that says how to install it.
import './peers.js'

export { createDatabase } from './db/create-database.js'
export type {
  Database,
  Migrator,
  MigrationResult,
  MigrationStatus,
  RollbackDependent,
  RollbackPlan,
  RollbackTable,
  Seeder,
} from './db/create-database.js'
export type {
  DatabaseConfig,
  ConnectionOptions,
  PoolConfig,
  EmbeddedConfig,
  Logger,
  ObservabilityConfig,
  TargetSessionAttrs,
} from './db/config.js'
export type { PrimaryStatus } from './db/primary.js'

export { BaseModel, BaseQueryBuilder, User, Droplet, AuditLog, DROPLET_STATUSES } from './models/index.js'
export type { DropletStatus } from './models/index.js'

export type { Scope, ScopedRepository, ListOptions, RequestMeta, ScopeOptions } from './access/scope.js'
export type { ReadConsistency, ReplicaStatus } from './db/replicas.js'
export type { CacheConfig, CacheServer, CacheStatus } from './db/cache.js'
export { definePolicy, ownedBy, DEFAULT_ROLES } from './models/policy.js'
export type {
  Actor,
  AccessAction,
  AccessLevel,
  OwnerRule,
  Policy,
  PolicyDefinition,
  RolePermissions,
} from './models/policy.js'
export type { OffsetPage, KeysetPage, PageInfo, OffsetPageRequest, KeysetPageRequest } from './pagination/page.js'
export type { BulkOptions, BulkProgress, BulkResult } from './bulk/bulk.js'
export { SCOPED_DATABASE_ROLE } from './access/row-level-security.js'
export { FILTER_LIMITS } from './access/filter-compiler.js'
export type {
  Filter,
  FilterCondition,
  SortKey,
  UntypedFilter,
  FieldOperators,
  FilterValue,
  LikePattern,
  ColumnType,
} from './access/filter-compiler.js'

export type { AuditEvent, DatabaseAudit, ScopeAudit } from './audit/audit.js'
export type { AuditVerification, AuditChainProblem } from './audit/chain.js'

// The primitives live in subpath entries ('@wincloud/data/crypto', '/passwords', '/sql'): their names here are
// deprecated aliases, kept for one minor version.
export {
  /**
   * @deprecated Import from '@wincloud/data/crypto'; this alias is removed in a later minor version.
   * @example
   * ```ts
   * import { Keyring } from '@wincloud/data/crypto'
   * ```
   */
  Keyring,
  /**
   * @deprecated Import from '@wincloud/data/crypto'; this alias is removed in a later minor version.
   * @example
   * ```ts
   * import { encryptValue } from '@wincloud/data/crypto'
   * ```
   */
  encryptValue,
  /**
   * @deprecated Import from '@wincloud/data/crypto'; this alias is removed in a later minor version.
   * @example
   * ```ts
   * import { decryptValue } from '@wincloud/data/crypto'
   * ```
   */
  decryptValue,
  /**
   * @deprecated Import from '@wincloud/data/crypto'; this alias is removed in a later minor version.
   * @example
   * ```ts
   * import { envelopeKeyId } from '@wincloud/data/crypto'
   * ```
   */
  envelopeKeyId,
  /**
   * @deprecated Import from '@wincloud/data/crypto'; this alias is removed in a later minor version.
   * @example
   * ```ts
   * import { fernetEncrypt } from '@wincloud/data/crypto'
   * ```
   */
  fernetEncrypt,
  /**
   * @deprecated Import from '@wincloud/data/crypto'; this alias is removed in a later minor version.
   * @example
   * ```ts
   * import { fernetDecrypt } from '@wincloud/data/crypto'
   * ```
   */
  fernetDecrypt,
  /**
   * @deprecated Import from '@wincloud/data/crypto'; this alias is removed in a later minor version.
   * @example
   * ```ts
   * import { fernetKey } from '@wincloud/data/crypto'
   * ```
   */
  fernetKey,
  /**
   * @deprecated Import from '@wincloud/data/crypto'; this alias is removed in a later minor version.
   * @example
   * ```ts
   * import { isFernetToken } from '@wincloud/data/crypto'
   * ```
   */
  isFernetToken,
  /**
   * @deprecated Import from '@wincloud/data/crypto'; this alias is removed in a later minor version.
   * @example
   * ```ts
   * import { blindIndex } from '@wincloud/data/crypto'
   * ```
   */
  blindIndex,
} from './crypto.js'
export type {
  /**
   * @deprecated Import from '@wincloud/data/crypto'; this alias is removed in a later minor version.
   * @example
   * ```ts
   * import type { EnvelopeContext } from '@wincloud/data/crypto'
   * ```
   */
  EnvelopeContext,
} from './crypto.js'
// The types of createDatabase({ encryption }) and of encrypted properties, here and in '@wincloud/data/crypto'.
export type { EncryptionConfig } from './crypto/keyring.js'
export type { BlindIndexOptions, BlindIndexNormalization } from './crypto/blind-index.js'
export type { EncryptedColumnOptions } from './crypto/columns.js'
export type {
  DatabaseCrypto,
  EncryptColumnProgress,
  LegacyInventoryProgress,
  LegacyInventoryResult,
  LegacyTokenRefusal,
  RotationProgress,
  RotationResult,
} from './jobs/rotation.js'
export type { EncryptedModel, KeyUsage } from './crypto/key-usage.js'

export { healthHandler } from './observability/http.js'
export type { HealthHandlerOptions } from './observability/http.js'
export type { HealthReport, HealthOptions, PoolStatus } from './observability/health.js'
export {
  /**
   * @deprecated Import from '@wincloud/data/sql'; this alias is removed in a later minor version.
   * @example
   * ```ts
   * import { normalizeSql } from '@wincloud/data/sql'
   * ```
   */
  normalizeSql,
} from './sql.js'
export type {
  DatabaseStats,
  QueryStatsReport,
  QueryGroupStats,
  SlowQuery,
  ConnectionWaitStats,
} from './observability/query-stats.js'

export { migrationSource, MIGRATIONS_TABLE } from './migrations/index.js'
export type { LibraryMigration } from './migrations/index.js'

export type { SeedOptions, SeedResult, SeededAccount } from './seed/development.js'

export {
  /**
   * @deprecated Import from '@wincloud/data/passwords'; this alias is removed in a later minor version.
   * @example
   * ```ts
   * import { hashPassword } from '@wincloud/data/passwords'
   * ```
   */
  hashPassword,
  /**
   * @deprecated Import from '@wincloud/data/passwords'; this alias is removed in a later minor version.
   * @example
   * ```ts
   * import { verifyPassword } from '@wincloud/data/passwords'
   * ```
   */
  verifyPassword,
  /**
   * @deprecated Import from '@wincloud/data/passwords'; this alias is removed in a later minor version.
   * @example
   * ```ts
   * import { passwordNeedsRehash } from '@wincloud/data/passwords'
   * ```
   */
  passwordNeedsRehash,
} from './passwords.js'
// The type of createDatabase({ auth: { passwordHash } }) and of seeding, here and in '@wincloud/data/passwords'.
export type { PasswordHashOptions } from './auth/passwords.js'
export type { Auth, DatabaseAuth, LoginAttempt, LoginListener } from './auth/login.js'

export {
  DataError,
  ValidationError,
  AuthenticationError,
  ForbiddenError,
  NotFoundError,
  ConflictError,
  InvalidCursorError,
  DecryptionError,
  UnavailableError,
  ConfigError,
  isDataError,
} from './errors/index.js'
export type { DataErrorCode, DataErrorJson, ValidationDetail, ConstraintKind } from './errors/index.js'
