import type pg from 'pg'
import type { Knex } from 'knex'
import { encryptedProperties } from '../crypto/columns.js'
import { keyUsageSql } from '../crypto/key-usage.js'
import { MIGRATIONS_TABLE, migrationSource } from '../migrations/index.js'
import type { BaseModel } from '../models/base-model.js'
import { HealthReporter } from '../observability/health.js'
import { QueryStats, type DatabaseStats } from '../observability/query-stats.js'
import type { ReadCache } from './cache.js'
import type { ResolvedConfig } from './config.js'
import type { ReplicaSet } from './replicas.js'
import type { PrimaryStatus } from './primary.js'

/**
 * A database's query statistics (`db.stats`) and health reporter, watching the primary and every replica.
 *
 * @internal
 */
export interface Monitoring {
  readonly queryStats: QueryStats
  readonly stats: DatabaseStats
  readonly health: HealthReporter
}

/**
 * Starts the query statistics and the health reporter of a database. `encrypted` are the registry's models with
 * encrypted properties (their keys are checked); `connection` is the health check's own.
 *
 * @internal
 */
export function startMonitoring(
  knex: Knex,
  config: ResolvedConfig,
  connection: () => pg.ClientConfig,
  primary: () => PrimaryStatus,
  encrypted: readonly (typeof BaseModel)[],
  replicas: ReplicaSet | undefined,
  cache: ReadCache | undefined,
): Monitoring {
  const queryStats = new QueryStats(knex, {
    slowQueryMs: config.slowQueryMs,
    queryTiming: config.observability.queryTiming,
    connectionLeakMs: config.observability.connectionLeakMs,
    logger: config.logger,
  })
  const stats: DatabaseStats = Object.assign(() => queryStats.report(), {
    reset: () => queryStats.reset(),
    onSlowQuery: (listener: Parameters<QueryStats['onSlowQuery']>[0]) => queryStats.onSlowQuery(listener),
  })
  const health = new HealthReporter({
    knex,
    connection,
    primary,
    pool: { min: config.pool.min, max: config.pool.max },
    keyring: config.keyring,
    keyUsageQueries: encrypted.flatMap((model) =>
      encryptedProperties(model).map((column) => keyUsageSql(model.tableName, column.ciphertextColumn)),
    ),
    migrationsTable: MIGRATIONS_TABLE,
    tables: config.models.map((m) => m.tableName),
    migrationNames: async () =>
      (await migrationSource.getMigrations([])).map((m) => migrationSource.getMigrationName(m)),
    stats: queryStats,
    replicas,
    cache,
    logger: config.logger,
  })
  for (const replicaKnex of replicas?.knexes ?? []) queryStats.watch(replicaKnex)
  return { queryStats, stats, health }
}
