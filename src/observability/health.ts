import type pg from 'pg'
import type { Knex } from 'knex'
import type { Keyring } from '../crypto/keyring.js'
import type { Logger } from '../db/config.js'
import { ValidationError } from '../errors/index.js'
import type { QueryStats } from './query-stats.js'
import type { ReplicaSet, ReplicaStatus } from '../db/replicas.js'
import type { PrimaryStatus } from '../db/primary.js'
import type { CacheStatus, ReadCache } from '../db/cache.js'
import { raceDeadline } from './health-deadline.js'
import { connectionLost, describeFailure, HealthConnection } from './health-connection.js'
import { probe, type ProbeResult } from './health-probe.js'
import { degradedReasons } from './health-reasons.js'
import { poolStatus, type PoolStatus } from './pool-status.js'

// The parts of a check live in their own modules (the connection, the probe, the reasons, the pool's figures, the
// deadline); this one puts them together and is the one others import.
export type { PoolStatus } from './pool-status.js'

/**
 * What `db.health()` found.
 *
 * Status rules:
 * - `unhealthy`: the database did not answer within `timeoutMs`, or refused (down, unreachable, authentication).
 * - `degraded`: it answered, but callers wait for connections (`pool.pendingAcquires > 0`), every connection is in
 *   use, a connection is held past `observability.connectionLeakMs`, migrations are pending, the round trip took
 *   longer than `degradedLatencyMs`, or an exact count did not finish in time.
 * - `healthy`: none of these.
 *
 * `reasons` says which rules applied. The report never contains a connection string, a password or a row.
 *
 * @example
 * ```ts
 * const report: HealthReport = await db.health({ timeoutMs: 1_000 })
 * if (report.status !== 'healthy') console.warn(report.reasons)
 * ```
 */
export interface HealthReport {
  readonly status: 'healthy' | 'degraded' | 'unhealthy'
  readonly reasons: readonly string[]
  readonly checkedAt: string
  /** The health round trip, or the time until it gave up. */
  readonly latencyMs: number
  readonly database: { readonly serverVersion: string | null; readonly inRecovery: boolean | null }
  readonly pool: PoolStatus
  /** Rows per table: planner estimates (`exact: false`) unless `exactCounts` was asked and finished in time. */
  readonly tables: Readonly<Record<string, { readonly rows: number; readonly exact: boolean }>>
  readonly migrations: { readonly pending: readonly string[] | null }
  /**
   * The server the pool writes to: with a host list in `connection`, the one last found writable and when that last
   * changed (a failover); with one host, that host.
   */
  readonly primary: PrimaryStatus
  /** Each read replica's state, from the replica monitor's last check. */
  readonly replicas: readonly ReplicaStatus[]
  /** When the Redis cache is configured: its state and counters. */
  readonly cache?: CacheStatus
  /** When `encryption` is configured: key ids, and with `keyUsage: true`, the values each key protects. */
  readonly encryption?: {
    readonly currentKey: string
    readonly keys: readonly string[]
    readonly keyUsage?: Readonly<Record<string, number>>
  }
  /** Why the database is unhealthy: a short description, never a connection string or a credential. */
  readonly error?: string
}

/**
 * Options of `db.health()`.
 *
 * @example
 * ```ts
 * const options: HealthOptions = { timeoutMs: 2_000, exactCounts: true, tables: ['servers'], keyUsage: true }
 * ```
 */
export interface HealthOptions {
  /** The report is returned within this many milliseconds, whatever the database does (default 1000). */
  readonly timeoutMs?: number
  /** Count rows exactly (under the remaining time as a statement timeout) instead of planner estimates. */
  readonly exactCounts?: boolean
  /** More tables to count, besides those of the model registry (`users`, `droplets`, `audit_logs` and the host's). */
  readonly tables?: readonly string[]
  /** Count the values each encryption key protects (reads every encrypted column: not for every probe). */
  readonly keyUsage?: boolean
  /** A round trip slower than this makes the report `degraded` (default 250 ms). */
  readonly degradedLatencyMs?: number
}

const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_$]{0,62}(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?$/

/**
 * The health reporter of one database. It has its own connection, outside the pool, so it answers even when every
 * pooled connection is busy, and it gives up after `timeoutMs` even when the network swallows packets (the
 * connection is then dropped and made again on the next check). Concurrent checks share one round trip.
 *
 * @internal
 */
export class HealthReporter {
  readonly #knex: Knex
  readonly #connection: HealthConnection
  readonly #pool: { min: number; max: number }
  readonly #keyring: Keyring | undefined
  readonly #keyUsageQueries: readonly string[]
  readonly #migrationsTable: string
  readonly #tables: readonly string[]
  readonly #migrationNames: () => Promise<readonly string[]>
  readonly #stats: QueryStats | undefined
  readonly #replicas: ReplicaSet | undefined
  readonly #primary: () => PrimaryStatus
  readonly #cache: ReadCache | undefined
  #inFlight = new Map<string, Promise<HealthReport>>()

  constructor(options: {
    knex: Knex
    /** The health connection's settings, read at each (re)connect. */
    connection: () => pg.ClientConfig
    /** Where the pool's connections go now. */
    primary: () => PrimaryStatus
    pool: { min: number; max: number }
    keyring: Keyring | undefined
    /** The statements that count the values each key protects: one per encrypted column of the registry. */
    keyUsageQueries: readonly string[]
    /** The table of applied migrations. */
    migrationsTable: string
    /** The registered models' tables, always counted. */
    tables: readonly string[]
    migrationNames: () => Promise<readonly string[]>
    stats: QueryStats | undefined
    replicas?: ReplicaSet | undefined
    cache?: ReadCache | undefined
    logger: Logger | undefined
  }) {
    this.#replicas = options.replicas
    this.#primary = options.primary
    this.#cache = options.cache
    this.#knex = options.knex
    this.#connection = new HealthConnection(options.connection, options.logger)
    this.#pool = options.pool
    this.#keyring = options.keyring
    this.#keyUsageQueries = options.keyUsageQueries
    this.#migrationsTable = options.migrationsTable
    this.#tables = options.tables
    this.#migrationNames = options.migrationNames
    this.#stats = options.stats
  }

  /** The pool's figures, read from knex's pool without waiting for anything. */
  pool(): PoolStatus {
    return poolStatus(this.#knex, this.#pool)
  }

  check(options: HealthOptions = {}): Promise<HealthReport> {
    const timeoutMs = options.timeoutMs ?? 1_000
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 600_000) {
      return Promise.reject(
        new ValidationError('timeoutMs must be an integer from 1 to 600000.', [
          { field: 'timeoutMs', message: 'must be an integer from 1 to 600000' },
        ]),
      )
    }
    const degradedLatencyMs = options.degradedLatencyMs ?? 250
    const tables = [...new Set([...this.#tables, ...(options.tables ?? [])])]
    const bad = tables.find((t) => typeof t !== 'string' || !TABLE_NAME.test(t))
    if (bad !== undefined || !Number.isFinite(degradedLatencyMs) || degradedLatencyMs < 0) {
      const field = bad !== undefined ? 'tables' : 'degradedLatencyMs'
      return Promise.reject(
        new ValidationError(`${field} is not valid.`, [
          { field, message: bad !== undefined ? 'must be table names' : 'must be a number of milliseconds' },
        ]),
      )
    }
    // Concurrent checks with the same options share one round trip.
    const key = JSON.stringify([
      timeoutMs,
      options.exactCounts === true,
      tables,
      options.keyUsage === true,
      degradedLatencyMs,
    ])
    let running = this.#inFlight.get(key)
    if (running === undefined) {
      running = this.#run(timeoutMs, degradedLatencyMs, tables, options).finally(() => this.#inFlight.delete(key))
      this.#inFlight.set(key, running)
    }
    return running
  }

  async #run(
    timeoutMs: number,
    degradedLatencyMs: number,
    tables: readonly string[],
    options: HealthOptions,
  ): Promise<HealthReport> {
    const started = performance.now()
    const checkedAt = new Date().toISOString()
    // Checks take turns on the one connection: a transaction of one must never interleave with another's.
    let running = false
    const outcome = await raceDeadline(timeoutMs, () =>
      this.#connection.exclusive(() => {
        running = true
        return this.#probeWithRetry(started, timeoutMs, tables, options)
      }),
    )
    const latencyMs = Math.round((performance.now() - started) * 1000) / 1000
    const pool = this.pool()
    const encryption =
      this.#keyring === undefined ? undefined : { currentKey: this.#keyring.currentKeyId, keys: this.#keyring.keyIds }
    if (outcome === 'timeout' || 'error' in outcome) {
      // A connection that did not answer in time may be black-holed: drop it, the next check makes a new one.
      // Only the check that holds the connection drops it: one still waiting for its turn has nothing to drop.
      if (outcome === 'timeout' && running) this.#connection.drop()
      const error = outcome === 'timeout' ? `no answer within ${timeoutMs} ms` : describeFailure(outcome.error)
      return {
        status: 'unhealthy',
        reasons: [error],
        checkedAt,
        latencyMs,
        database: { serverVersion: null, inRecovery: null },
        pool,
        tables: {},
        migrations: { pending: null },
        primary: this.#primary(),
        replicas: this.#replicas?.status() ?? [],
        ...(this.#cache === undefined ? {} : { cache: this.#cache.status() }),
        ...(encryption === undefined ? {} : { encryption }),
        error,
      }
    }
    const found = outcome.value
    const leaks = this.#stats?.leaks().length ?? 0
    const replicas: readonly ReplicaStatus[] = this.#replicas?.status() ?? []
    const cache: CacheStatus | undefined = this.#cache?.status()
    const reasons = degradedReasons({ pool, leaks, found, degradedLatencyMs, replicas, cache })
    return {
      status: reasons.length === 0 ? 'healthy' : 'degraded',
      reasons,
      checkedAt,
      latencyMs,
      database: { serverVersion: found.serverVersion, inRecovery: found.inRecovery },
      pool,
      tables: found.tables,
      migrations: { pending: found.pending },
      primary: this.#primary(),
      replicas,
      ...(cache === undefined ? {} : { cache }),
      ...(encryption === undefined
        ? {}
        : { encryption: { ...encryption, ...(found.keyUsage === undefined ? {} : { keyUsage: found.keyUsage }) } }),
    }
  }

  /**
   * A connection that was killed while idle (a restart, `pg_terminate_backend`) fails the next check with a
   * connection error although the database is up: that check is tried once more on a new connection.
   */
  async #probeWithRetry(
    started: number,
    timeoutMs: number,
    tables: readonly string[],
    options: HealthOptions,
  ): Promise<ProbeResult> {
    const reused = this.#connection.open
    try {
      return await this.#probe(timeoutMs, tables, options)
    } catch (error) {
      const left = timeoutMs - (performance.now() - started)
      if (!reused || left < 1 || !connectionLost(error)) throw error
      this.#connection.drop()
      return this.#probe(Math.floor(left), tables, options)
    }
  }

  async #probe(timeoutMs: number, tables: readonly string[], options: HealthOptions): Promise<ProbeResult> {
    const client = await this.#connection.connect(timeoutMs)
    const want = {
      exactCounts: options.exactCounts === true,
      keyUsage: options.keyUsage === true && this.#keyring !== undefined,
    }
    return probe(client, timeoutMs, tables, want, {
      keyUsageQueries: this.#keyUsageQueries,
      migrationsTable: this.#migrationsTable,
      migrationNames: this.#migrationNames,
    })
  }

  close(): Promise<void> {
    return this.#connection.close()
  }
}
