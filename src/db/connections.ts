import type pg from 'pg'
import { knex as createKnex, type Knex } from 'knex'
import { registerKeyring } from '../crypto/columns.js'
import { describeConnection } from '../internal/redact.js'
import { migrationSource, MIGRATIONS_TABLE } from '../migrations/index.js'
import type { ResolvedConfig } from './config.js'
import { ReplicaSet } from './replicas.js'
import { connectThrough, guardConnections, retryLostReads } from '../access/connection-guard.js'
import { isConnectionLost, lostOnArrival, noteLostConnection } from '../errors/driver-errors.js'
import { fieldTargets, urlTargets } from './config/hosts.js'
import type { PrimaryLocator } from './primary.js'
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
  const fields: Record<string, unknown> = typeof connection === 'string' ? {} : { ...connection }
  delete fields.hosts
  delete fields.targetSessionAttrs
  // A host list is not something pg reads: the first host stands in until a connection is pointed at one.
  const targets = connectionTargets(connection)
  const first = targets?.hosts[0]?.settings
  // A connection to a host list may keep looking for the primary for failoverTimeoutMs.
  const createTimeout = Math.min(config.pool.acquireTimeoutMs, 30_000)
  const base = typeof connection === 'string' ? { connectionString: connection } : fields
  return {
    client: 'pg',
    connection: {
      ...base,
      ...first,
      application_name: config.applicationName,
      types: typeParsers,
      keepAlive: true,
      // A server that never answers the handshake is given up on (and its socket cut) instead of held open.
      connectionTimeoutMillis: createTimeout,
      ...(config.pool.queryTimeoutMs > 0 ? { query_timeout: config.pool.queryTimeoutMs } : {}),
    } as Knex.PgConnectionConfig,
    pool: {
      min: config.pool.min,
      max: config.pool.max,
      acquireTimeoutMillis: config.pool.acquireTimeoutMs,
      idleTimeoutMillis: config.pool.idleTimeoutMs,
      createTimeoutMillis:
        targets === undefined ? createTimeout : Math.max(createTimeout, config.failoverTimeoutMs + 1_000),
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
 * The host list of a `connection` and what its server must be; undefined for one host and no
 * `target_session_attrs`.
 *
 * @internal
 */
export function connectionTargets(connection: (ResolvedConfig['connection'] & object) | string) {
  return typeof connection === 'string' ? urlTargets(connection) : fieldTargets({ ...connection })
}

/**
 * A knex over `settings` whose pool never hands out a connection that died or sat idle past `pool.idleCheckMs`
 * without answering (see `guardConnections`), retries a plain read once when its connection was lost, and, given a
 * `locator`, connects to the host it finds.
 *
 * @internal
 */
export function openKnex(settings: Knex.Config, pool: ResolvedConfig['pool'], locator?: PrimaryLocator): Knex {
  const knex = createKnex(settings)
  const wrongServer = (error: unknown): boolean =>
    locator?.wantsWritable === true && (error as { code?: unknown } | null)?.code === '25006'
  guardConnections(knex, {
    isLost: (error) => isConnectionLost(error) || wrongServer(error),
    // A read-only refusal is no loss: nothing was committed, and the statement is not to be retried blindly either.
    noteLoss: (error, sql, status, elapsedMs) => {
      if (isConnectionLost(error)) noteLostConnection(error, sql, status, elapsedMs)
    },
    idleCheckMs: pool.idleCheckMs,
    pingTimeoutMs: Math.min(pool.acquireTimeoutMs, 2_000),
  })
  retryLostReads(knex, lostOnArrival)
  if (locator !== undefined) connectThrough(knex, (open) => locator.connect(open))
  return knex
}

/**
 * The health check's own connection: the pool's settings, its own application_name.
 *
 * @internal
 */
export function healthCheckConnection(
  settings: Knex.Config,
  applicationName: string,
  locator: PrimaryLocator | undefined,
): () => pg.ClientConfig {
  // The health check keeps its own deadline.
  const connection = { ...(settings.connection as pg.ClientConfig) }
  delete connection.query_timeout
  const config = { ...connection, application_name: `${applicationName}-health`.slice(0, 63) }
  return () => (locator === undefined ? config : { ...config, ...locator.current() })
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
  primaryConnection: () => pg.ClientConfig,
): ReplicaSet | undefined {
  if (config.replicas.length === 0) return undefined
  return new ReplicaSet({
    primary,
    primaryConnection: () => ({ ...primaryConnection(), application_name: monitorName(config.applicationName) }),
    replicas: config.replicas.map((replica) => {
      // A busy replica should not hold a read for the primary's full acquire timeout: after at most a second
      // the read is retried on the primary and the replica rests until the monitor's next check.
      const replicaPool = { ...config.pool, acquireTimeoutMs: Math.min(config.pool.acquireTimeoutMs, 1_000) }
      const settings = knexConfig({ ...config, pool: replicaPool }, replica)
      const replicaKnex = openKnex({ ...settings, migrations: undefined }, replicaPool)
      if (config.keyring !== undefined) registerKeyring(replicaKnex, config.keyring)
      return {
        knex: replicaKnex,
        name: describeConnection(replica),
        pool: { min: replicaPool.min, max: replicaPool.max },
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
