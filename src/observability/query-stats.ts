import type { Knex } from 'knex'
import type { Logger } from '../db/config.js'
import { BoundedMap } from '../internal/bounded-map.js'
import { ConnectionWaits, type ConnectionWaitStats, type InstrumentedClient } from './connection-waits.js'
import { QueryGroups, type QueryGroupStats } from './query-groups.js'
import { QUERY_STATS_LIMITS } from './query-stats-limits.js'
import { SlowQueryLog, type SlowQuery } from './slow-queries.js'

// The parts of query timing live in their own modules; this one puts them together and is the one others import.
export { normalizeSql } from './sql-normalizer.js'
export type { ConnectionWaitStats } from './connection-waits.js'
export type { QueryGroupStats } from './query-groups.js'
export type { SlowQuery } from './slow-queries.js'

/**
 * `db.stats()`: query timings grouped by normalized SQL, connection waits and the most recent slow queries, since
 * the database was created or `db.stats.reset()`.
 *
 * @example
 * ```ts
 * const { queries, connections, slowQueries } = db.stats()
 * console.table(queries.map((q) => ({ sql: q.sql, calls: q.calls, p95: q.p95Ms })))
 * ```
 */
export interface QueryStatsReport {
  readonly since: Date
  /** False when `observability.queryTiming` is off: `queries` stays empty. */
  readonly enabled: boolean
  readonly slowQueryMs: number
  /** Groups by total time, largest first. */
  readonly queries: readonly QueryGroupStats[]
  readonly totals: { readonly calls: number; readonly errors: number; readonly slow: number }
  readonly connections: ConnectionWaitStats
  /** The last 50 slow queries, newest last. */
  readonly slowQueries: readonly SlowQuery[]
}

/**
 * `db.stats`: call it for a report; `reset()` starts over; `onSlowQuery()` subscribes to slow queries (it returns
 * the unsubscribe function).
 *
 * @example
 * ```ts
 * const stop = db.stats.onSlowQuery((q) => console.warn(`slow: ${q.sql} ${q.durationMs} ms`))
 * console.log(db.stats().totals)
 * db.stats.reset()
 * stop()
 * ```
 */
export interface DatabaseStats {
  (): QueryStatsReport
  reset(): void
  onSlowQuery(listener: (query: SlowQuery) => void): () => void
}

interface KnexQueryEvent {
  readonly __knexQueryUid?: string
  readonly sql?: string
  readonly bindings?: readonly unknown[]
}

/**
 * Watches one knex instance from the side: query timing from its `query` / `query-response` / `query-error`
 * events, connection waits and leaks from its client's acquire and release.
 *
 * @internal
 */
export class QueryStats {
  readonly #slowQueryMs: number
  readonly #enabled: boolean
  readonly #groups = new QueryGroups()
  readonly #started = new BoundedMap<string, number>({
    maxEntries: QUERY_STATS_LIMITS.inFlight,
    maxBytes: QUERY_STATS_LIMITS.inFlight * 256,
    order: 'fifo',
  })
  readonly #slow: SlowQueryLog
  readonly #connections: ConnectionWaits
  #since = new Date()
  readonly #detach: (() => void)[] = []

  constructor(
    knex: Knex,
    options: { slowQueryMs: number; queryTiming: boolean; connectionLeakMs: number; logger: Logger | undefined },
  ) {
    this.#slowQueryMs = options.slowQueryMs
    this.#enabled = options.queryTiming
    this.#slow = new SlowQueryLog(options.logger)
    this.watch(knex)
    this.#connections = new ConnectionWaits((knex as { client: InstrumentedClient }).client, {
      leakMs: options.connectionLeakMs,
      logger: options.logger,
    })
  }

  /** Times the queries of another knex too (a replica's), into the same groups. */
  watch(knex: Knex): void {
    if (this.#enabled) {
      const onQuery = (event: KnexQueryEvent): void => {
        if (typeof event.__knexQueryUid !== 'string') return
        // A query that never answers (a stream abandoned midway) must not grow the map forever: past the bound the
        // oldest waiting query is forgotten (the map drops it), not every one.
        this.#started.set(event.__knexQueryUid, performance.now())
      }
      const onResponse = (response: unknown, event: KnexQueryEvent): void => this.#finish(event, false, response)
      const onError = (_error: unknown, event: KnexQueryEvent): void => this.#finish(event, true, undefined)
      knex.on('query', onQuery)
      knex.on('query-response', onResponse)
      knex.on('query-error', onError)
      this.#detach.push(() => {
        knex.removeListener('query', onQuery)
        knex.removeListener('query-response', onResponse)
        knex.removeListener('query-error', onError)
      })
    }
  }

  #finish(event: KnexQueryEvent, failed: boolean, response: unknown): void {
    const uid = event.__knexQueryUid
    if (typeof uid !== 'string') return
    const started = this.#started.peek(uid)
    if (started === undefined) return
    this.#started.delete(uid)
    const ms = performance.now() - started
    const group = this.#groups.record(event.sql ?? '', ms, failed, response)
    if (ms >= this.#slowQueryMs) this.#slow.record(group, ms, event.bindings?.length ?? 0, failed)
  }

  /** Connections held now for longer than the leak threshold. */
  leaks(): { heldMs: number; stack: string }[] {
    return this.#connections.leaks()
  }

  /** What the stats hold now, against {@link QUERY_STATS_LIMITS}: for tests and diagnostics. @internal */
  footprint(): { groups: number; groupBytes: number; sqlCache: number; sqlCacheBytes: number; inFlight: number } {
    return { ...this.#groups.footprint(), inFlight: this.#started.size }
  }

  /** The duration histogram per operation: counts of queries at or under each of `DURATION_BUCKETS`. */
  histograms(): ReadonlyMap<string, readonly number[]> {
    return this.#groups.histograms()
  }

  report(): QueryStatsReport {
    const queries = this.#groups.stats()
    return {
      since: this.#since,
      enabled: this.#enabled,
      slowQueryMs: this.#slowQueryMs,
      queries,
      totals: {
        calls: queries.reduce((n, q) => n + q.calls, 0),
        errors: queries.reduce((n, q) => n + q.errors, 0),
        slow: this.#slow.count,
      },
      connections: this.#connections.report(),
      slowQueries: this.#slow.recent(),
    }
  }

  reset(): void {
    this.#groups.clear()
    this.#slow.clear()
    this.#connections.reset()
    this.#since = new Date()
  }

  onSlowQuery(listener: (query: SlowQuery) => void): () => void {
    return this.#slow.onSlowQuery(listener)
  }

  /** Stops watching: listeners off, the pool's methods restored, the leak timer cleared. */
  close(): void {
    this.#connections.close()
    for (const detach of this.#detach.splice(0)) detach()
    this.#started.clear()
  }
}
