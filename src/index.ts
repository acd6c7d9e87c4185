/**
 * `@wincloud/data`: the data layer of WinCloud Builder on PostgreSQL, built on objection and knex.
 *
 * @packageDocumentation
 */
export { createDatabase } from './db/create-database.js'
export type { Database, Migrator, MigrationResult, MigrationStatus, Seeder } from './db/create-database.js'
export type {
  DatabaseConfig,
  ConnectionOptions,
  PoolConfig,
  EmbeddedConfig,
  Logger,
  ObservabilityConfig,
} from './db/config.js'

export { BaseModel, BaseQueryBuilder, User, Droplet, AuditLog, DROPLET_STATUSES } from './models/index.js'
export type { DropletStatus } from './models/index.js'

export { Scope } from './access/scope.js'
export type { ScopedRepository, ListOptions, RequestMeta, ScopeOptions } from './access/scope.js'
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
export type { Filter, FieldOperators, FilterValue, LikePattern, ColumnType } from './access/filter-compiler.js'

export type { AuditEvent, DatabaseAudit, ScopeAudit } from './audit/audit.js'
export type { AuditVerification, AuditChainProblem } from './audit/chain.js'

export { Keyring } from './crypto/keyring.js'
export type { EncryptionConfig } from './crypto/keyring.js'
export { encryptValue, decryptValue, envelopeKeyId } from './crypto/envelope.js'
export type { EnvelopeContext } from './crypto/envelope.js'
export { fernetEncrypt, fernetDecrypt, fernetKey, isFernetToken } from './crypto/fernet.js'
export { blindIndex } from './crypto/blind-index.js'
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
export type { BlindIndexOptions, BlindIndexNormalization } from './crypto/blind-index.js'

export { healthHandler } from './observability/http.js'
export type { HealthHandlerOptions } from './observability/http.js'
export type { HealthReport, HealthOptions, PoolStatus } from './observability/health.js'
export { normalizeSql } from './observability/query-stats.js'
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

export { hashPassword, verifyPassword, passwordNeedsRehash } from './auth/passwords.js'
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
