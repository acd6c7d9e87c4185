/**
 * `@wincloud/data`: the data layer of WinCloud Builder on PostgreSQL, built on objection and knex.
 *
 * @packageDocumentation
 */
export { createDatabase } from './db/create-database.js'
export type { Database, Migrator, MigrationResult, MigrationStatus, Seeder } from './db/create-database.js'
export type { DatabaseConfig, ConnectionOptions, PoolConfig, EmbeddedConfig, Logger } from './db/config.js'

export { BaseModel, BaseQueryBuilder, User, Droplet, AuditLog, DROPLET_STATUSES } from './models/index.js'
export type { DropletStatus } from './models/index.js'

export { migrationSource, MIGRATIONS_TABLE } from './migrations/index.js'
export type { LibraryMigration } from './migrations/index.js'

export type { SeedOptions, SeedResult, SeededAccount } from './seed/development.js'

export { hashPassword, verifyPassword, passwordNeedsRehash } from './auth/passwords.js'
export type { PasswordHashOptions } from './auth/passwords.js'

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
} from './errors.js'
export type { DataErrorCode, DataErrorJson, ValidationDetail, ConstraintKind } from './errors.js'
