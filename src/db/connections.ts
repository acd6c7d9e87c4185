import type pg from 'pg'
import { knex as createKnex, type Knex } from 'knex'
import { registerKeyring } from '../crypto/columns.js'
import { describeConnection } from '../internal/redact.js'
import { migrationSource, MIGRATIONS_TABLE } from '../migrations/index.js'
import type { ResolvedConfig } from './config.js'
import { ReplicaSet } from './replicas.js'
import { discardDeadConnections } from '../access/knex-internals.js'
import { isConnectionLost } from '../errors/driver-errors.js'
import { typeParsers } from './type-parsers.js'

/**
 * The knex settings of a connection (the primary or a replica): the pool, the type parsers, the application name,
 * and knex's own log routed to the host's logger.
 *
 * @internal
 */
export function knexConfig(
  config: ResolvedConfig,
  connection: (ResolvedConfig['connection'] & object) | string,
): Knex.Config {
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

/**
 * A knex over `settings` whose pool never hands out a connection that died (see `discardDeadConnections`).
 *
 * @internal
 */
export function openKnex(settings: Knex.Config): Knex {
  const knex = createKnex(settings)
  discardDeadConnections(knex, isConnectionLost)
  return knex
}

/**
 * The health check's own connection: the pool's settings, its own application_name.
 *
 * @internal
 */
export function healthCheckConnection(settings: Knex.Config, applicationName: string): pg.ClientConfig {
  return {
    ...(settings.connection as pg.ClientConfig),
    application_name: `${applicationName}-health`.slice(0, 63),
  }
}

/** The application_name of the replica monitor's connections. */
function monitorName(applicationName: string): string {
  return `${applicationName}-monitor`.slice(0, 63)
}

/**
 * The replicas of `config.replicas`, each with its own pool, watched by a monitor; undefined when there are none.
 *
 * @internal
 */
export function connectReplicas(
  primary: Knex,
  config: ResolvedConfig,
  primaryConnection: pg.ClientConfig,
): ReplicaSet | undefined {
  if (config.replicas.length === 0) return undefined
  return new ReplicaSet({
    primary,
    primaryConnection: { ...primaryConnection, application_name: monitorName(config.applicationName) },
    replicas: config.replicas.map((replica) => {
      // A busy replica should not hold a read for the primary's full acquire timeout: after at most a second
      // the read is retried on the primary and the replica rests until the monitor's next check.
      const replicaPool = { ...config.pool, acquireTimeoutMs: Math.min(config.pool.acquireTimeoutMs, 1_000) }
      const settings = knexConfig({ ...config, pool: replicaPool }, replica)
      const replicaKnex = openKnex({ ...settings, migrations: undefined })
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
}
