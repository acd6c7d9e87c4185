import pg from 'pg'
import type { Knex } from 'knex'
import type { Keyring } from '../crypto/keyring.js'
import { keyUsageSql, type EncryptedModel } from '../crypto/key-usage.js'
import { encryptedProperties } from '../crypto/columns.js'
import type { Logger } from '../db/config.js'
import { ValidationError } from '../errors/index.js'
import { MIGRATIONS_TABLE } from '../migrations/index.js'
import type { QueryStats } from './query-stats.js'
import type { ReplicaSet, ReplicaStatus } from '../db/replicas.js'
import type { CacheStatus, ReadCache } from '../db/cache.js'

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
 * The pool at the time of the check.
 *
 * @example
 * ```ts
 * const { used, max, pendingAcquires }: PoolStatus = (await db.health()).pool
 * ```
 */
export interface PoolStatus {
  readonly min: number
  readonly max: number
  readonly used: number
  readonly free: number
  readonly pendingAcquires: number
  readonly pendingCreates: number
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

/** What one round of health queries found. */
interface ProbeResult {
  serverVersion: string
  inRecovery: boolean
  tables: Record<string, { rows: number; exact: boolean }>
  pending: string[]
  roundTripMs: number
  countsTimedOut: boolean
  keyUsage: Record<string, number> | undefined
}

interface TarnPool {
  numUsed(): number
  numFree(): number
  numPendingAcquires(): number
  numPendingCreates(): number
}

const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_$]{0,62}(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?$/

/** A short description of why the database did not answer: codes and kinds, never addresses or credentials. */
function describeFailure(error: unknown): string {
  const e = error as { code?: unknown; message?: unknown }
  const code = typeof e?.code === 'string' ? e.code : undefined
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused (ECONNREFUSED)'
    case 'ECONNRESET':
      return 'connection reset (ECONNRESET)'
    case 'ETIMEDOUT':
      return 'connection timed out (ETIMEDOUT)'
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `host not found (${code})`
    case '28P01':
    case '28000':
      return `authentication failed (${code})`
    case '57P01':
    case '57P02':
    case '57P03':
      return `the server is shutting down or starting up (${code})`
    case '3D000':
      return 'the database does not exist (3D000)'
    default:
      if (code !== undefined && /^[0-9A-Z]{5}$/.test(code)) return `query failed (SQLSTATE ${code})`
      if (typeof e?.message === 'string' && /terminated|ended|closed/i.test(e.message)) return 'connection closed'
      return 'the database did not answer'
  }
}

/**
 * The health reporter of one database. It has its own connection, outside the pool, so it answers even when every
 * pooled connection is busy, and it gives up after `timeoutMs` even when the network swallows packets (the
 * connection is then dropped and made again on the next check). Concurrent checks share one round trip.
 *
 * @internal
 */
export class HealthReporter {
  readonly #knex: Knex
  readonly #connection: pg.ClientConfig
  readonly #pool: { min: number; max: number }
  readonly #keyring: Keyring | undefined
  readonly #models: readonly EncryptedModel[]
  readonly #tables: readonly string[]
  readonly #migrationNames: () => Promise<readonly string[]>
  readonly #stats: QueryStats | undefined
  readonly #replicas: ReplicaSet | undefined
  readonly #cache: ReadCache | undefined
  readonly #logger: Logger | undefined
  #client: pg.Client | undefined
  #connecting: Promise<pg.Client> | undefined
  #inFlight = new Map<string, Promise<HealthReport>>()
  #turn: Promise<void> = Promise.resolve()
  #closed = false

  constructor(options: {
    knex: Knex
    connection: pg.ClientConfig
    pool: { min: number; max: number }
    keyring: Keyring | undefined
    models: readonly EncryptedModel[]
    /** The registered models' tables, always counted. */
    tables: readonly string[]
    migrationNames: () => Promise<readonly string[]>
    stats: QueryStats | undefined
    replicas?: ReplicaSet | undefined
    cache?: ReadCache | undefined
    logger: Logger | undefined
  }) {
    this.#replicas = options.replicas
    this.#cache = options.cache
    this.#knex = options.knex
    this.#connection = options.connection
    this.#pool = options.pool
    this.#keyring = options.keyring
    this.#models = options.models
    this.#tables = options.tables
    this.#migrationNames = options.migrationNames
    this.#stats = options.stats
    this.#logger = options.logger
  }

  /** The pool's figures, read from knex's pool without waiting for anything. */
  pool(): PoolStatus {
    const pool = (this.#knex.client as { pool?: TarnPool }).pool
    return {
      min: this.#pool.min,
      max: this.#pool.max,
      used: pool?.numUsed() ?? 0,
      free: pool?.numFree() ?? 0,
      pendingAcquires: pool?.numPendingAcquires() ?? 0,
      pendingCreates: pool?.numPendingCreates() ?? 0,
    }
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
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs)
    })
    // Checks take turns on the one connection: a transaction of one must never interleave with another's.
    let running = false
    const probe = this.#exclusive(() => {
      running = true
      return this.#probeWithRetry(started, timeoutMs, tables, options)
    }).then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    )
    const outcome = await Promise.race([probe, deadline])
    clearTimeout(timer)
    const latencyMs = Math.round((performance.now() - started) * 1000) / 1000
    const pool = this.pool()
    const encryption =
      this.#keyring === undefined ? undefined : { currentKey: this.#keyring.currentKeyId, keys: this.#keyring.keyIds }
    if (outcome === 'timeout' || 'error' in outcome) {
      // A connection that did not answer in time may be black-holed: drop it, the next check makes a new one.
      // Only the check that holds the connection drops it: one still waiting for its turn has nothing to drop.
      if (outcome === 'timeout' && running) this.#drop()
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
        replicas: this.#replicas?.status() ?? [],
        ...(this.#cache === undefined ? {} : { cache: this.#cache.status() }),
        ...(encryption === undefined ? {} : { encryption }),
        error,
      }
    }
    const found = outcome.value
    const reasons: string[] = []
    if (pool.pendingAcquires > 0) {
      reasons.push(
        `${plural(pool.pendingAcquires, 'caller')} ${pool.pendingAcquires === 1 ? 'waits' : 'wait'} for a connection`,
      )
    }
    if (pool.used >= pool.max) reasons.push('every pooled connection is in use')
    const leaks = this.#stats?.leaks().length ?? 0
    if (leaks > 0) reasons.push(`${plural(leaks, 'connection')} held past observability.connectionLeakMs`)
    if (found.pending.length > 0) reasons.push(`${plural(found.pending.length, 'migration')} pending`)
    if (found.roundTripMs > degradedLatencyMs) reasons.push(`round trip over ${degradedLatencyMs} ms`)
    if (found.countsTimedOut) reasons.push('exact counts or key usage did not finish in time')
    const replicas = this.#replicas?.status() ?? []
    // A replica not checked yet (just after start) is not a problem; one lagging or down is.
    const out = replicas.filter((r) => r.state === 'lagging' || r.state === 'down').length
    if (out > 0) reasons.push(`${out} of ${plural(replicas.length, 'replica')} serve${out === 1 ? 's' : ''} no reads`)
    const cache = this.#cache?.status()
    if (cache !== undefined && cache.state !== 'ok') reasons.push(`cache ${cache.state}: reads go to the database`)
    return {
      status: reasons.length === 0 ? 'healthy' : 'degraded',
      reasons,
      checkedAt,
      latencyMs,
      database: { serverVersion: found.serverVersion, inRecovery: found.inRecovery },
      pool,
      tables: found.tables,
      migrations: { pending: found.pending },
      replicas,
      ...(cache === undefined ? {} : { cache }),
      ...(encryption === undefined
        ? {}
        : { encryption: { ...encryption, ...(found.keyUsage === undefined ? {} : { keyUsage: found.keyUsage }) } }),
    }
  }

  /** Runs `work` once every check before it has finished. */
  async #exclusive<T>(work: () => Promise<T>): Promise<T> {
    const previous = this.#turn
    let release!: () => void
    this.#turn = new Promise<void>((resolve) => {
      release = resolve
    })
    await previous
    try {
      return await work()
    } finally {
      release()
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
    const reused = this.#client !== undefined
    try {
      return await this.#probe(timeoutMs, tables, options)
    } catch (error) {
      const left = timeoutMs - (performance.now() - started)
      if (!reused || left < 1 || !connectionLost(error)) throw error
      this.#drop()
      return this.#probe(Math.floor(left), tables, options)
    }
  }

  async #probe(timeoutMs: number, tables: readonly string[], options: HealthOptions): Promise<ProbeResult> {
    const client = await this.#connect(timeoutMs)
    const sent = performance.now()
    // One round trip: version, recovery, estimates, and the applied migrations when their table exists. Nothing is
    // set on the session: behind PgBouncer in transaction mode it would leak to other clients.
    const { rows } = await client.query<{
      server_version: string
      in_recovery: boolean
      estimates: Record<string, number> | null
      applied: string[] | null
    }>(
      `select current_setting('server_version') as server_version,
              pg_is_in_recovery() as in_recovery,
              (select json_object_agg(t.name, case when c.reltuples < 0 then pg_stat_get_live_tuples(c.oid)
                                                   else c.reltuples::bigint end)
                 from unnest($1::text[]) as t(name)
                 join pg_class c on c.oid = to_regclass(t.name)) as estimates,
              case when to_regclass($2) is not null then
                (select array_agg(x::text) from unnest(xpath('//name/text()',
                   query_to_xml(format('select name from %I', $2::text), false, false, ''))) as x)
              end as applied`,
      [tables, MIGRATIONS_TABLE],
    )
    const roundTripMs = performance.now() - sent
    const row = rows[0]!
    const applied = new Set(row.applied ?? [])
    const pending = (await this.#migrationNames()).filter((name) => !applied.has(name))
    const counted: Record<string, { rows: number; exact: boolean }> = {}
    for (const [name, rowsEstimate] of Object.entries(row.estimates ?? {})) {
      counted[name] = { rows: Number(rowsEstimate), exact: false }
    }
    let countsTimedOut = false
    let keyUsage: Record<string, number> | undefined
    const wantKeyUsage = options.keyUsage === true && this.#keyring !== undefined
    if (options.exactCounts === true || wantKeyUsage) {
      // The slow parts run in a read-only transaction with a transaction-local statement timeout: the time left.
      const left = Math.max(1, Math.floor(timeoutMs - (performance.now() - sent)))
      await client.query('begin read only')
      try {
        await client.query(`select set_config('statement_timeout', $1, true)`, [`${left}ms`])
        if (options.exactCounts === true) {
          for (const name of Object.keys(counted)) {
            await client.query('savepoint count')
            try {
              const exact = await client.query<{ n: string }>(`select count(*)::text as n from ${quoteTable(name)}`)
              counted[name] = { rows: Number(exact.rows[0]!.n), exact: true }
            } catch (error) {
              if ((error as { code?: unknown }).code !== '57014') throw error
              await client.query('rollback to savepoint count')
              countsTimedOut = true
              break
            }
          }
        }
        if (wantKeyUsage && !countsTimedOut) {
          const usage: Record<string, number> = {}
          try {
            for (const model of this.#models) {
              for (const encrypted of encryptedProperties(model as never)) {
                const found = await client.query<{ key: string; count: string }>(
                  keyUsageSql(model.tableName, encrypted.ciphertextColumn),
                )
                for (const u of found.rows) usage[u.key] = (usage[u.key] ?? 0) + Number(u.count)
              }
            }
            keyUsage = usage
          } catch (error) {
            if ((error as { code?: unknown }).code !== '57014') throw error
            countsTimedOut = true
          }
        }
      } finally {
        await client.query('rollback').catch(() => undefined)
      }
    }
    return {
      serverVersion: row.server_version,
      inRecovery: row.in_recovery,
      tables: counted,
      pending,
      roundTripMs,
      countsTimedOut,
      keyUsage,
    }
  }

  async #connect(timeoutMs: number): Promise<pg.Client> {
    if (this.#closed) throw new Error('closed')
    if (this.#client !== undefined) return this.#client
    this.#connecting ??= (async () => {
      const client = new pg.Client({ ...this.#connection, connectionTimeoutMillis: timeoutMs })
      client.on('error', (error) => {
        // An idle connection that dies (a restart, a terminate) is replaced on the next check.
        this.#logger?.debug({ source: 'wincloud-data', error: describeFailure(error) }, 'health connection lost')
        if (this.#client === client) this.#client = undefined
      })
      try {
        await client.connect()
      } catch (error) {
        client.end().catch(() => undefined)
        throw error
      }
      if (this.#closed) {
        await client.end().catch(() => undefined)
        throw new Error('closed')
      }
      this.#client = client
      return client
    })().finally(() => {
      this.#connecting = undefined
    })
    return this.#connecting
  }

  #drop(): void {
    const client = this.#client
    this.#client = undefined
    if (client === undefined) return
    // end() waits for the server's goodbye, which a black-holed network never sends: cut the socket.
    const stream = (client as unknown as { connection?: { stream?: { destroy?: () => void } } }).connection?.stream
    stream?.destroy?.()
    client.end().catch(() => undefined)
  }

  async close(): Promise<void> {
    this.#closed = true
    const client = this.#client
    this.#client = undefined
    if (client === undefined) return
    await Promise.race([
      client.end().catch(() => undefined),
      new Promise((resolve) => setTimeout(resolve, 1_000).unref()),
    ])
    const stream = (client as unknown as { connection?: { stream?: { destroy?: () => void } } }).connection?.stream
    stream?.destroy?.()
  }
}

/** Whether an error says the connection itself is gone (not that the database refused a query). */
function connectionLost(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown }
  if (e?.code === '57P01' || e?.code === 'ECONNRESET' || e?.code === 'EPIPE') return true
  return typeof e?.message === 'string' && /Connection terminated|not queryable|ended/i.test(e.message)
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`
}

function quoteTable(name: string): string {
  return name
    .split('.')
    .map((part) => `"${part.replace(/"/g, '""')}"`)
    .join('.')
}
