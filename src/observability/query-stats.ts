import { createHash } from 'node:crypto'
import type { Knex } from 'knex'
import type { Logger } from '../db/config.js'
import { BoundedMap } from '../internal/bounded-map.js'

/**
 * One group of queries with the same normalized SQL, in `db.stats()`.
 *
 * @example
 * ```ts
 * const slowest: QueryGroupStats | undefined = db.stats().queries.sort((a, b) => b.p95Ms - a.p95Ms)[0]
 * ```
 */
export interface QueryGroupStats {
  /** A short stable id of the normalized SQL (the `query_id` label of `db.metrics()`). */
  readonly id: string
  /** The SQL with literals, placeholders and IN-lists collapsed to `?`, whitespace collapsed. No values. */
  readonly sql: string
  /**
   * `select`, `insert`, `update`, `delete`, … (the first keyword, lower case; `with` counts as the write it wraps).
   * The BEGIN and COMMIT knex sends around a transaction are not timed; ones sent as raw SQL are.
   */
  readonly operation: string
  readonly calls: number
  readonly errors: number
  /** Rows returned or changed, summed. */
  readonly rows: number
  readonly totalMs: number
  readonly meanMs: number
  /** Over the most recent 256 calls. */
  readonly p95Ms: number
  readonly maxMs: number
}

/**
 * A query that ran `slowQueryMs` or longer: its normalized SQL and how many values it was given, never the values.
 *
 * @example
 * ```ts
 * db.stats.onSlowQuery((q: SlowQuery) => metrics.increment('slow_queries', { id: q.id }))
 * ```
 */
export interface SlowQuery {
  readonly id: string
  readonly sql: string
  readonly durationMs: number
  /** How many bindings the query had: their values are redacted. */
  readonly bindings: number
  readonly failed: boolean
  readonly at: Date
}

/**
 * Time spent waiting for a pooled connection, apart from the queries' own time.
 *
 * @example
 * ```ts
 * const { acquires, p95Ms, timeouts }: ConnectionWaitStats = db.stats().connections
 * ```
 */
export interface ConnectionWaitStats {
  /** Connections handed out by the pool. */
  readonly acquires: number
  /** Acquisitions that failed (a timeout with the pool exhausted, or the database unreachable). */
  readonly timeouts: number
  readonly meanMs: number
  /** Over the most recent 256 acquisitions. */
  readonly p95Ms: number
  readonly maxMs: number
  /** Connections held now for longer than `observability.connectionLeakMs`, with the stack that acquired each. */
  readonly leaks: readonly { readonly heldMs: number; readonly stack: string }[]
}

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

const SAMPLES = 256
const RECENT_SLOW = 50

/**
 * The bounds of what query timing keeps, per database:
 *
 * - `groups`: at most 500 groups, holding at most about 2 MiB of normalized SQL together; past either, new shapes are
 *   counted in one `(other)` group;
 * - `sqlLength`: a group's SQL is cut to its first 2,048 characters (with `…`); its id stays the hash of the whole;
 * - `sqlCacheEntries`, `sqlCacheBytes`, `sqlCacheEntryBytes`: the cache from a statement's text to its group (it saves
 *   normalizing a statement seen before) holds at most 2,000 statements and about 4 MiB, least recently used out
 *   first; a statement longer than about 32,000 characters (64 KiB at two bytes a character) is normalized every
 *   time instead of cached;
 * - `inFlight`: at most 10,000 queries waiting for their answer are timed; past that the oldest are forgotten (a
 *   query that never answers must not grow memory).
 *
 * @internal
 */
export const QUERY_STATS_LIMITS = Object.freeze({
  groups: 500,
  groupBytes: 2 * 1024 * 1024,
  sqlLength: 2_048,
  operationLength: 32,
  sqlCacheEntries: 2_000,
  sqlCacheBytes: 4 * 1024 * 1024,
  sqlCacheEntryBytes: 64 * 1024,
  inFlight: 10_000,
})

/** The estimated bytes a group's key and SQL take (the same string; two bytes a character at most). */
const groupBytes = (key: string): number => 64 + 2 * key.length
/** Upper bounds (seconds) of the duration histogram `db.metrics()` exposes per operation. */
export const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const

/** Durations with a ring of the most recent samples for percentiles. */
class Timings {
  count = 0
  total = 0
  max = 0
  readonly #ring = new Float64Array(SAMPLES)

  add(ms: number): void {
    this.#ring[this.count % SAMPLES] = ms
    this.count += 1
    this.total += ms
    if (ms > this.max) this.max = ms
  }

  p95(): number {
    const n = Math.min(this.count, SAMPLES)
    if (n === 0) return 0
    const sorted = this.#ring.slice(0, n).sort()
    return sorted[Math.min(n - 1, Math.ceil(n * 0.95) - 1)]!
  }

  mean(): number {
    return this.count === 0 ? 0 : this.total / this.count
  }
}

class Group {
  readonly timings = new Timings()
  errors = 0
  rows = 0
  constructor(
    readonly id: string,
    readonly sql: string,
    readonly operation: string,
  ) {}
}

const DOLLAR_QUOTED = /\$([A-Za-z_][A-Za-z0-9_]*)?\$[\s\S]*?\$\1\$/g
const ESCAPE_STRING = /\b[eE]'(?:[^'\\]|\\[\s\S]|'')*'/g
const STRING_LITERAL = /'(?:[^']|'')*'/g
const COMMENT = /--[^\n]*|\/\*[\s\S]*?\*\//g
const NUMBER_LITERAL = /(?<![\w$.])-?(?:0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(?![\w.])/g
const POSITIONAL = /\$\d+/g
const LIST = /\b(in|any)\s*\(\s*\?(?:\s*,\s*\?)+\s*\)/gi
const VALUES_ROWS = /(\(\?(?:, \?)*\))(?:\s*,\s*\1)+/g

/**
 * SQL with its values taken out: string and number literals, `$n` and `?` become `?`, IN-lists and repeated VALUES
 * rows collapse to one, whitespace to single spaces. Queries that differ only in values share a group.
 *
 * @example
 * ```ts
 * normalizeSql("select * from t where id in ($1, $2, $3) and name = 'x'") // 'select * from t where id in (?...) and name = ?'
 * ```
 */
export function normalizeSql(sql: string): string {
  return sql
    .replace(DOLLAR_QUOTED, '?')
    .replace(ESCAPE_STRING, '?')
    .replace(STRING_LITERAL, '?')
    .replace(COMMENT, ' ')
    .replace(POSITIONAL, '?')
    .replace(NUMBER_LITERAL, '?')
    .replace(/\s+/g, ' ')
    .trim()
    .replace(VALUES_ROWS, '$1...')
    .replace(LIST, '$1 (?...)')
}

function operationOf(sql: string): string {
  const match = /^\s*\(?\s*([a-z]+)/i.exec(sql)
  const word = match?.[1]?.toLowerCase() ?? 'other'
  // The operation labels a histogram: a word no statement starts with stays short.
  if (word.length > QUERY_STATS_LIMITS.operationLength) return 'other'
  return word === 'with' ? (/\b(insert|update|delete)\b/i.exec(sql)?.[1]?.toLowerCase() ?? 'select') : word
}

/** The key and SQL of the group past the limits. */
const OTHER = '(other)'

function rowsOf(response: unknown): number {
  if (Array.isArray(response)) return response.length
  if (typeof response === 'number') return response
  if (typeof response === 'object' && response !== null) {
    const result = response as { rowCount?: unknown; rows?: unknown }
    if (typeof result.rowCount === 'number') return result.rowCount
    if (Array.isArray(result.rows)) return result.rows.length
  }
  return 0
}

interface KnexQueryEvent {
  readonly __knexQueryUid?: string
  readonly sql?: string
  readonly bindings?: readonly unknown[]
}

interface PoolLike {
  acquire?: unknown
}

interface KnexTransaction {
  acquireConnection(config: unknown, callback: unknown): Promise<unknown>
}

interface InstrumentedClient {
  acquireConnection(): Promise<unknown>
  releaseConnection(connection: unknown): Promise<void>
  transaction(container: unknown, config: unknown, outerTx: unknown): KnexTransaction
  pool?: PoolLike
}

/** The origin of a connection taken by a single statement (no stack is captured for those). */
const SINGLE_STATEMENT = new Error('a single statement (not a transaction) holds it')
SINGLE_STATEMENT.stack =
  'Error: a single statement (not a transaction) holds it\n    (a long-running query: see db.stats().slowQueries)'

/** A stack captured where a connection was asked for: deep enough to reach the host's code. */
function origin(): Error {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 30
  try {
    return new Error('connection acquired here')
  } finally {
    Error.stackTraceLimit = limit
  }
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
  readonly #leakMs: number
  readonly #logger: Logger | undefined
  readonly #groups = new Map<string, Group>()
  #groupBytes = 0
  readonly #bySql = new BoundedMap<string, Group>({
    maxEntries: QUERY_STATS_LIMITS.sqlCacheEntries,
    maxBytes: QUERY_STATS_LIMITS.sqlCacheBytes,
    maxEntryBytes: QUERY_STATS_LIMITS.sqlCacheEntryBytes,
    // The group is shared with #groups: only the statement's text counts here.
    sizeOf: (sql) => 16 + 2 * sql.length,
  })
  readonly #started = new BoundedMap<string, number>({
    maxEntries: QUERY_STATS_LIMITS.inFlight,
    maxBytes: QUERY_STATS_LIMITS.inFlight * 256,
    order: 'fifo',
  })
  readonly #listeners = new Set<(query: SlowQuery) => void>()
  readonly #held = new Map<unknown, { since: number; origin: Error; reported: boolean }>()
  readonly #buckets = new Map<string, number[]>()
  #slow: SlowQuery[] = []
  #slowCount = 0
  #since = new Date()
  #waits = new Timings()
  #timeouts = 0
  #leakTimer: NodeJS.Timeout | undefined
  readonly #detach: (() => void)[] = []

  constructor(
    knex: Knex,
    options: { slowQueryMs: number; queryTiming: boolean; connectionLeakMs: number; logger: Logger | undefined },
  ) {
    this.#slowQueryMs = options.slowQueryMs
    this.#enabled = options.queryTiming
    this.#leakMs = options.connectionLeakMs
    this.#logger = options.logger
    this.watch(knex)
    this.#instrumentPool((knex as { client: InstrumentedClient }).client)
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
    const group = this.#group(event.sql ?? '')
    group.timings.add(ms)
    if (failed) group.errors += 1
    else group.rows += rowsOf(response)
    let buckets = this.#buckets.get(group.operation)
    if (buckets === undefined) {
      buckets = new Array<number>(DURATION_BUCKETS.length).fill(0)
      this.#buckets.set(group.operation, buckets)
    }
    const seconds = ms / 1000
    for (let i = 0; i < DURATION_BUCKETS.length; i++) if (seconds <= DURATION_BUCKETS[i]!) buckets[i]! += 1
    if (ms >= this.#slowQueryMs) this.#reportSlow(group, ms, event.bindings?.length ?? 0, failed)
  }

  #group(sql: string): Group {
    let group = this.#bySql.get(sql)
    if (group !== undefined) return group
    const normalized = normalizeSql(sql)
    // A long statement's group is keyed and shown by its first characters and the hash of the whole: the groups hold
    // at most sqlLength characters each, however long the statements.
    const hash = createHash('sha256').update(normalized).digest('hex')
    const key =
      normalized.length <= QUERY_STATS_LIMITS.sqlLength
        ? normalized
        : `${normalized.slice(0, QUERY_STATS_LIMITS.sqlLength)}… (sha256 ${hash})`
    group = this.#groups.get(key)
    if (group === undefined) {
      const bytes = groupBytes(key)
      if (this.#groups.size >= QUERY_STATS_LIMITS.groups || this.#groupBytes + bytes > QUERY_STATS_LIMITS.groupBytes) {
        // Past the limits, new shapes share one group rather than grow memory without bound.
        group = this.#groups.get(OTHER)
        if (group === undefined) {
          group = new Group('other', OTHER, 'other')
          this.#groups.set(OTHER, group)
          this.#groupBytes += groupBytes(OTHER)
        }
      } else {
        group = new Group(hash.slice(0, 12), key, operationOf(normalized))
        this.#groups.set(key, group)
        this.#groupBytes += bytes
      }
    }
    this.#bySql.set(sql, group)
    return group
  }

  #reportSlow(group: Group, ms: number, bindings: number, failed: boolean): void {
    const query: SlowQuery = Object.freeze({
      id: group.id,
      sql: group.sql,
      durationMs: Math.round(ms * 1000) / 1000,
      bindings,
      failed,
      at: new Date(),
    })
    this.#slowCount += 1
    this.#slow.push(query)
    if (this.#slow.length > RECENT_SLOW) this.#slow.shift()
    this.#logger?.warn(
      {
        source: 'wincloud-data',
        queryId: query.id,
        sql: query.sql,
        durationMs: query.durationMs,
        bindings: `[${bindings} redacted]`,
      },
      'slow query',
    )
    for (const listener of this.#listeners) {
      try {
        listener(query)
      } catch (error) {
        this.#logger?.error({ source: 'wincloud-data', error: String(error) }, 'a slow-query listener threw')
      }
    }
  }

  #instrumentPool(client: InstrumentedClient): void {
    const acquire = client.acquireConnection.bind(client)
    const release = client.releaseConnection.bind(client)
    const transaction = client.transaction.bind(client)
    const leakMs = this.#leakMs
    // A transaction acquires its connection in a later tick, where the host's frames are gone: its origin is the
    // stack of the knex.transaction() call, handed to the acquisition the transaction makes.
    let transactionOrigin: Error | undefined
    if (leakMs > 0) {
      client.transaction = (container, config, outerTx) => {
        const trx = transaction(container, config, outerTx)
        const started = origin()
        const acquireFor = trx.acquireConnection.bind(trx)
        trx.acquireConnection = (trxConfig, callback) => {
          transactionOrigin = started
          try {
            return acquireFor(trxConfig, callback)
          } finally {
            transactionOrigin = undefined
          }
        }
        return trx
      }
    }
    client.acquireConnection = async () => {
      // A single statement's stack holds only knex's own frames (it acquires in a later tick): it is not captured,
      // which keeps a checkout cheap; a transaction's is, where knex.transaction() was called.
      const acquiredAt = leakMs > 0 ? (transactionOrigin ?? SINGLE_STATEMENT) : undefined
      const started = performance.now()
      try {
        const connection = await acquire()
        this.#waits.add(performance.now() - started)
        if (acquiredAt !== undefined) {
          this.#held.set(connection, { since: Date.now(), origin: acquiredAt, reported: false })
        }
        return connection
      } catch (error) {
        this.#timeouts += 1
        throw error
      }
    }
    client.releaseConnection = (connection: unknown) => {
      this.#held.delete(connection)
      return release(connection)
    }
    this.#detach.push(() => {
      client.acquireConnection = acquire
      client.releaseConnection = release
      client.transaction = transaction
    })
    if (leakMs > 0) {
      this.#leakTimer = setInterval(() => this.#checkLeaks(), Math.max(50, Math.min(leakMs / 2, 5_000)))
      this.#leakTimer.unref()
    }
  }

  #checkLeaks(): void {
    const now = Date.now()
    for (const held of this.#held.values()) {
      if (held.reported || now - held.since < this.#leakMs) continue
      held.reported = true
      this.#logger?.warn(
        { source: 'wincloud-data', heldMs: now - held.since, stack: stackOf(held.origin) },
        'a connection has been checked out for longer than observability.connectionLeakMs',
      )
    }
  }

  /** Connections held now for longer than the leak threshold. */
  leaks(): { heldMs: number; stack: string }[] {
    if (this.#leakMs <= 0) return []
    const now = Date.now()
    return [...this.#held.values()]
      .filter((held) => now - held.since >= this.#leakMs)
      .map((held) => ({ heldMs: now - held.since, stack: stackOf(held.origin) }))
  }

  /** What the stats hold now, against {@link QUERY_STATS_LIMITS}: for tests and diagnostics. @internal */
  footprint(): { groups: number; groupBytes: number; sqlCache: number; sqlCacheBytes: number; inFlight: number } {
    return {
      groups: this.#groups.size,
      groupBytes: this.#groupBytes,
      sqlCache: this.#bySql.size,
      sqlCacheBytes: this.#bySql.bytes,
      inFlight: this.#started.size,
    }
  }

  /** The duration histogram per operation: counts of queries at or under each of {@link DURATION_BUCKETS}. */
  histograms(): ReadonlyMap<string, readonly number[]> {
    return this.#buckets
  }

  report(): QueryStatsReport {
    const queries = [...this.#groups.values()]
      .map((g): QueryGroupStats => ({
        id: g.id,
        sql: g.sql,
        operation: g.operation,
        calls: g.timings.count,
        errors: g.errors,
        rows: g.rows,
        totalMs: round(g.timings.total),
        meanMs: round(g.timings.mean()),
        p95Ms: round(g.timings.p95()),
        maxMs: round(g.timings.max),
      }))
      .sort((a, b) => b.totalMs - a.totalMs)
    return {
      since: this.#since,
      enabled: this.#enabled,
      slowQueryMs: this.#slowQueryMs,
      queries,
      totals: {
        calls: queries.reduce((n, q) => n + q.calls, 0),
        errors: queries.reduce((n, q) => n + q.errors, 0),
        slow: this.#slowCount,
      },
      connections: {
        acquires: this.#waits.count,
        timeouts: this.#timeouts,
        meanMs: round(this.#waits.mean()),
        p95Ms: round(this.#waits.p95()),
        maxMs: round(this.#waits.max),
        leaks: this.leaks(),
      },
      slowQueries: [...this.#slow],
    }
  }

  reset(): void {
    this.#groups.clear()
    this.#groupBytes = 0
    this.#bySql.clear()
    this.#buckets.clear()
    this.#slow = []
    this.#slowCount = 0
    this.#waits = new Timings()
    this.#timeouts = 0
    this.#since = new Date()
  }

  onSlowQuery(listener: (query: SlowQuery) => void): () => void {
    if (typeof listener !== 'function') throw new TypeError('onSlowQuery needs a function.')
    this.#listeners.add(listener)
    return () => {
      this.#listeners.delete(listener)
    }
  }

  /** Stops watching: listeners off, the pool's methods restored, the leak timer cleared. */
  close(): void {
    clearInterval(this.#leakTimer)
    for (const detach of this.#detach.splice(0)) detach()
    this.#held.clear()
    this.#started.clear()
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000
}

/** The acquiring stack without the marker line and without knex's, node's and this module's own frames. */
function stackOf(origin: Error): string {
  return (origin.stack ?? '')
    .split('\n')
    .slice(1)
    .filter((line) => !/[\\/]node_modules[\\/]knex[\\/]|\(node:internal|[\\/]query-stats\.[jt]s:/.test(line))
    .join('\n')
}
