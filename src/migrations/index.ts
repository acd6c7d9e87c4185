import type { Knex } from 'knex'
import * as initial from './0001-initial.js'
import * as audit from './0002-audit.js'
import * as encryptedColumns from './0003-encrypted-columns.js'
import * as auditChainHardening from './0004-audit-chain-hardening.js'
import * as legacyTokenInventory from './0005-legacy-token-inventory.js'

/**
 * One migration of the library, as a knex migration source hands it out.
 *
 * @example
 * ```ts
 * const names = (await migrationSource.getMigrations([])).map((m: LibraryMigration) => m.name)
 * ```
 */
export interface LibraryMigration {
  readonly name: string
  readonly up: (knex: Knex) => Promise<void>
  readonly down: (knex: Knex) => Promise<void>
}

const MIGRATIONS: readonly LibraryMigration[] = Object.freeze([
  { name: '0001_initial', up: initial.up, down: initial.down },
  { name: '0002_audit', up: audit.up, down: audit.down },
  { name: '0003_encrypted_columns', up: encryptedColumns.up, down: encryptedColumns.down },
  { name: '0004_audit_chain_hardening', up: auditChainHardening.up, down: auditChainHardening.down },
  { name: '0005_legacy_token_inventory', up: legacyTokenInventory.up, down: legacyTokenInventory.down },
])

/**
 * The table in which {@link Database.migrate} records the library's migrations. A host that mounts
 * {@link migrationSource} in its own knex should use the same name, so both see one history.
 *
 * @example
 * ```ts
 * await hostKnex.migrate.latest({ migrationSource, tableName: MIGRATIONS_TABLE })
 * ```
 */
export const MIGRATIONS_TABLE = 'wincloud_data_migrations'

/**
 * The library's migrations as a knex `migrationSource`: code, not files, so it works from the built package with
 * no globbing. A host can run it in its own knex, next to its own migrations kept under another table name.
 *
 * @example
 * ```ts
 * import Knex from 'knex'
 * import { migrationSource, MIGRATIONS_TABLE } from '@wincloud/data'
 *
 * const knex = Knex.knex({ client: 'pg', connection: process.env.DATABASE_URL })
 * await knex.migrate.latest({ migrationSource, tableName: MIGRATIONS_TABLE }) // the library's tables
 * await knex.migrate.latest({ directory: './migrations' }) // the host's own, in knex_migrations
 * ```
 */
export const migrationSource: Knex.MigrationSource<LibraryMigration> = Object.freeze({
  getMigrations: (): Promise<LibraryMigration[]> => Promise.resolve([...MIGRATIONS]),
  getMigrationName: (migration: LibraryMigration): string => migration.name,
  getMigration: (migration: LibraryMigration): Promise<Knex.Migration> =>
    Promise.resolve({ up: migration.up, down: migration.down }),
})
